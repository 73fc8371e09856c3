# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.boot_request (nova-api multi-create for a list, seed steps 3-7)."""

from __future__ import annotations

from types import SimpleNamespace

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import boot_request as _boot_request
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "3-7"
    SERVICE = "nova-api"

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        entries = _boot_request.expand(a["instances"], a["defaults"], names_only=a["state"] != "present")
        if a["state"] == "absent":
            missing = _boot_request.missing(ctx.db, auth, entries)
            out = {"changed": False, "instances": [], "delete": _boot_request.lookup(ctx.db, auth, entries),
                   "missing": missing}
            if missing:
                out["msg"] = " ".join(m["message"] for m in missing)
                out["warnings"] = [m["message"] for m in missing if m["warn"]]
            return out
        if a["state"] == "query":
            return {"changed": False, "instances": _boot_request.query(ctx.db, auth, entries), "delete": []}
        _resolve_images(ctx, entries)
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


def _resolve_images(ctx, entries):
    """Each entry's image as nova-api finds it: with image_backend=glance, in Glance as the caller (its record
    refreshed here), once per image named. An image gone from Glance (or no longer visible) is still fine for
    an instance that exists and was booted from it (a re-run compares the name or ID it was booted from); a
    new instance is refused."""
    found = {}
    for entry in entries:
        if entry["state"] != "present":
            continue
        ref = entry["image"]
        if ref not in found:
            try:
                found[ref] = _images.boot_image_ref(ctx, ref)
            except NotFound as exc:
                found[ref] = exc
        if isinstance(found[ref], NotFound):
            with ctx.db.tx() as conn:
                if instances.find_instance(conn, entry["name"], ctx.auth) is None:
                    raise found[ref]
            continue
        entry["image"] = found[ref]
