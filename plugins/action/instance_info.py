# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.instance_info (nova-conductor, seed steps 13-18)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        instance=dict(type="str", required=True),
        missing_ok=dict(type="bool", default=False),
    )

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        enforce(auth, "compute:get")
        with ctx.db.tx() as conn:
            row = instances.find_instance(conn, a["instance"], auth)
            if row is None:
                if a["missing_ok"]:
                    return {"exists": False, "instance": None}
                instances.get_instance(conn, a["instance"], auth)  # raises NotFound with the usual message
            spec = conductor.spec(conn, row)
        state = (row.vm_state, row.task_state)
        return {"exists": True, "instance": spec,
                "bootflow_step": instances.step_row(row.name, "13-18", "nova-conductor", "instance_info", row.host,
                                                    state, state, False, monotonic_ms(ctx.started))}
