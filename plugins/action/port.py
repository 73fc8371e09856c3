# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.port (neutron-server + IPAM, seed steps 22-24)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import ipam as _ipam
from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        instance=dict(type="str", required=True),
        fixed_ips=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        enforce(auth, "network:delete_port" if a["state"] == "absent" else "network:create_port")
        with ctx.db.tx() as conn:
            row = instances.get_instance(conn, a["instance"], auth)
        if a["state"] == "absent":
            instances.require_not_running(row, "release its ports")
            released = _networking.release_ports(ctx.db, row.uuid, ctx.check_mode)
            return {"changed": bool(released), "released": released}
        if not row.host:
            raise InvalidRequest("Instance %s has no host yet: schedule it before allocating ports." % row.name)
        before = (row.vm_state, row.task_state)
        changed = False
        fixed_ips = {}
        with ctx.db.tx() as conn:  # keys may be network names or IDs
            for ref, ip in a["fixed_ips"].items():
                fixed_ips[_networking.find_network(conn, ref).id] = ip
        unknown = set(fixed_ips) - set(row.request.get("networks", []))
        if unknown:
            raise InvalidRequest("fixed_ips names network(s) the instance is not on: %s" % ", ".join(sorted(unknown)))
        with ctx.db.tx() as conn:   # every fixed IP is checked before the first port is made
            _networking.check_fixed_ips(conn, row.uuid, fixed_ips)
        try:
            for net_id in row.request.get("networks", []):
                c, _port = _networking.allocate_port(ctx.db, row.uuid, net_id, row.host,
                                                     fixed_ip=fixed_ips.get(net_id), check_mode=ctx.check_mode)
                changed = changed or c
        except _ipam.NoMoreIps as exc:
            if not ctx.check_mode:
                with ctx.db.tx() as conn:
                    instances.set_fault(conn, row.uuid, str(exc), "port", row.host)
            raise InvalidRequest(str(exc)) from exc
        after = before
        ms = monotonic_ms(ctx.started)
        with ctx.db.tx() as conn:
            if changed and not ctx.check_mode and row.vm_state == instances.BUILDING:
                new = instances.move_state(conn, row.uuid, instances.BUILDING, instances.NETWORKING)
                after = (new.vm_state, new.task_state)
            if changed and not ctx.check_mode:
                instances.record_step(conn, row.uuid, "22-24", "neutron-server", "allocate_ports", row.host,
                                      before, after, changed, ms)
            ports = [_networking.port_spec(conn, p) for p in _networking.instance_ports(conn, row.uuid)]
        return {"changed": changed, "ports": ports,
                "bootflow_step": instances.step_row(row.name, "22-24", "neutron-server", "allocate_ports", row.host,
                                                    before, after, changed, ms)}
