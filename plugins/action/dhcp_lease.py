# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.dhcp_lease (neutron DHCP agent + L2 on the host, seed steps 22-24)."""

from __future__ import annotations

import time

from ansible.module_utils.common.text.converters import to_text

from ansible_collections.bootflow.cloud.plugins.module_utils.host import dhcp as _dhcp
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    BootflowError,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, manager

PROGRESS_EVERY = 5.0  # seconds between two progress lines while waiting for a lease

# module option <- port_spec key
_FROM_PORT = {"network_id": "network_id", "bridge": "bridge", "cidr": "cidr", "dhcp_ip": "dhcp_ip",
              "gateway_ip": "gateway_ip", "dns_servers": "dns_servers", "mac": "mac", "ip": "ip",
              "hostname": "hostname"}


class ActionModule(HostStep):
    SEED_STEPS = "22-24"
    SERVICE = "neutron-dhcp-agent"

    _port = None

    def prepare(self, ctx, args):
        """Fill the reservation from the port record: the host never guesses an address."""
        if not args.get("port_id"):
            raise InvalidRequest("port_id is required when auth_token is given.")
        if args.get("hostname"):
            # checked here too, before the host is contacted: a newline or comma would split the hosts line
            try:
                _dhcp.check_hostname(args["hostname"])
            except _dhcp.DhcpError as exc:
                raise InvalidRequest(str(exc)) from None
        with ctx.db.tx() as conn:
            port = _networking.get_port(conn, args["port_id"])
            if port is None:
                if args["state"] == "absent":
                    return None
                raise NotFound("Port %s could not be found." % args["port_id"])
            instance = instances.get_instance(conn, port.instance_uuid, ctx.auth) if port.instance_uuid else None
            spec = _networking.port_spec(conn, port)
        for opt, key in _FROM_PORT.items():
            if opt not in ctx.given:
                args[opt] = spec[key]
        self._port = port
        if args["state"] == "leased":
            return None   # a look at the leases file, not a step of the boot: no step row
        return instance

    def run_module(self, ctx, module_args):
        if module_args["state"] != "leased":
            return super().run_module(ctx, module_args)
        return self._wait_leased(ctx, module_args)

    def _wait_leased(self, ctx, module_args):
        """state=leased: the module looks once (it validates the arguments and knows the files); then
        the leases file is polled on the host by a shell loop (lease_watch_cmd), with progress lines."""
        res = super().run_module(ctx, dict(module_args, wait=False))   # the module validated the arguments
        wait, timeout = module_args["wait"], module_args["wait_timeout"]
        if res.get("leased") and wait and not ctx.check_mode:
            ctx.progress("%s holds %s (after %.1f s)" % (res["mac"], res["leased_ip"], res.get("waited") or 0.0))
        if res.get("leased") or not wait or ctx.check_mode:
            return res
        what = "%s (%s)" % (res["mac"], res["ip"]) if res.get("ip") else res["mac"]
        if res.get("hopeless"):
            raise _told(ctx, BootflowError("%s cannot get a DHCP lease on network %s: %s"
                                           % (what, module_args.get("network_id"), "; ".join(res.get("diagnosis") or [])),
                                           module_result=res))
        started = time.monotonic()
        ctx.progress("waiting for %s to hold its DHCP lease (dnsmasq's %s), up to %d s"
                     % (what, res["leases_file"], timeout))
        last_note = started
        seen = None
        while True:
            # each run looks on the host until the MAC's lines change, up to PROGRESS_EVERY seconds
            left = timeout - (time.monotonic() - started)
            cmd = _dhcp.lease_watch_cmd(res["mac"], res["leases_file"], seen, min(PROGRESS_EVERY, max(left, 0)))
            out = self._low_level_execute_command(cmd, sudoable=False)
            if out.get("rc") != 0:
                raise BootflowError("cannot read %s on %s (rc=%s): %s" % (
                    res["leases_file"], ctx.host, out.get("rc"), to_text(out.get("stderr") or out.get("stdout")).strip()))
            try:
                now, seen = _dhcp.parse_lease_watch(to_text(out.get("stdout") or ""))
            except ValueError:
                raise BootflowError("unexpected answer from %s while polling %s: %r"
                                    % (ctx.host, res["leases_file"], to_text(out.get("stdout"))[:200]))
            lease = _dhcp.find_active_lease(seen, res["mac"], res.get("ip"), now=now)
            elapsed = time.monotonic() - started
            if lease:
                ctx.progress("%s holds %s (after %.1f s)" % (res["mac"], lease["ip"], elapsed))
                res.update(leased=True, lease=lease, leased_ip=lease["ip"], reserved=True, diagnosis=[],
                           waited=round(elapsed + res.get("waited", 0.0), 1))
                return res
            if elapsed >= timeout:
                break
            if time.monotonic() - last_note >= PROGRESS_EVERY:
                ctx.progress("still waiting for %s: %d s of %d s" % (what, elapsed, timeout))
                last_note = time.monotonic()
        # timed out: the module looks once more and says why
        final = super().run_module(ctx, dict(module_args, wait=False))
        if final.get("leased"):
            return final
        raise _told(ctx, BootflowError("no DHCP lease for %s in %s after %d s: %s" % (
            what, final.get("leases_file"), timeout, "; ".join(final.get("diagnosis") or [])), module_result=final))

    def record(self, ctx, args, result, instance):
        if self._port is None or args["state"] != "present":
            return None
        with ctx.db.tx() as conn:
            return manager.port_bound(conn, self._port.id, ctx.host, instance)


def _told(ctx, exc):
    """``exc``, said on the progress line too: a fleet's lease wait judges the results itself (the failure is
    not shown as a failed task), and the user must still see why a guest has no lease."""
    ctx.progress(str(exc))
    return exc
