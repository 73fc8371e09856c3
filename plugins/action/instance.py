# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.instance (nova-api, seed steps 3-7)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api, instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    SEED_STEPS = "3-7"
    SERVICE = "nova-api"

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth   # the token is validated before anything else
        if a["state"] == "error":
            changed, row = api.set_error(ctx.db, auth, a["name"], a["fault"], ctx.check_mode)
            return {"changed": changed, "instance": instances.instance_dict(row)}
        if a["state"] == "absent":
            changed, row = api.delete(ctx.db, auth, a["name"], ctx.check_mode)
            return {"changed": changed,
                    "instance": None if row is None else dict(instances.instance_dict(row), vm_state=instances.DELETED)}
        try:
            image_ref = _images.boot_image_ref(ctx, a["image"])  # image_backend=glance: found in Glance as the caller
        except NotFound:
            # gone from Glance (or not visible any more): still fine for a re-run for an existing instance
            # booted from it (create compares the name or ID it was booted from); a new one is refused here
            with ctx.db.tx() as conn:
                if instances.find_instance(conn, a["name"], auth) is None:
                    raise
            image_ref = a["image"]
        changed, row = api.create(ctx.db, auth, a["name"], a["flavor"], image_ref, a["networks"],
                                  a["volume_size_gb"], a["user_data"], ctx.check_mode,
                                  volume_delete_on_termination=a["volume_delete_on_termination"],
                                  availability_zone=a["availability_zone"], boot_from_volume=a["boot_from_volume"],
                                  root_volume_size_gb=a["root_volume_size_gb"],
                                  root_volume_delete_on_termination=a["root_volume_delete_on_termination"],
                                  server_group=a["server_group"], key_name=a["key_name"])
        if row is None:  # check mode, would be created
            return {"changed": True, "instance": {"name": a["name"], "vm_state": instances.BUILDING,
                                                  "task_state": instances.SCHEDULING}}
        out = {"changed": changed, "instance": instances.instance_dict(row)}
        if changed:
            out["bootflow_step"] = self.step_row(ctx, row, (None, None), (instances.BUILDING, instances.SCHEDULING), True,
                                                 action="create")
        return out
