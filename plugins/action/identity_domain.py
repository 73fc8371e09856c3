# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.identity_domain (keystone domains)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        ctx.require_local_identity("bootflow.cloud.identity_domain")
        enforce(ctx.auth, "identity:domain")
        changed, domain = _identity.ensure_domain(ctx.db, a["name"], a["description"], a["enabled"], a["state"],
                                                  ctx.check_mode)
        return {"changed": changed, "domain": domain}
