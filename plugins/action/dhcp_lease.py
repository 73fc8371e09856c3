# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.dhcp_lease (neutron DHCP agent + L2 on the host, seed steps 22-24)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import _compute_api as api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db, _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils._action import HostStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import InvalidRequest, NotFound

# module option <- port_spec key
_FROM_PORT = {"network_id": "network_id", "bridge": "bridge", "cidr": "cidr", "dhcp_ip": "dhcp_ip",
              "gateway_ip": "gateway_ip", "dns_servers": "dns_servers", "mac": "mac", "ip": "ip",
              "hostname": "hostname"}


class ActionModule(HostStep):
    SEED_STEPS = "22-24"
    SERVICE = "neutron-dhcp-agent"

    def prepare(self, ctx, args):
        """Fill the reservation from the port record: the host never guesses an address."""
        if not args.get("port_id"):
            raise InvalidRequest("port_id is required when auth_token is given.")
        ports = _db.table("ports")
        with ctx.db.tx() as conn:
            port = conn.execute(ports.select().where(ports.c.id == args["port_id"])).first()
            if port is None:
                if args.get("state") == "absent":
                    self._port = None
                    return None
                raise NotFound("Port %s could not be found." % args["port_id"])
            instance = api.get_instance(conn, port.instance_uuid, ctx.auth) if port.instance_uuid else None
            spec = _networking.port_spec(conn, port)
        for opt, key in _FROM_PORT.items():
            if args.get(opt) is None:
                args[opt] = spec[key]
        self._port = port
        return instance

    def record(self, ctx, args, result, instance):
        if getattr(self, "_port", None) is None or args.get("state", "present") != "present":
            return None
        ports = _db.table("ports")
        with ctx.db.tx() as conn:
            conn.execute(ports.update().where(ports.c.id == self._port.id).values(status="ACTIVE", host=ctx.host))
            if instance is not None and instance.vm_state == api.BUILDING and instance.task_state != api.NETWORKING:
                new = api.move_state(conn, instance.uuid, api.BUILDING, api.NETWORKING)
                return new.vm_state, new.task_state
        return None
