# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.identity_keys (Fernet key repository: setup and rotation)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


def _keys_view(state, keys):
    return {"primary": state["primary"], "indexes": state["keys"], "repository": keys.where}


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.identity_keys")
        enforce(ctx.auth, "identity:keys")
        keys = _identity.key_repository(ctx.state_dir, ctx.db)
        if a["state"] == "present":
            return {"changed": False, "fernet_keys": _keys_view(keys.state(), keys)}
        if ctx.check_mode:
            if a["max_active_keys"] < 2:
                keys.rotate(a["max_active_keys"])  # raises the same error a real run would
            return {"changed": True, "fernet_keys": _keys_view(keys.state(), keys)}
        rotated = keys.rotate(a["max_active_keys"])
        return {"changed": True, "fernet_keys": _keys_view({"primary": rotated["primary"], "keys": rotated["keys"]}, keys),
                "removed": rotated["removed"]}
