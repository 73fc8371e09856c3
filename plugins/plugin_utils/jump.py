# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the controller reaches a guest: its fixed IP is on its hypervisor host's provider bridge, so SSH goes
through that host, with the host's own connection settings (the filter bootflow.cloud.jump_args and the
inventory plugin bootflow.cloud.instances).

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import shlex


def proxy_args(hypervisor_vars, extra=""):
    """``ansible_ssh_common_args`` with an SSH ProxyCommand through the hypervisor host described by
    ``hypervisor_vars`` (its address, port, user, private key and its own ssh arguments), then ``extra``.
    A ProxyCommand rather than ProxyJump: the jump takes the hypervisor's key and options, which ProxyJump
    cannot be given separately. Raises ValueError without an address."""
    hv = hypervisor_vars or {}
    host = hv.get("ansible_host") or hv.get("inventory_hostname")
    if not host:
        raise ValueError("the hypervisor's variables have neither ansible_host nor inventory_hostname")
    cmd = ["ssh", "-W", "%h:%p", "-q"]
    if hv.get("ansible_port"):
        cmd += ["-p", str(hv["ansible_port"])]
    key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
    if key:
        cmd += ["-i", str(key)]
    for args in (hv.get("ansible_ssh_common_args"), hv.get("ansible_ssh_extra_args")):
        if args:
            cmd += shlex.split(str(args))
    user = hv.get("ansible_user") or hv.get("ansible_ssh_user")
    cmd.append("%s@%s" % (user, host) if user else str(host))
    out = "-o ProxyCommand=%s" % shlex.quote(" ".join(c if c == "%h:%p" else shlex.quote(c) for c in cmd))
    return (out + " " + extra).strip() if extra else out
