# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.quota (per-project limits and usage)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        enforce(ctx.auth, "identity:quota")
        with ctx.db.tx() as conn:
            project = _identity.find_project(conn, a["project"])
            if project is None:
                raise NotFound("Project %s could not be found." % a["project"])
        changed, limits = _quota.set_limits(ctx.db, project.id, {r: a[r] for r in _quota.DEFAULTS}, ctx.check_mode)
        with ctx.db.tx() as conn:
            usage = _quota.usage(conn, project.id)
        return {"changed": changed, "quota": limits, "usage": usage, "project_id": project.id}
