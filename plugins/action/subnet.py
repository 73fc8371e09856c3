# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.subnet (neutron subnet + allocation pool)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        network=dict(type="str", required=True),
        cidr=dict(type="str"),
        gateway_ip=dict(type="str"),
        dhcp_ip=dict(type="str"),
        pool_start=dict(type="str"),
        pool_end=dict(type="str"),
        dns_servers=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    REQUIRED_IF = [("state", "present", ("cidr",))]
    REQUIRED_TOGETHER = [("pool_start", "pool_end")]

    def step(self, ctx):
        a = ctx.args
        enforce(ctx.auth, "network:manage")
        changed, sub = _networking.ensure_subnet(ctx.db, a["network"], a["name"], a["cidr"], a["gateway_ip"],
                                                 a["pool_start"], a["pool_end"], a["dhcp_ip"], a["dns_servers"],
                                                 a["state"], ctx.check_mode)
        return {"changed": changed, "subnet": sub}
