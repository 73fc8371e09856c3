# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.instance_info: nova-conductor's instance spec for the compute side
(seed steps 13-18), or nova-api's read of the instance (the client polling its state, seed rows 55-58)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "13-18"
    SERVICE = "nova-conductor"

    def step(self, ctx):
        a = ctx.args
        row, spec = conductor.instance_spec(ctx.db, ctx.auth, a["instance"], a["missing_ok"])
        if row is None:
            return {"exists": False, "instance": None}
        state = (row.vm_state, row.task_state)
        if ctx.host == row.host:
            # the instance's own host asks: the conductor answers nova-compute (rpc.call)
            step = self.step_row(ctx, row, state, state, False, action="instance_info", host=row.host, record=False)
        else:
            # anyone else reads the instance through nova-api (GET /servers/{id})
            step = self.step_row(ctx, row, state, state, False, action="show", host=row.host, record=False,
                                 seed_steps="55-58", service="nova-api")
        return {"exists": True, "instance": spec, "bootflow_step": step}
