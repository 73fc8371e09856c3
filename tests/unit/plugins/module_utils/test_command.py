# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""host/command.py: the host steps' command runner, on real commands (with and without a pidfd)."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.host import command


@pytest.fixture(params=["pidfd", "polling"])
def run(request, monkeypatch):
    if request.param == "polling":
        monkeypatch.setattr(command, "_pidfd", lambda pid: None)
    elif command._pidfd(os.getpid()) is None:
        pytest.fail("this Linux has no pidfd_open: the runner would poll every %s s" % command.FALLBACK_POLL)
    return command.run_argv


def test_exit_codes(run):
    assert run(["true"]) == (0, "", "")
    assert run(["false"]) == (1, "", "")
    assert run(["sh", "-c", "echo out; echo err >&2; exit 7"]) == (7, "out\n", "err\n")


def test_lots_on_both_pipes(run):
    # more than a pipe buffer (64 KiB) on each pipe, interleaved: a runner that reads one pipe to its
    # end before the other, or stops at the exit without draining, loses or deadlocks
    script = ("import sys\n"
              "for i in range(20000):\n"
              "    sys.stdout.write('o%06d\\n' % i)\n"
              "    sys.stderr.write('e%06d\\n' % i)\n")
    rc, out, err = run([sys.executable, "-c", script])
    assert rc == 0
    assert out == "".join("o%06d\n" % i for i in range(20000))
    assert err == "".join("e%06d\n" % i for i in range(20000))


def test_returns_when_the_command_exits_though_a_child_keeps_the_pipes(run):
    # the grandchild inherits stdout and stderr and outlives the command: reading to EOF would wait for it
    rc, out, err = run(["sh", "-c", "sleep 60 & echo $!; echo bye >&2"])
    pid = int(out)
    try:
        assert (rc, err) == (0, "bye\n")
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state not in ("Z", "X"), "the grandchild still runs when run_argv returns"
    finally:
        os.kill(pid, signal.SIGKILL)


def test_pipes_closed_before_the_exit(run):
    # EOF on both pipes first, the exit later: the exit status is still the command's
    assert run(["sh", "-c", "exec >&- 2>&-; sleep 0.2; exit 3"]) == (3, "", "")


def test_no_shell_c_locale_and_no_pythonpath(run, monkeypatch):
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("PYTHONPATH", "/tmp/ansible_modlib.zip")
    assert run(["echo", "$HOME; true", "~"]) == (0, "$HOME; true ~\n", "")
    rc, out, _err = run(["sh", "-c", 'echo "$LANG $LC_ALL $LC_MESSAGES ${PYTHONPATH-unset}"'])
    assert (rc, out) == (0, "C C C unset\n")


def test_undecodable_output_is_kept(run):
    rc, out, _err = run(["printf", "\\377ok"])
    assert (rc, out) == (0, "\udcffok")


def test_bad_commands(run):
    with pytest.raises(FileNotFoundError):
        run(["/nonexistent/qemu-img", "info"])
    for bad in ("qemu-img info x", [], None):
        with pytest.raises(ValueError, match="argv list"):
            run(bad)
