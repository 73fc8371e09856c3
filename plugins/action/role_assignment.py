# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.role_assignment (keystone role assignments)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.role_assignment")
        enforce(ctx.auth, "identity:role_assignment")
        changed = _identity.ensure_role_assignment(ctx.db, a["user"], a["project"], a["role"], a["state"], ctx.check_mode,
                                                   user_domain=a["user_domain"], project_domain=a["project_domain"])
        return {"changed": changed, "user": a["user"], "project": a["project"], "role": a["role"]}
