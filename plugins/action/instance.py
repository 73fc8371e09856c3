# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.instance (nova-api, seed steps 3-7)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, IMAGE_BACKEND_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        name=dict(type="str", required=True),
        flavor=dict(type="str"),
        image=dict(type="str"),
        networks=dict(type="list", elements="str"),
        volume_size_gb=dict(type="int", default=0),
        volume_delete_on_termination=dict(type="bool", default=True),
        availability_zone=dict(type="str"),
        boot_from_volume=dict(type="bool", default=False),
        root_volume_size_gb=dict(type="int"),
        root_volume_delete_on_termination=dict(type="bool", default=True),
        user_data=dict(type="str"),
        server_group=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent", "error"]),
        fault=dict(type="str"),
    )
    REQUIRED_IF = [("state", "present", ("flavor", "image", "networks")), ("state", "error", ("fault",))]

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        if a["state"] == "present":
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
                                      availability_zone=a["availability_zone"],
                                      boot_from_volume=a["boot_from_volume"],
                                      root_volume_size_gb=a["root_volume_size_gb"],
                                      root_volume_delete_on_termination=a["root_volume_delete_on_termination"],
                                      server_group=a["server_group"])
            if row is None:  # check mode, would be created
                return {"changed": True, "instance": {"name": a["name"], "vm_state": instances.BUILDING,
                                                      "task_state": instances.SCHEDULING}}
            out = {"changed": changed, "instance": instances.instance_dict(row)}
            if changed:
                before, after = (None, None), (instances.BUILDING, instances.SCHEDULING)
                ms = monotonic_ms(ctx.started)
                with ctx.db.tx() as conn:
                    instances.record_step(conn, row.uuid, "3-7", "nova-api", "create", None, before, after, True, ms)
                out["bootflow_step"] = instances.step_row(row.name, "3-7", "nova-api", "create", "controller",
                                                          before, after, True, ms)
            return out
        with ctx.db.tx() as conn:
            row = instances.find_instance(conn, a["name"], auth)
            if row is None:
                if a["state"] == "error":
                    instances.get_instance(conn, a["name"], auth)  # NotFound, with the usual message
                return {"changed": False, "instance": None}  # absent already (or not visible to the caller)
            enforce(auth, "compute:set_error" if a["state"] == "error" else "compute:delete")
            if a["state"] == "error":
                if row.vm_state == instances.ERROR:
                    return {"changed": False, "instance": instances.instance_dict(row)}
                if not ctx.check_mode:
                    instances.set_fault(conn, row.uuid, a["fault"], "boot", row.host)
                    row = instances.get_instance(conn, row.uuid, auth)
                return {"changed": True, "instance": instances.instance_dict(row)}
            # absent: the record goes last, after the compute side removed everything (delete.yml)
            leftovers = []
            if _placement.existing_allocation(conn, row.uuid) is not None:
                leftovers.append("allocation")
            if _networking.instance_ports(conn, row.uuid):
                leftovers.append("ports")
            for vol in _volumes.instance_volumes(conn, row.uuid):
                if vol.host is None and vol.status in ("creating", "attaching"):
                    if not ctx.check_mode:  # never reached a host: nothing to remove there
                        _volumes.set_status(conn, vol.id, "deleted", instance_uuid=None, device=None)
                elif not vol.delete_on_termination and vol.status in ("available", "attaching"):
                    if not ctx.check_mode:  # kept volume: detached, free for another instance
                        _volumes.set_status(conn, vol.id, "available", instance_uuid=None, device=None)
                else:
                    leftovers.append("volume %s (%s)" % (vol.name, vol.status))
            if leftovers:
                raise Conflict("Instance %s still holds %s; run playbooks/delete.yml, which releases them first."
                               % (row.name, ", ".join(leftovers)))
            if not ctx.check_mode:
                instances.soft_delete(conn, row.uuid)
            return {"changed": True, "instance": dict(instances.instance_dict(row), vm_state=instances.DELETED)}
