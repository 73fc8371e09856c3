# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.user (keystone users)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.user")
        enforce(ctx.auth, "identity:user")
        changed, user = _identity.ensure_user(ctx.db, a["name"], a["password"], a["default_project"], a["enabled"],
                                              a["update_password"], a["state"], ctx.check_mode,
                                              domain=a["domain"])
        return {"changed": changed, "user": user}
