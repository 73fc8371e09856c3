# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running a host command (qemu-img, genisoimage, ip, dhcp_release) for a step: ``run_argv``.

The host steps take it as ``run``. It keeps what matters of ``AnsibleModule.run_command``: an argv
list and never a shell, the C locale, output read while the command runs, and reading stops when
the command has exited even if a process it started still holds its stdout or stderr. It differs in
how it learns of the exit: a pidfd in the same poll as the pipes. run_command polls with a 1 s
timeout and checks the exit twice per round; when the command turns into a zombie between those
two checks, after both pipes hit EOF, it polls an empty set for a full second.

PRIVATE to the collection: may change at any time. stdlib only.
"""

from __future__ import annotations

import os
import selectors
import subprocess

C_LOCALE = {"LANG": "C", "LC_ALL": "C", "LC_MESSAGES": "C"}
CHUNK = 65536
# only without pidfds (not Linux, or Linux < 5.3): how often to look whether the command has exited
FALLBACK_POLL = 0.05


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _drain(fd, into):
    """Read what the pipe holds now; True at EOF."""
    while True:
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return False
        if not data:
            return True
        into.append(data)


def run_argv(argv, cwd=None):
    """Run ``argv`` (a list, no shell) with stdin from /dev/null; return (rc, stdout, stderr) as text.

    Raises OSError when the command cannot be started (the callers name the step that failed).
    """
    if not isinstance(argv, (list, tuple)) or not argv:
        raise ValueError("a command is a non-empty argv list, got %r" % (argv,))
    env = dict(os.environ, **C_LOCALE)
    # a child must not import the module's own payload (AnsiballZ's zip on PYTHONPATH)
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen(  # pylint: disable=ansible-bad-function
        [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        close_fds=True, env=env, cwd=cwd)
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    pipes = {out_fd: [], err_fd: []}
    pidfd = _pidfd(proc.pid)
    try:
        with selectors.DefaultSelector() as sel:
            for fd in pipes:
                os.set_blocking(fd, False)
                sel.register(fd, selectors.EVENT_READ)
            if pidfd is not None:
                sel.register(pidfd, selectors.EVENT_READ)
            open_pipes = set(pipes)
            exited = False
            while open_pipes and not exited:
                for key, _events in sel.select(None if pidfd is not None else FALLBACK_POLL):
                    if key.fd == pidfd:
                        exited = True
                    elif key.fd in open_pipes and _drain(key.fd, pipes[key.fd]):
                        sel.unregister(key.fd)
                        open_pipes.discard(key.fd)
                if pidfd is None and proc.poll() is not None:
                    exited = True
            # exited: all it wrote is in the pipes; a process it left behind may keep them open
            for fd in open_pipes:
                _drain(fd, pipes[fd])
        rc = proc.wait()
    finally:
        if pidfd is not None:
            os.close(pidfd)
        proc.stdout.close()
        proc.stderr.close()
    return rc, _text(pipes[out_fd]), _text(pipes[err_fd])


def _text(chunks):
    return b"".join(chunks).decode("utf-8", "surrogateescape")
