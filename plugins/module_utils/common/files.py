# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash-safe file writes and host-side locks, shared by the image cache, DHCP and config drive.

PRIVATE to the collection: may change at any time. Stdlib only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin")


def fsync_dir(path):
    """Make a rename in ``path`` durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_install(tmp, dest, mode=0o644):
    """Give tmp its final mode and rename it over dest (same filesystem), then fsync the dir."""
    os.chmod(tmp, mode)
    os.replace(tmp, dest)
    fsync_dir(os.path.dirname(os.path.abspath(dest)))


def atomic_write_text(path, text, mode=0o644):
    """Write text to path atomically: a tmp file in the same dir, fsync, chmod, rename, fsync dir.
    A reader sees the old or the new content, never a part; on error no tmp file is left."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        atomic_install(tmp, path, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path):
    """Exclusive flock on path (created 0644 when missing), like oslo.concurrency's external lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def find_bin(name):
    """Path of a program, also in the sbin directories a non-login SSH session may lack on PATH."""
    path = shutil.which(name)
    if path:
        return path
    for d in _SBIN:
        cand = os.path.join(d, name)
        if os.access(cand, os.X_OK):
            return cand
    return None


def makedirs(path, mode=0o755):
    """mkdir -p with exact modes (no umask surprises); returns the directories it created, outermost first."""
    made = []
    todo = []
    p = os.path.abspath(path)
    while not os.path.isdir(p):
        todo.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(todo):
        try:
            os.mkdir(d, mode)
            os.chmod(d, mode)
            made.append(d)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    return made
