# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.port (neutron-server + IPAM, seed steps 22-24)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "22-24"
    SERVICE = "neutron-server"

    def step(self, ctx):
        a = ctx.args
        if a["state"] == "absent":
            released = _networking.release_instance_ports(ctx.db, ctx.auth, a["instance"], ctx.check_mode)
            return {"changed": bool(released), "released": released}
        changed, row, after, ports = _networking.allocate_instance_ports(ctx.db, ctx.auth, a["instance"], a["fixed_ips"],
                                                                         ctx.check_mode)
        return {"changed": changed, "ports": ports,
                "bootflow_step": self.step_row(ctx, row, (row.vm_state, row.task_state), after, changed,
                                               action="allocate_ports", host=row.host, record=changed)}
