# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.quota (per-project limits and usage)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        project=dict(type="str", required=True),
        instances=dict(type="int"),
        cores=dict(type="int"),
        ram=dict(type="int"),
        volumes=dict(type="int"),
        gigabytes=dict(type="int"),
        server_groups=dict(type="int"),
        server_group_members=dict(type="int"),
    )

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
