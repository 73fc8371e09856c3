# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.volume_attach (Cinder attachment + libvirt hot-plug, seed steps 25-27).

While the instance is still building, the attachment is bookkeeping only (status attaching, device
reserved): the domain is defined with the volume in its XML at spawn, as Nova's libvirt driver does.
Once the instance exists on its host, the module hot-plugs (or unplugs) the disk live and in the
persistent definition.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import _DEV_RE as DEVICE_RE, next_device
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(HostStep):
    SEED_STEPS = "25-27"
    POLICY_RULE = "volume:attach"
    SERVICE = "cinder-api"

    def prepare(self, ctx, args):
        device = args.get("device")
        if device is not None and not (isinstance(device, str) and DEVICE_RE.match(device)):
            raise InvalidRequest("Invalid device name %r: vdX, sdX or hdX (for example vdb)." % (device,))
        with ctx.db.tx() as conn:
            vol = _volumes.get_volume(conn, args.get("volume"), ctx.auth)
            instance = instances.find_instance(conn, vol.instance_uuid, ctx.auth) if vol.instance_uuid else None
            named = None
            if args.get("domain"):
                named = instances.find_instance(conn, args["domain"].replace("bootflow-", "", 1), ctx.auth)
                if named is None:
                    raise NotFound("Instance of domain %s could not be found." % args["domain"])
        if named is not None and instance is not None and named.uuid != instance.uuid:
            raise Conflict("Volume %s is attached to instance %s, not to %s (multiattach is not supported)."
                           % (vol.name, instance.name, named.name))
        instance = instance or named
        if instance is None:
            raise InvalidRequest("Volume %s is not attached to an instance; give the instance's domain." % vol.name)
        if vol.instance_uuid and vol.instance_uuid != instance.uuid:
            raise Conflict("Volume %s is attached to instance %s (multiattach is not supported)." % (vol.name, vol.instance_uuid))
        args["volume"] = vol.name
        args["domain"] = "bootflow-%s" % instance.uuid
        args.setdefault("pool", vol.pool)
        if args.get("device") is None:
            with ctx.db.tx() as conn:
                taken = {v.device for v in _volumes.instance_volumes(conn, instance.uuid) if v.id != vol.id and v.device}
            args["device"] = vol.device if vol.device and vol.device not in taken else next_device(taken)
        self._volume = vol
        return instance

    def step(self, ctx):
        args = dict(ctx.args)
        if not args.get("auth_token"):
            return super().step(ctx)
        enforce(ctx.auth, self.POLICY_RULE)
        instance = self.prepare(ctx, args)
        if instance.vm_state != instances.BUILDING:
            return super().step(ctx)  # the domain exists: hot-plug on the host
        # building: reserve the attachment; the domain gets the disk at spawn (seed step 28)
        vol = self._volume
        changed = vol.status == "available" or vol.device != args["device"]
        before = (instance.vm_state, instance.task_state)
        ms = monotonic_ms(ctx.started)
        if changed and not ctx.check_mode:
            with ctx.db.tx() as conn:
                _volumes.set_status(conn, vol.id, "attaching", instance_uuid=instance.uuid, device=args["device"])
                instances.record_step(conn, instance.uuid, self.SEED_STEPS, self.SERVICE, "attachment_create", ctx.host,
                                      before, before, True, ms)
        return {"changed": changed, "device": args["device"], "live": False,
                "connection_info": {"pool": args["pool"], "volume": vol.name},
                "bootflow_step": instances.step_row(instance.name, self.SEED_STEPS, self.SERVICE, "attachment_create",
                                                    ctx.host, before, before, changed, ms)}

    def record(self, ctx, args, result, instance):
        vol = self._volume
        with ctx.db.tx() as conn:
            if args.get("state", "present") == "absent":
                _volumes.set_status(conn, vol.id, "available", instance_uuid=None, device=None)
            else:
                if vol.status == "available":  # Cinder: available -> attaching -> in-use
                    _volumes.set_status(conn, vol.id, "attaching", instance_uuid=instance.uuid, device=args["device"])
                _volumes.set_status(conn, vol.id, "in-use", instance_uuid=instance.uuid, device=args["device"])
        return None
