# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""neutron-server (local backend): networks, subnets, ports and IPAM in the DB.

PRIVATE to the collection: may change at any time. Controller side only.

IP and MAC uniqueness is enforced by unique constraints; a port insert that loses a race
(IntegrityError) is retried with the next candidate, so parallel boots never share an address.
"""

from __future__ import annotations

import re


from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import ipam as _ipam
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound

_BRIDGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
PORT_RETRIES = 20
# Neutron's create_port:fixed_ips:ip_address: asking for a specific IP address is an admin's privilege
FIXED_IP_RULE = "network:create_port:fixed_ips:ip_address"


def find_network(conn, ref):
    nets = _db.table("networks")
    row = conn.execute(nets.select().where(sa.or_(nets.c.id == ref, nets.c.name == ref))).first()
    if row is None:
        raise NotFound("Network %s could not be found." % ref)
    return row


def network_subnet(conn, network_id):
    subnets = _db.table("subnets")
    row = conn.execute(subnets.select().where(subnets.c.network_id == network_id).order_by(subnets.c.created_at)).first()
    if row is None:
        raise NotFound("Network %s has no subnet." % network_id)
    return row


def ensure_network(db, name, bridge, state, check_mode):
    validate_name("network", name)
    nets = _db.table("networks")
    with db.tx() as conn:
        row = conn.execute(nets.select().where(nets.c.name == name)).first()
        if state == "absent":
            if row is None:
                return False, None
            used = _db.count(conn, "ports", _db.table("ports").c.network_id == row.id)
            if used:
                raise Conflict("Network %s still has %d port(s)." % (name, used))
            if not check_mode:
                conn.execute(_db.table("subnets").delete().where(_db.table("subnets").c.network_id == row.id))
                conn.execute(nets.delete().where(nets.c.id == row.id))
            return True, None
        if not bridge or not _BRIDGE_RE.fullmatch(bridge):
            raise InvalidRequest("Invalid bridge name %r: 1-15 characters of letters, digits, '_', '.', '-'." % (bridge,))
        if row is None:
            if not check_mode:
                conn.execute(nets.insert().values(id=_db.new_id(), name=name, bridge=bridge, created_at=_db.now()))
                row = conn.execute(nets.select().where(nets.c.name == name)).first()
                return True, _db.row_dict(row)
            return True, {"name": name, "bridge": bridge}
        if row.bridge != bridge:
            used = _db.count(conn, "ports", _db.table("ports").c.network_id == row.id)
            if used:
                raise Conflict("Network %s has ports on bridge %s; cannot move it to %s." % (name, row.bridge, bridge))
            if not check_mode:
                conn.execute(nets.update().where(nets.c.id == row.id).values(bridge=bridge))
            return True, dict(_db.row_dict(row), bridge=bridge)
        return False, _db.row_dict(row)


def ensure_subnet(db, network, name, cidr, gateway_ip, pool_start, pool_end, dhcp_ip, dns_servers, state, check_mode):
    validate_name("subnet", name)
    subnets = _db.table("subnets")
    with db.tx() as conn:
        net = find_network(conn, network)
        row = conn.execute(subnets.select().where(subnets.c.network_id == net.id, subnets.c.name == name)).first()
        if state == "absent":
            if row is None:
                return False, None
            used = _db.count(conn, "ports", _db.table("ports").c.subnet_id == row.id)
            if used:
                raise Conflict("Subnet %s still has %d port(s)." % (name, used))
            if not check_mode:
                conn.execute(subnets.delete().where(subnets.c.id == row.id))
            return True, None
        try:
            sub = _ipam.parse_subnet(cidr, gateway_ip=gateway_ip, pool_start=pool_start, pool_end=pool_end, dhcp_ip=dhcp_ip)
            dns = [_ipam.check_ipv4(d, "DNS server") for d in dns_servers or []]
        except _ipam.IpamError as exc:
            raise InvalidRequest("Invalid subnet %s: %s" % (name, exc)) from exc
        want = dict(cidr=sub.cidr, gateway_ip=sub.gateway_ip, dhcp_ip=sub.dhcp_ip, pool_start=sub.pool_start,
                    pool_end=sub.pool_end, dns_servers=dns, enable_dhcp=True)
        if row is None:
            if not check_mode:
                conn.execute(subnets.insert().values(id=_db.new_id(), network_id=net.id, name=name,
                                                     created_at=_db.now(), **want))
            return True, dict(want, name=name, network_id=net.id)
        have = {k: getattr(row, k) for k in want}
        if have == want:
            return False, _db.row_dict(row)
        used = _db.count(conn, "ports", _db.table("ports").c.subnet_id == row.id)
        if used:
            raise Conflict("Subnet %s has %d port(s) and cannot be changed." % (name, used))
        if not check_mode:
            conn.execute(subnets.update().where(subnets.c.id == row.id).values(**want))
        return True, dict(want, name=name, network_id=net.id)


def subnet_obj(row):
    return _ipam.parse_subnet(row.cidr, gateway_ip=row.gateway_ip, pool_start=row.pool_start,
                              pool_end=row.pool_end, dhcp_ip=row.dhcp_ip)


def instance_ports(conn, instance_uuid):
    ports = _db.table("ports")
    return conn.execute(ports.select().where(ports.c.instance_uuid == instance_uuid).order_by(ports.c.created_at)).fetchall()


def check_fixed_ips(conn, instance_uuid, fixed_ips):
    """Validate every requested fixed IP ({network id: ip}) before any port is made: inside its
    subnet, not the network/broadcast/gateway/DHCP address, not taken, and the same as the IP of a
    port the instance already has on that network. Raises InvalidRequest/Conflict naming the network."""
    ports = _db.table("ports")
    for net_id, ip in fixed_ips.items():
        net = find_network(conn, net_id)
        existing = conn.execute(ports.select().where(ports.c.instance_uuid == instance_uuid,
                                                     ports.c.network_id == net.id)).first()
        if existing is not None:
            _check_existing_ip(existing, net, ip)
            continue
        subrow = network_subnet(conn, net.id)
        used = {r.ip for r in conn.execute(sa.select(ports.c.ip).where(ports.c.subnet_id == subrow.id))}
        try:
            _ipam.check_fixed_ip(subnet_obj(subrow), ip, used)
        except _ipam.IpamError as exc:
            raise InvalidRequest("Invalid fixed IP for network %s: %s" % (net.name, exc)) from exc


def _check_existing_ip(existing, net, fixed_ip):
    if fixed_ip and existing.ip != fixed_ip:
        raise Conflict("Instance %s already has port %s with IP %s on network %s; it cannot get %s as well "
                       "(delete the instance's ports first)." % (existing.instance_uuid, existing.id, existing.ip,
                                                                 net.name, fixed_ip))


def allocate_port(db, instance_uuid, network_ref, host, fixed_ip=None, check_mode=False):
    """One port on the network for the instance (idempotent). Returns (changed, port row dict)."""
    ports = _db.table("ports")
    with db.tx() as conn:
        net = find_network(conn, network_ref)
        existing = conn.execute(ports.select().where(ports.c.instance_uuid == instance_uuid,
                                                     ports.c.network_id == net.id)).first()
        if existing is not None:
            _check_existing_ip(existing, net, fixed_ip)
            if existing.host == host:
                return False, _db.row_dict(existing)
            if not check_mode:  # the instance moved (rebuilt elsewhere): the port follows it
                conn.execute(ports.update().where(ports.c.id == existing.id).values(host=host))
            return True, dict(_db.row_dict(existing), host=host)
        subrow = network_subnet(conn, net.id)
        sub = subnet_obj(subrow)
        used = {r.ip for r in conn.execute(sa.select(ports.c.ip).where(ports.c.subnet_id == subrow.id))}
        if fixed_ip:
            try:
                _ipam.check_fixed_ip(sub, fixed_ip, used)
            except _ipam.IpamError as exc:
                raise InvalidRequest(str(exc)) from exc
        elif check_mode:
            next(iter(_ipam.candidate_ips(sub, used)), None) or _raise_no_ips(sub)
    if check_mode:
        return True, {"network_id": net.id, "ip": fixed_ip, "mac": None}
    for _attempt in range(PORT_RETRIES):
        with db.tx() as conn:
            used = {r.ip for r in conn.execute(sa.select(ports.c.ip).where(ports.c.subnet_id == subrow.id))}
            ip = fixed_ip
            if ip is None:
                ip = next(iter(_ipam.candidate_ips(sub, used)), None)
                if ip is None:
                    _raise_no_ips(sub)
            port_id = _db.new_id()
            try:
                with conn.begin_nested():
                    conn.execute(ports.insert().values(
                        id=port_id, network_id=net.id, subnet_id=subrow.id, instance_uuid=instance_uuid,
                        device_owner="compute:nova", mac=_ipam.random_mac(), ip=ip, host=host, status="DOWN",
                        created_at=_db.now()))
            except sa.exc.IntegrityError:
                if fixed_ip:
                    raise InvalidRequest("IP address %s is already allocated in subnet %s." % (fixed_ip, sub.cidr))
                continue  # lost a race for the IP or drew a used MAC: try the next candidate
            return True, _db.row_dict(conn.execute(ports.select().where(ports.c.id == port_id)).first())
    raise Conflict("Could not allocate a port on network %s after %d attempts (heavy contention)." % (net.name, PORT_RETRIES))


def _raise_no_ips(sub):
    raise _ipam.NoMoreIps(sub.cidr)


def get_port(conn, port_id):
    """The port record, or None."""
    ports = _db.table("ports")
    return conn.execute(ports.select().where(ports.c.id == port_id)).first()


def bind_port(conn, port_id, host):
    """The port is wired on ``host`` (its DHCP reservation is there): ACTIVE (Neutron's port binding)."""
    ports = _db.table("ports")
    conn.execute(ports.update().where(ports.c.id == port_id).values(status="ACTIVE", host=host))


def allocate_instance_ports(db, auth, ref, fixed_ips, check_mode=False):
    """neutron-server for nova-compute's allocate_for_instance: one port (MAC + IP from the pool, or the
    fixed IP asked for) on each of the instance's networks, on its host. ``fixed_ips`` maps network name or
    ID to an IP (added to those of the boot request); every one is checked before the first port is made. A pool that runs out puts the
    instance in ERROR. Returns (changed, instance row before, (vm_state, task_state) after, port specs)."""
    enforce(auth, "network:create_port")
    if fixed_ips:
        enforce(auth, FIXED_IP_RULE)   # only an admin chooses the address (Neutron's policy); checked first
    with db.tx() as conn:
        row = instances.get_instance(conn, ref, auth)
    if not row.host:
        raise InvalidRequest("Instance %s has no host yet: schedule it before allocating ports." % row.name)
    by_id = dict(row.request.get("fixed_ips") or {})   # asked for in the boot request (nova-api checked them)
    with db.tx() as conn:  # keys may be network names or IDs
        for net_ref, ip in fixed_ips.items():
            by_id[find_network(conn, net_ref).id] = ip
    unknown = set(by_id) - set(row.request.get("networks", []))
    if unknown:
        raise InvalidRequest("fixed_ips names network(s) the instance is not on: %s" % ", ".join(sorted(unknown)))
    with db.tx() as conn:
        check_fixed_ips(conn, row.uuid, by_id)
    changed = False
    try:
        for net_id in row.request.get("networks", []):
            made, _port = allocate_port(db, row.uuid, net_id, row.host, fixed_ip=by_id.get(net_id), check_mode=check_mode)
            changed = changed or made
    except _ipam.NoMoreIps as exc:
        if not check_mode:
            with db.tx() as conn:
                instances.set_fault(conn, row.uuid, str(exc), "port", row.host)
        raise InvalidRequest(str(exc)) from exc
    after = (row.vm_state, row.task_state)
    with db.tx() as conn:
        if changed and not check_mode and row.vm_state == instances.BUILDING:
            new = instances.move_state(conn, row.uuid, instances.BUILDING, instances.NETWORKING)
            after = (new.vm_state, new.task_state)
        ports = [port_spec(conn, p) for p in instance_ports(conn, row.uuid)]
    return changed, row, after, ports


def release_instance_ports(db, auth, ref, check_mode=False):
    """Delete the instance's ports (delete.yml, after its domain is gone): frees the IPs. Returns them."""
    enforce(auth, "network:delete_port")
    with db.tx() as conn:
        row = instances.get_instance(conn, ref, auth)
    instances.require_not_running(row, "release its ports")
    return release_ports(db, row.uuid, check_mode)


def release_ports(db, instance_uuid, check_mode=False):
    ports = _db.table("ports")
    with db.tx() as conn:
        rows = instance_ports(conn, instance_uuid)
        if rows and not check_mode:
            conn.execute(ports.delete().where(ports.c.instance_uuid == instance_uuid))
        return [_db.row_dict(r) for r in rows]


def port_spec(conn, port):
    """The port as the compute side needs it (network, bridge, addressing)."""
    net = find_network(conn, port["network_id"] if isinstance(port, dict) else port.network_id)
    p = port if isinstance(port, dict) else _db.row_dict(port)
    subrow = conn.execute(_db.table("subnets").select().where(_db.table("subnets").c.id == p["subnet_id"])).first()
    prefixlen = int(subrow.cidr.split("/")[1])
    return {
        "id": p["id"], "mac": p["mac"], "ip": p["ip"], "hostname": _ipam.dhcp_hostname(p["ip"]),
        "network_id": net.id, "network_name": net.name, "bridge": net.bridge, "subnet_id": subrow.id,
        "cidr": subrow.cidr, "prefixlen": prefixlen, "gateway_ip": subrow.gateway_ip, "dhcp_ip": subrow.dhcp_ip,
        "dns_servers": list(subrow.dns_servers or []), "status": p["status"],
    }
