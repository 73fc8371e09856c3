# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.schedule (nova-scheduler + placement claim, seed steps 8-12)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NoValidHostError
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import resize as _resize
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


# what the result says of each placed instance (a request of one instance: also at the top, as with O(instance))
_PLACEMENT_KEYS = ("name", "uuid", "host", "alternates", "changed", "rejected", "claim_failures", "weights",
                   "server_group")


class ActionModule(ControllerStep):
    SEED_STEPS = "8-12"
    SERVICE = "nova-scheduler"

    def step(self, ctx):
        a = ctx.args

        def placement():
            return _placement.for_step(ctx)   # None: the local backend

        if a["state"] == "absent":
            if a["instance"] is None:
                raise InvalidRequest("state=absent takes one instance (instance), not a list.")
            host = scheduling.release(ctx.db, ctx.auth, a["instance"], placement, ctx.check_mode)
            # a resize never confirmed holds the old flavor's claim too (its migration's): released with it
            migration = None if ctx.check_mode else _resize.release_open(ctx.db, a["instance"], ctx.auth, placement())
            return {"changed": host is not None or migration is not None, "released_from": host,
                    "released_migration": migration}
        # nova.conf's scheduler options: the operator's file; a task's value for an admin only (AuthError for
        # anyone else, before anything is read or claimed)
        cfg, hosts = scheduling.operator_config(ctx.operator_setting)
        if a["instances"] is not None:
            return self._schedule_list(ctx, cfg, hosts, placement)
        out = scheduling.select_destinations(ctx.db, ctx.auth, a["instance"], cfg, hosts, placement, ctx.check_mode)
        row, new = out.pop("instance"), out.pop("new")
        if not out["changed"]:
            out.pop("backend")
            return dict(out, instance=instances.instance_dict(row))
        if ctx.check_mode:
            out.pop("backend", None)
            return out
        out.update(instance=instances.instance_dict(new), placement_backend=out.pop("backend"),
                   bootflow_step=self.step_row(ctx, row, (row.vm_state, row.task_state), (new.vm_state, new.task_state),
                                               True, action="select_destinations", host=out["host"]))
        return out

    def _schedule_list(self, ctx, cfg, hosts, placement):
        a = ctx.args
        out = scheduling.select_for_list(ctx.db, ctx.auth, a["instances"], cfg, hosts, placement, ctx.check_mode)
        placements = []
        for p in out["placed"]:
            placements.append({k: p.get(k) for k in _PLACEMENT_KEYS})
            if p["changed"] and not ctx.check_mode:
                row, new = p["instance"], p["new"]
                self.step_row(ctx, row, (row.vm_state, row.task_state), (new.vm_state, new.task_state), True,
                              action="select_destinations", host=p["host"])
                ctx.progress("%s -> %s (alternates: %s)" % (p["name"], p["host"], ", ".join(p["alternates"]) or "none"))
        for f in out["unplaced"]:
            ctx.progress("%s: %s" % (f["name"], f["fault"]))
        for w in out["withdrawn"]:
            ctx.progress("%s withdrawn: %s" % (w["name"], w["reason"]))
        if out["unplaced"] and not placements and not out["withdrawn"]:
            # nothing of the request can be built: the task fails as for one instance (each is in ERROR)
            first = out["unplaced"][0]
            msg = first["fault"] if len(out["unplaced"]) == 1 else "No instance of the request could be placed: %s" % (
                "; ".join("%s: %s" % (f["name"], f["fault"]) for f in out["unplaced"]))
            raise NoValidHostError(msg, rejected=first["rejected"], unplaced=out["unplaced"])
        result = {"changed": out["changed"], "placements": placements, "unplaced": out["unplaced"],
                  "withdrawn": out["withdrawn"]}
        if len(a["instances"]) == 1 and placements:
            # a request of one instance also answers as O(instance) does
            result.update({k: v for k, v in placements[0].items() if k not in ("name", "uuid", "changed")})
        return result
