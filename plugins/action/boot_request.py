# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.boot_request (nova-api multi-create for a list, seed steps 3-7)."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import boot_request as _boot_request
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "3-7"
    SERVICE = "nova-api"

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        entries = _boot_request.expand(a["instances"], a["defaults"], names_only=a["state"] != "present")
        if a["state"] == "absent":
            return {"changed": False, "instances": [], "delete": _boot_request.lookup(ctx.db, auth, entries)}
        if a["state"] == "query":
            return {"changed": False, "instances": _boot_request.query(ctx.db, auth, entries), "delete": []}
        changed, present, absent = _boot_request.record(ctx.db, auth, entries, ctx.check_mode)
        out = {"changed": changed, "instances": present,
               "delete": _boot_request.lookup(ctx.db, auth, absent) if absent else []}
        for entry in present:
            if entry["created"] and not ctx.check_mode:
                # each instance's step log starts with nova-api's create, as for a single boot
                self.step_row(ctx, SimpleNamespace(uuid=entry["uuid"], name=entry["name"]), (None, None),
                              (instances.BUILDING, instances.SCHEDULING), True, action="create")
                ctx.progress("%s %s: recorded (building/scheduling)" % (entry["name"], entry["uuid"]))
        if ctx.diff:
            out["diff"] = {"before": {"instances": sorted(e["name"] for e in present if not e["created"])
                                      + sorted(e["name"] for e in absent)},
                           "after": {"instances": sorted(e["name"] for e in present)}}
        return out
