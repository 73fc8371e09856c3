# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.server_group (nova-api os-server-groups: create, show, delete)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


def _summary(group):
    """What --diff shows of a group: the parts a user sets, and who is in it."""
    if group is None:
        return {}
    return {"name": group["name"], "policy": group["policy"], "rules": group["rules"],
            "members": [m["name"] for m in group["members"]]}


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        changed, before, after = _server_groups.ensure(ctx.db, ctx.auth, a["name"], a["policy"], a["rules"],
                                                       a["state"], ctx.check_mode)
        out = {"changed": changed, "server_group": after if a["state"] == "present" else before}
        if ctx.diff and changed:
            out["diff"] = {"before": _summary(before), "after": _summary(after)}
        return out
