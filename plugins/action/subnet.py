# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.subnet (neutron subnet + allocation pool)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        enforce(ctx.auth, "network:manage")
        changed, sub = _networking.ensure_subnet(ctx.db, a["network"], a["name"], a["cidr"], a["gateway_ip"],
                                                 a["pool_start"], a["pool_end"], a["dhcp_ip"], a["dns_servers"],
                                                 a["state"], ctx.check_mode)
        return {"changed": changed, "subnet": sub}
