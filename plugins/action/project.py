# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.project (keystone projects)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        description=dict(type="str"),
        enabled=dict(type="bool"),
        domain=dict(type="str", default="Default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.project")
        enforce(ctx.auth, "identity:project")
        changed, project = _identity.ensure_project(ctx.db, a["name"], a["description"], a["enabled"], a["state"],
                                                    ctx.check_mode, domain=a["domain"])
        return {"changed": changed, "project": project}
