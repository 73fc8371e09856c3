# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.schedule (nova-scheduler + placement claim, seed steps 8-12)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "8-12"
    SERVICE = "nova-scheduler"

    def step(self, ctx):
        a = ctx.args

        def placement():
            return _placement.for_step(ctx)   # None: the local backend

        if a["state"] == "absent":
            host = scheduling.release(ctx.db, ctx.auth, a["instance"], placement, ctx.check_mode)
            return {"changed": host is not None, "released_from": host}
        cfg = scheduling.config(a["enabled_filters"], a["weight_multipliers"], a["host_subset_size"], a["max_attempts"],
                                a["service_down_time"])
        out = scheduling.select_destinations(ctx.db, ctx.auth, a["instance"], cfg, a["hosts"], placement, ctx.check_mode)
        row, new = out.pop("instance"), out.pop("new")
        if not out["changed"]:
            out.pop("backend")
            return dict(out, instance=instances.instance_dict(row))
        if ctx.check_mode:
            out.pop("backend", None)
            return out
        out.update(instance=instances.instance_dict(new), placement_backend=out.pop("backend"),
                   bootflow_step=self.step_row(ctx, row, (row.vm_state, row.task_state), (new.vm_state, new.task_state),
                                               True, action="select_destinations", host=out["host"]))
        return out
