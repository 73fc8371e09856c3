# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.volume (cinder-volume on the host's storage pool, seed steps 25-27)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.api import MAX_VOLUME_GB
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule
from ansible_collections.bootflow.cloud.plugins.module_utils.host import image_cache as _image
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(HostStep):
    SEED_STEPS = "25-27"
    POLICY_RULE = "volume:create"
    SERVICE = "cinder-volume"

    def prepare(self, ctx, args):
        if args.get("state") == "absent":
            enforce(ctx.auth, "volume:delete")
        with ctx.db.tx() as conn:
            try:
                vol = _volumes.get_volume(conn, args.get("name"), ctx.auth)
            except NotFound:
                if args.get("state") == "absent":
                    # gone already, or not the caller's: the host's pool is not touched either way
                    raise SkipModule({"changed": False, "msg": "volume %s is absent" % args.get("name")})
                raise
            if args.get("state") == "absent" and vol.status == "in-use":
                raise Conflict("Volume %s is in-use by instance %s; detach it first." % (vol.name, vol.instance_uuid))
            instance = instances.find_instance(conn, vol.instance_uuid, ctx.auth) if vol.instance_uuid else None
        if args.get("source_path"):
            # the root volume of a boot from volume: only the cache file of its instance's image
            want = _image.cache_name(instance.image_id) if instance is not None else None
            path = args["source_path"].rstrip("/")
            if want is None or path.split("/")[-1] != want or path.split("/")[-2:-1] != ["_base"]:
                raise InvalidRequest("source_path %s is not the cached image of volume %s's instance (_base/%s)."
                                     % (args["source_path"], vol.name, want))
        args["name"] = vol.name
        if args.get("size_gb") is None:
            args["size_gb"] = vol.size_gb
        elif args.get("state", "present") == "present":
            self._check_size(ctx, vol, args)
        args.setdefault("pool", vol.pool)
        self._volume = vol
        return instance

    @staticmethod
    def _check_size(ctx, vol, args):
        """A new size is checked here, before the host is asked: a number in Cinder's range, no shrink,
        and the growth within the project's gigabytes quota."""
        try:
            size = int(args["size_gb"])
        except (TypeError, ValueError):
            raise InvalidRequest("size_gb must be a whole number of GB, got %r." % (args["size_gb"],)) from None
        if not 1 <= size <= MAX_VOLUME_GB:
            raise InvalidRequest("size_gb must be between 1 and %d, got %d." % (MAX_VOLUME_GB, size))
        if size < vol.size_gb:
            raise InvalidRequest("Volume %s is %d GB; shrinking it to %d GB is not supported." % (vol.name, vol.size_gb, size))
        if size > vol.size_gb:
            with ctx.db.tx() as conn:
                _quota.check(conn, vol.project_id, {"gigabytes": size - vol.size_gb})
        args["size_gb"] = size

    def record(self, ctx, args, result, instance):
        vol = self._volume
        with ctx.db.tx() as conn:
            if args.get("state", "present") == "absent":
                _volumes.set_status(conn, vol.id, "deleting")
                _volumes.set_status(conn, vol.id, "deleted", instance_uuid=None, device=None)
                return None
            if vol.status == "creating":
                _volumes.set_status(conn, vol.id, "available", host=ctx.host)
            if args["size_gb"] != vol.size_gb:
                conn.execute(_volumes.volume_table().update().where(
                    _volumes.volume_table().c.id == vol.id).values(size_gb=args["size_gb"]))
            if instance is not None and instance.vm_state == instances.BUILDING and instance.task_state != instances.BLOCK_DEVICE_MAPPING:
                new = instances.move_state(conn, instance.uuid, instances.BUILDING, instances.BLOCK_DEVICE_MAPPING)
                return new.vm_state, new.task_state
        return None
