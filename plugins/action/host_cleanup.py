# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.host_cleanup (nova-compute's start-up cleanup list, on the controller)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import cleanups as _cleanups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    def step(self, ctx):
        host = ctx.args["host"] or ctx.host
        if not host or host == "localhost":
            raise InvalidRequest("host is required (the hypervisor's inventory hostname) when the task runs on %s."
                                 % (ctx.host or "the controller"))
        marked = _cleanups.done(ctx.db, ctx.auth, host, ctx.args["done"], ctx.check_mode) if ctx.args["done"] else []
        left = _cleanups.pending(ctx.db, ctx.auth, host)
        if marked and ctx.check_mode:
            left = [c for c in left if c["id"] not in marked]
        return {"changed": bool(marked), "done": marked, "cleanups": left}
