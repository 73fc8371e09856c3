# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.keypair (nova-api os-keypairs: import, generate, delete)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import keypairs as _keypairs
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


def _summary(keypair):
    """What --diff shows of a key pair: who it belongs to and which key it is."""
    if keypair is None:
        return {}
    return {k: keypair[k] for k in ("name", "user_id", "fingerprint", "public_key")}


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        changed, before, after, private_key = _keypairs.ensure(
            ctx.db, ctx.auth, a["name"], a["public_key"], a["state"], ctx.check_mode, user=a["user"],
            local_identity=ctx.auth_backend == "local")
        out = {"changed": changed, "keypair": after if a["state"] == "present" else before}
        if private_key is not None:
            # returned once, never stored; Ansible censors this result in its output and logs
            out.update(private_key=private_key, _ansible_no_log=True)
        if ctx.diff and changed:
            out["diff"] = {"before": _summary(before), "after": _summary(after)}
        return out
