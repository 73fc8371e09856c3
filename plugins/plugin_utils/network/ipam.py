# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Neutron-like IPAM over plain data.

PRIVATE to the collection: may change at any time.

Subnets are IPv4 only for now. Defaults follow Neutron: the gateway is the first host
address, the allocation pool is the remaining host addresses, and (as the DHCP agent's
port does) the DHCP server takes the first address of the pool, so the allocatable
pool starts after it. Fixed IPs may lie outside the pool but inside the subnet.

Stdlib only: runs on the controller and on the hypervisor host (Python 3.11+).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import random
import re
from typing import Iterable, Iterator, Optional

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest

__all__ = [
    "IpamError",
    "NoMoreIps",
    "Subnet",
    "allocate_ip",
    "candidate_ips",
    "check_fixed_ip",
    "dhcp_hostname",
    "parse_subnet",
    "random_mac",
    "validate_mac",
]

# Neutron picks randomly among the first free addresses so that concurrent allocations rarely collide.
RANDOM_WINDOW = 16


class IpamError(InvalidRequest):
    """Invalid subnet definition or IP / MAC request."""


class NoMoreIps(IpamError):
    """The allocation pool of a subnet is exhausted."""

    def __init__(self, cidr: str) -> None:
        self.cidr = cidr
        super().__init__("No more IP addresses available on subnet %s" % cidr)


@dataclasses.dataclass(frozen=True)
class Subnet:
    """A validated IPv4 subnet; ``pool_start``..``pool_end`` is the allocatable range (DHCP address excluded)."""

    cidr: str
    gateway_ip: str
    dhcp_ip: str
    pool_start: str
    pool_end: str

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The subnet as an ipaddress network."""
        return ipaddress.IPv4Network(self.cidr)

    @property
    def prefixlen(self) -> int:
        """Prefix length, e.g. 24."""
        return self.network.prefixlen

    @property
    def netmask(self) -> str:
        """Dotted netmask, e.g. 255.255.255.0."""
        return str(self.network.netmask)

    @property
    def network_address(self) -> str:
        """First address of the subnet."""
        return str(self.network.network_address)

    @property
    def broadcast_address(self) -> str:
        """Last address of the subnet."""
        return str(self.network.broadcast_address)

    @property
    def pool_size(self) -> int:
        """Number of addresses in the allocatable pool."""
        return int(ipaddress.IPv4Address(self.pool_end)) - int(ipaddress.IPv4Address(self.pool_start)) + 1

    def as_dict(self) -> dict:
        """Plain dict (the subnets table columns plus derived values)."""
        return dict(
            cidr=self.cidr, gateway_ip=self.gateway_ip, dhcp_ip=self.dhcp_ip, pool_start=self.pool_start,
            pool_end=self.pool_end, prefixlen=self.prefixlen, netmask=self.netmask,
            network_address=self.network_address, broadcast_address=self.broadcast_address,
        )


def _addr(value: object, what: str) -> ipaddress.IPv4Address:
    """Parse an IPv4 address or raise IpamError naming the field."""
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise IpamError("%s %r is not a valid IP address" % (what, value)) from None
    if addr.version != 4:
        raise IpamError("%s %s: only IPv4 is supported" % (what, addr))
    return addr


def check_ipv4(value: object, what: str) -> str:
    """An IPv4 address (a DNS server, ...) normalised, or IpamError naming ``what``."""
    return str(_addr(value, what))


def _largest_free_range(first: int, last: int, excluded: Iterable[int]) -> Optional[tuple[int, int]]:
    """Largest contiguous [start, end] in [first, last] avoiding ``excluded`` (lowest one on a tie)."""
    cuts = sorted(x for x in set(excluded) if first <= x <= last)
    best: Optional[tuple[int, int]] = None
    start = first
    for cut in cuts + [last + 1]:
        end = cut - 1
        if start <= end and (best is None or end - start > best[1] - best[0]):
            best = (start, end)
        start = cut + 1
    return best


def parse_subnet(cidr: str, gateway_ip: Optional[str] = None, pool_start: Optional[str] = None,
                 pool_end: Optional[str] = None, dhcp_ip: Optional[str] = None) -> Subnet:
    """Validate a subnet definition and fill in Neutron-style defaults.

    ``pool_start``/``pool_end`` must be given together. When ``dhcp_ip`` is not given it is the
    first address of the pool and the returned pool starts after it. Without an explicit pool,
    the pool is the largest run of host addresses free of the gateway (and of an explicit ``dhcp_ip``).
    """
    try:
        net = ipaddress.ip_network(str(cidr).strip(), strict=False)
    except ValueError as exc:
        raise IpamError("Invalid CIDR %r: %s" % (cidr, exc)) from None
    if net.version != 4:
        raise IpamError("Invalid CIDR %s: only IPv4 subnets are supported" % cidr)
    if int(net.network_address) != int(ipaddress.ip_interface(str(cidr).strip()).ip):
        raise IpamError("Invalid CIDR %s: host bits are set (did you mean %s?)" % (cidr, net))
    if net.prefixlen > 29:
        raise IpamError("Subnet %s is too small: a /29 or larger is needed (network, gateway, DHCP, broadcast and a pool)" % net)
    cidr_s = str(net)
    first_host = int(net.network_address) + 1
    last_host = int(net.broadcast_address) - 1

    def inside(addr: ipaddress.IPv4Address, what: str) -> int:
        if addr not in net:
            raise IpamError("%s %s is not in subnet %s" % (what, addr, cidr_s))
        if int(addr) == int(net.network_address):
            raise IpamError("%s %s is the network address of subnet %s" % (what, addr, cidr_s))
        if int(addr) == int(net.broadcast_address):
            raise IpamError("%s %s is the broadcast address of subnet %s" % (what, addr, cidr_s))
        return int(addr)

    gw = inside(_addr(gateway_ip, "gateway_ip"), "gateway_ip") if gateway_ip else first_host
    dhcp = inside(_addr(dhcp_ip, "dhcp_ip"), "dhcp_ip") if dhcp_ip else None
    if dhcp is not None and dhcp == gw:
        raise IpamError("dhcp_ip %s is the gateway address" % ipaddress.IPv4Address(dhcp))

    if (pool_start is None) != (pool_end is None):
        raise IpamError("pool_start and pool_end must be given together")
    if pool_start is not None:
        start = inside(_addr(pool_start, "pool_start"), "pool_start")
        end = inside(_addr(pool_end, "pool_end"), "pool_end")
        if start > end:
            raise IpamError("pool_start %s is after pool_end %s" % (ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)))
        if start <= gw <= end:
            raise IpamError("gateway_ip %s is inside the allocation pool %s-%s"
                            % (ipaddress.IPv4Address(gw), ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)))
        if dhcp is not None and start <= dhcp <= end:
            raise IpamError("dhcp_ip %s is inside the allocation pool %s-%s"
                            % (ipaddress.IPv4Address(dhcp), ipaddress.IPv4Address(start), ipaddress.IPv4Address(end)))
    else:
        best = _largest_free_range(first_host, last_host, [gw] + ([dhcp] if dhcp is not None else []))
        if best is None:
            raise IpamError("Subnet %s has no addresses left for an allocation pool" % cidr_s)
        start, end = best

    if dhcp is None:
        dhcp = start
        start += 1
    if start > end:
        raise IpamError("Allocation pool of subnet %s is empty once the DHCP address %s is taken"
                        % (cidr_s, ipaddress.IPv4Address(dhcp)))
    return Subnet(
        cidr=cidr_s,
        gateway_ip=str(ipaddress.IPv4Address(gw)),
        dhcp_ip=str(ipaddress.IPv4Address(dhcp)),
        pool_start=str(ipaddress.IPv4Address(start)),
        pool_end=str(ipaddress.IPv4Address(end)),
    )


def _used_ints(used: Iterable[str]) -> set[int]:
    return {int(_addr(u, "used address")) for u in used or ()}


def candidate_ips(subnet: Subnet, used: Iterable[str], rng: Optional[random.Random] = None) -> Iterator[str]:
    """Free pool addresses: first a random one among the first 16 free, then the others in order.

    The iterator simply ends when the pool is exhausted; :func:`allocate_ip` turns that into
    :class:`NoMoreIps`. Try each candidate against the database's unique (subnet_id, ip) key.
    """
    rng = rng or random.Random()
    taken = _used_ints(used)
    taken.add(int(ipaddress.IPv4Address(subnet.gateway_ip)))
    taken.add(int(ipaddress.IPv4Address(subnet.dhcp_ip)))
    start = int(ipaddress.IPv4Address(subnet.pool_start))
    end = int(ipaddress.IPv4Address(subnet.pool_end))

    def free_iter() -> Iterator[int]:
        for value in range(start, end + 1):
            if value not in taken:
                yield value

    it = free_iter()
    window = []
    for value in it:
        window.append(value)
        if len(window) >= RANDOM_WINDOW:
            break
    if not window:
        return
    first = window.pop(rng.randrange(len(window)))
    yield str(ipaddress.IPv4Address(first))
    for value in window:
        yield str(ipaddress.IPv4Address(value))
    for value in it:
        yield str(ipaddress.IPv4Address(value))


def allocate_ip(subnet: Subnet, used: Iterable[str], rng: Optional[random.Random] = None) -> str:
    """The first candidate from :func:`candidate_ips`; raise :class:`NoMoreIps` when there is none."""
    for ip in candidate_ips(subnet, used, rng):
        return ip
    raise NoMoreIps(subnet.cidr)


def check_fixed_ip(subnet: Subnet, ip: str, used: Iterable[str]) -> str:
    """Validate a requested fixed IP and return it normalised.

    Allowed anywhere in the subnet (also outside the pool, as in Neutron) except the network,
    broadcast, gateway and DHCP addresses and addresses already allocated.
    """
    addr = _addr(ip, "fixed IP")
    net = subnet.network
    if addr not in net:
        raise IpamError("%s is not in subnet %s" % (addr, subnet.cidr))
    if addr == net.network_address:
        raise IpamError("%s is the network address of subnet %s" % (addr, subnet.cidr))
    if addr == net.broadcast_address:
        raise IpamError("%s is the broadcast address of subnet %s" % (addr, subnet.cidr))
    if str(addr) == subnet.gateway_ip:
        raise IpamError("%s is the gateway address" % addr)
    if str(addr) == subnet.dhcp_ip:
        raise IpamError("%s is the DHCP server address" % addr)
    if int(addr) in _used_ints(used):
        raise IpamError("%s is already allocated" % addr)
    return str(addr)


_MAC_RE = re.compile(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}")
_PREFIX_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){0,4}")


def validate_mac(mac: str) -> str:
    """Return ``mac`` normalised to lower-case ``xx:xx:xx:xx:xx:xx``; reject malformed, multicast, all-zero and broadcast."""
    text = str(mac).strip().lower()
    if not _MAC_RE.fullmatch(text):
        raise IpamError("%r is not a valid MAC address (expected xx:xx:xx:xx:xx:xx)" % (mac,))
    text = text.replace("-", ":")
    if text in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        raise IpamError("%s is not a usable MAC address" % text)
    if int(text[:2], 16) & 1:
        raise IpamError("%s is a multicast MAC address" % text)
    return text


def random_mac(rng: Optional[random.Random] = None, prefix: str = "fa:16:3e") -> str:
    """A random unicast MAC under ``prefix`` (Neutron's base_mac ``fa:16:3e:00:00:00``), lower-case."""
    rng = rng or random.Random()
    prefix = str(prefix or "").strip().lower().rstrip(":")
    octets = prefix.split(":") if prefix else []
    if prefix and not _PREFIX_RE.fullmatch(prefix):
        raise IpamError("Invalid MAC prefix %r (expected 1 to 5 octets like fa:16:3e)" % (prefix,))
    if octets and int(octets[0], 16) & 1:
        raise IpamError("MAC prefix %s is multicast" % prefix)
    rand = [rng.randrange(256) for _index in range(6 - len(octets))]
    if not octets:
        # First octet random: force unicast and locally administered.
        rand[0] = (rand[0] & 0xFC) | 0x02
    return ":".join(octets + ["%02x" % b for b in rand])


def dhcp_hostname(ip: str) -> str:
    """Neutron's DHCP host name for an address: ``10.0.0.5`` -> ``host-10-0-0-5``."""
    addr = _addr(ip, "IP")
    return "host-%s" % str(addr).replace(".", "-").replace(":", "-")
