# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.project (keystone projects)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.project")
        enforce(ctx.auth, "identity:project")
        changed, project = _identity.ensure_project(ctx.db, a["name"], a["description"], a["enabled"], a["state"],
                                                    ctx.check_mode, domain=a["domain"])
        return {"changed": changed, "project": project}
