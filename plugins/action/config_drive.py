# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.config_drive (nova-compute builds the config drive, seed step 28)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.host import config_drive as _config_drive
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(HostStep):
    SEED_STEPS = "28"
    SERVICE = "nova-compute"

    def prepare(self, ctx, args):
        """Fill name, user_data, public_keys and ports from the instance record (like Nova's InstanceMetadata)."""
        if not args.get("instance_uuid"):
            raise InvalidRequest("instance_uuid is required.")
        if args.get("hostname"):
            try:   # checked before the host is contacted (one DNS label: no newline can reach meta-data)
                _config_drive.pick_hostname(args["hostname"])
            except _config_drive.ConfigDriveError as exc:
                raise InvalidRequest(str(exc)) from None
        with ctx.db.tx() as conn:
            try:
                instance = instances.get_instance(conn, args["instance_uuid"], ctx.auth)
            except NotFound:
                if args["state"] == "absent":   # removing the drive of a gone instance
                    return None
                raise
            if instance.uuid != args["instance_uuid"]:
                raise InvalidRequest("instance_uuid must be the instance's UUID, not %r." % args["instance_uuid"])
            ports = [_networking.port_spec(conn, p) for p in _networking.instance_ports(conn, instance.uuid)]
        if "name" not in ctx.given:
            args["name"] = instance.name
        if "user_data" not in ctx.given:
            args["user_data"] = (instance.request or {}).get("user_data")
        if "public_keys" not in ctx.given:
            # the key pair's public key as nova-api copied it into the instance (key_name at create)
            args["public_keys"] = list((instance.request or {}).get("public_keys") or [])
        if "ports" not in ctx.given:
            args["ports"] = [{"id": p["id"], "mac": p["mac"], "ip": p["ip"]} for p in ports]
        return instance
