# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.volume_attach (Cinder attachment + libvirt hot-plug, seed steps 25-27).

While the instance is still building, the attachment is bookkeeping only (status attaching, device
reserved): the domain is defined with the volume in its XML at spawn, as Nova's libvirt driver does.
Once the instance exists on its host, the module hot-plugs (or unplugs) the disk live and in the
persistent definition.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import domain_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes


class ActionModule(HostStep):
    SEED_STEPS = "25-27"
    POLICY_RULE = "volume:attach"
    SERVICE = "cinder-api"

    _volume = None
    _building = False

    def prepare(self, ctx, args):
        with ctx.db.tx() as conn:
            vol, instance, args["device"] = _volumes.attachment(conn, ctx.auth, args.get("volume"), args.get("domain"),
                                                                args.get("device"))
        args["volume"] = vol.name
        args["domain"] = domain_name(instance.uuid)
        if "pool" not in ctx.given:
            args["pool"] = vol.pool
        self._volume = vol
        # while the instance builds, the attachment is bookkeeping only: the domain gets the disk at spawn
        self._building = instance.vm_state == instances.BUILDING
        return instance

    def step_action(self, args, instance):
        return "attachment_create" if self._building else super().step_action(args, instance)

    def run_module(self, ctx, module_args):
        if not self._building:
            return super().run_module(ctx, module_args)  # the domain exists: hot-plug on the host
        vol = self._volume
        if module_args["state"] == "absent":
            changed = vol.status == "attaching"
        else:
            changed = vol.status == "available" or vol.device != module_args["device"]
        return {"changed": changed, "device": module_args["device"], "live": False,
                "connection_info": {"pool": module_args["pool"], "volume": vol.name}}

    def record(self, ctx, args, result, instance):
        vol = self._volume
        with ctx.db.tx() as conn:
            if args["state"] == "absent":
                if not self._building or result["changed"]:
                    _volumes.set_status(conn, vol.id, "available", instance_uuid=None, device=None)
            elif self._building:
                if result["changed"]:   # reserved: the device is the domain's once it is defined
                    _volumes.set_status(conn, vol.id, "attaching", instance_uuid=instance.uuid, device=args["device"])
            else:
                if vol.status == "available":  # Cinder: available -> attaching -> in-use
                    _volumes.set_status(conn, vol.id, "attaching", instance_uuid=instance.uuid, device=args["device"])
                _volumes.set_status(conn, vol.id, "in-use", instance_uuid=instance.uuid, device=args["device"])
        return None
