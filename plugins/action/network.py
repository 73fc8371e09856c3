# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.network (neutron network on a provider bridge)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        enforce(ctx.auth, "network:manage")
        changed, net = _networking.ensure_network(ctx.db, a["name"], a["bridge"], a["state"], ctx.check_mode)
        return {"changed": changed, "network": net}
