# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.compute_node (nova-compute resource tracker report)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils._action import HostStep

# configured on the controller side, not read from the host
OVERRIDES = ("reserved_host_memory_mb", "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
             "vcpus", "memory_mb", "local_gb", "disabled")


class ActionModule(HostStep):
    POLICY_RULE = "compute:report_node"
    SERVICE = "nova-compute"

    def run_module(self, ctx, module_args):
        return super().run_module(ctx, {k: v for k, v in module_args.items() if k not in OVERRIDES})

    def record(self, ctx, args, result, instance):
        overrides = {k: args.get(k) for k in OVERRIDES}
        changed, node = _placement.upsert_compute_node(ctx.db, ctx.host, result["compute_node"], overrides, ctx.check_mode)
        result["changed"] = changed
        result["compute_node"] = dict(result["compute_node"], **{k: node.get(k) for k in OVERRIDES if k in node},
                                      hostname=ctx.host)
