# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.flavor (nova flavor registry)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce

# Nova's flavor API: vcpus, ram and disk are database integers (at most 2^31 - 1)
MAX_FLAVOR_VALUE = 2 ** 31 - 1


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        enforce(ctx.auth, "compute:flavor_manage")
        for key in ("vcpus", "ram_mb", "disk_gb"):
            if a[key] is not None and a[key] > MAX_FLAVOR_VALUE:
                raise InvalidRequest("Invalid flavor %s: %s must be at most %d, got %d." % (a["name"], key, MAX_FLAVOR_VALUE, a[key]))
        changed, flavor = _compute_api.ensure_flavor(ctx.db, a["name"], a["vcpus"], a["ram_mb"], a["disk_gb"],
                                                     a["extra_specs"], a["state"], ctx.check_mode)
        return {"changed": changed, "flavor": flavor}
