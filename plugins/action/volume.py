# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.volume (cinder-volume on the host's storage pool, seed steps 25-27)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import cache_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, manager
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes


class ActionModule(HostStep):
    SEED_STEPS = "25-27"
    POLICY_RULE = "volume:create"
    SERVICE = "cinder-volume"

    def prepare(self, ctx, args):
        if args["state"] == "absent":
            enforce(ctx.auth, "volume:delete")
        with ctx.db.tx() as conn:
            try:
                vol = _volumes.get_volume(conn, args.get("name"), ctx.auth)
            except NotFound:
                if args["state"] == "absent":
                    # gone already, or not the caller's: the host's pool is not touched either way
                    raise SkipModule({"changed": False, "msg": "volume %s is absent" % args.get("name")})
                raise
            if args["state"] == "absent" and vol.status == "in-use":
                raise Conflict("Volume %s is in-use by instance %s; detach it first." % (vol.name, vol.instance_uuid))
            instance = instances.find_instance(conn, vol.instance_uuid, ctx.auth) if vol.instance_uuid else None
        if args.get("source_path"):
            # the root volume of a boot from volume: only the cache file of its instance's image
            want = cache_name(instance.image_id) if instance is not None else None
            path = args["source_path"].rstrip("/")
            if want is None or path.split("/")[-1] != want or path.split("/")[-2:-1] != ["_base"]:
                raise InvalidRequest("source_path %s is not the cached image of volume %s's instance (_base/%s)."
                                     % (args["source_path"], vol.name, want))
        args["name"] = vol.name
        if args.get("size_gb") is None:
            args["size_gb"] = vol.size_gb
        elif args["state"] == "present":
            with ctx.db.tx() as conn:
                args["size_gb"] = _volumes.check_resize(conn, vol, args["size_gb"])
        if "pool" not in ctx.given:
            args["pool"] = vol.pool
        self._volume = vol
        return instance

    def record(self, ctx, args, result, instance):
        with ctx.db.tx() as conn:
            if args["state"] == "absent":
                manager.volume_deleted(conn, self._volume)
                return None
            return manager.volume_ready(conn, self._volume, ctx.host, args["size_gb"], instance)
