# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who may read a guest's files on the host: the instance directory and what is in it (stdlib only).

PRIVATE to the collection: may change at any time.

A guest's files hold guest data - the config drive carries the boot request's user_data, the disk overlay
the guest's writes, console.log what the guest printed. None of them is readable by other users of the
host: the instance directory is ``root:<qemu group> 0750`` and the files ``root:<qemu group> 0640``.

The QEMU group is libvirt's ``group`` in /etc/libvirt/qemu.conf, else the first of the usual defaults that
exists (Debian's ``libvirt-qemu``, Fedora's ``qemu``, ``kvm``). QEMU must be able to reach the files: with
libvirt's ``dynamic_ownership`` (on by default) libvirt chowns a disk to QEMU's user while the guest runs,
and the directory's group lets QEMU's group search it. Imports neither ansible nor libvirt.
"""

from __future__ import annotations

import grp
import os
import re
import stat

QEMU_CONF = "/etc/libvirt/qemu.conf"
DEFAULT_GROUPS = ("libvirt-qemu", "qemu", "kvm")
DIR_MODE = 0o750
FILE_MODE = 0o640
_SETTING = re.compile(r"\s*(user|group)\s*=\s*\"([^\"]*)\"\s*(#.*)?")


def qemu_conf_ids(conf=QEMU_CONF):
    """{'user': ..., 'group': ...} as set in libvirt's qemu.conf (only the keys it sets)."""
    out = {}
    try:
        with open(conf, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = _SETTING.fullmatch(line.rstrip("\n"))
                if m:
                    out[m.group(1)] = m.group(2)
    except OSError:
        pass
    return out


def _gid(name):
    if name.startswith("+") and name[1:].isdigit():
        return int(name[1:])
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return int(name) if name.isdigit() else None


def qemu_gid(conf=QEMU_CONF):
    """The group id QEMU runs with (see the module docstring), or None when none is known (then the files
    stay root's own: QEMU running as root reads them anyway)."""
    name = qemu_conf_ids(conf).get("group")
    if name:
        return _gid(name)
    for name in DEFAULT_GROUPS:
        gid = _gid(name)
        if gid is not None:
            return gid
    return None


def secure(path, mode, gid=None):
    """Give ``path`` ``mode`` and (when ``gid`` is known and we may) group ``gid``; True when it changed."""
    st = os.stat(path)
    changed = False
    if gid is not None and st.st_gid != gid and os.geteuid() == 0:
        os.chown(path, -1, gid)
        changed = True
    if stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def secure_instance_dir(path, gid=None):
    """The instance directory as 0750 with QEMU's group (an older, world-readable one is tightened)."""
    return secure(path, DIR_MODE, qemu_gid() if gid is None else gid)


def secure_guest_file(path, gid=None, mode=FILE_MODE):
    """A file of the guest (config drive, disk overlay) as 0640 with QEMU's group."""
    return secure(path, mode, qemu_gid() if gid is None else gid)
