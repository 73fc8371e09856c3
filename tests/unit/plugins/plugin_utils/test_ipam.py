# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests for plugins/module_utils/_ipam.py."""

from __future__ import annotations

import ipaddress
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.bootflow.cloud.plugins.plugin_utils.network.ipam import (
    IpamError,
    NoMoreIps,
    Subnet,
    allocate_ip,
    candidate_ips,
    check_fixed_ip,
    dhcp_hostname,
    parse_subnet,
    random_mac,
    validate_mac,
)


# --------------------------------------------------------------------------------------------- parse_subnet

def test_defaults_like_neutron():
    sn = parse_subnet("10.0.0.0/24")
    assert sn == Subnet(cidr="10.0.0.0/24", gateway_ip="10.0.0.1", dhcp_ip="10.0.0.2", pool_start="10.0.0.3", pool_end="10.0.0.254")
    assert sn.prefixlen == 24 and sn.netmask == "255.255.255.0"
    assert sn.network_address == "10.0.0.0" and sn.broadcast_address == "10.0.0.255"
    assert sn.pool_size == 252
    assert sn.as_dict()["prefixlen"] == 24


def test_defaults_small_subnet():
    sn = parse_subnet("192.168.5.8/29")
    assert (sn.gateway_ip, sn.dhcp_ip, sn.pool_start, sn.pool_end, sn.pool_size) == \
        ("192.168.5.9", "192.168.5.10", "192.168.5.11", "192.168.5.14", 4)


def test_explicit_gateway_at_end_and_middle():
    sn = parse_subnet("10.0.0.0/24", gateway_ip="10.0.0.254")
    assert (sn.dhcp_ip, sn.pool_start, sn.pool_end) == ("10.0.0.1", "10.0.0.2", "10.0.0.253")
    # gateway in the middle: the larger side becomes the pool
    sn = parse_subnet("10.0.0.0/24", gateway_ip="10.0.0.100")
    assert (sn.dhcp_ip, sn.pool_start, sn.pool_end) == ("10.0.0.101", "10.0.0.102", "10.0.0.254")


def test_explicit_pool_and_dhcp():
    sn = parse_subnet("10.0.0.0/24", pool_start="10.0.0.100", pool_end="10.0.0.200")
    assert (sn.gateway_ip, sn.dhcp_ip, sn.pool_start, sn.pool_end) == ("10.0.0.1", "10.0.0.100", "10.0.0.101", "10.0.0.200")
    sn = parse_subnet("10.0.0.0/24", pool_start="10.0.0.100", pool_end="10.0.0.200", dhcp_ip="10.0.0.2")
    assert (sn.dhcp_ip, sn.pool_start) == ("10.0.0.2", "10.0.0.100")
    sn = parse_subnet("10.0.0.0/24", dhcp_ip="10.0.0.254")
    assert (sn.gateway_ip, sn.dhcp_ip, sn.pool_start, sn.pool_end) == ("10.0.0.1", "10.0.0.254", "10.0.0.2", "10.0.0.253")


def test_reparse_is_idempotent():
    for sn in (parse_subnet("10.0.0.0/24"), parse_subnet("172.16.0.0/16", gateway_ip="172.16.255.254"),
               parse_subnet("10.0.0.0/24", pool_start="10.0.0.50", pool_end="10.0.0.60")):
        assert parse_subnet(sn.cidr, sn.gateway_ip, sn.pool_start, sn.pool_end, sn.dhcp_ip) == sn


@pytest.mark.parametrize("kwargs, message", [
    (dict(cidr="10.0.0.0/33"), r"Invalid CIDR '10.0.0.0/33'"),
    (dict(cidr="not-a-cidr"), r"Invalid CIDR 'not-a-cidr'"),
    (dict(cidr="fd00::/64"), r"only IPv4 subnets are supported"),
    (dict(cidr="10.0.0.1/24"), r"host bits are set \(did you mean 10.0.0.0/24\?\)"),
    (dict(cidr="10.0.0.0/30"), r"too small"),
    (dict(cidr="10.0.0.0/24", gateway_ip="10.0.1.1"), r"gateway_ip 10.0.1.1 is not in subnet 10.0.0.0/24"),
    (dict(cidr="10.0.0.0/24", gateway_ip="10.0.0.0"), r"gateway_ip 10.0.0.0 is the network address"),
    (dict(cidr="10.0.0.0/24", gateway_ip="10.0.0.255"), r"gateway_ip 10.0.0.255 is the broadcast address"),
    (dict(cidr="10.0.0.0/24", gateway_ip="banana"), r"gateway_ip 'banana' is not a valid IP address"),
    (dict(cidr="10.0.0.0/24", gateway_ip="fd00::1"), r"only IPv4"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.1.10", pool_end="10.0.0.20"), r"pool_start 10.0.1.10 is not in subnet"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.0.10", pool_end="10.0.1.20"), r"pool_end 10.0.1.20 is not in subnet"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.0.10", pool_end="10.0.0.255"), r"pool_end 10.0.0.255 is the broadcast address"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.0.20", pool_end="10.0.0.10"), r"pool_start 10.0.0.20 is after pool_end 10.0.0.10"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.0.10"), r"must be given together"),
    (dict(cidr="10.0.0.0/24", gateway_ip="10.0.0.15", pool_start="10.0.0.10", pool_end="10.0.0.20"),
     r"gateway_ip 10.0.0.15 is inside the allocation pool 10.0.0.10-10.0.0.20"),
    (dict(cidr="10.0.0.0/24", dhcp_ip="10.0.0.15", pool_start="10.0.0.10", pool_end="10.0.0.20"),
     r"dhcp_ip 10.0.0.15 is inside the allocation pool 10.0.0.10-10.0.0.20"),
    (dict(cidr="10.0.0.0/24", dhcp_ip="10.0.0.1"), r"dhcp_ip 10.0.0.1 is the gateway address"),
    (dict(cidr="10.0.0.0/24", dhcp_ip="10.0.5.1"), r"dhcp_ip 10.0.5.1 is not in subnet"),
    (dict(cidr="10.0.0.0/24", pool_start="10.0.0.10", pool_end="10.0.0.10"), r"pool of subnet 10.0.0.0/24 is empty"),
])
def test_parse_subnet_errors(kwargs, message):
    with pytest.raises(IpamError, match=message):
        parse_subnet(**kwargs)


def test_ipam_error_is_value_error():
    assert issubclass(IpamError, ValueError)
    assert issubclass(NoMoreIps, IpamError)
    assert str(NoMoreIps("10.0.0.0/29")) == "No more IP addresses available on subnet 10.0.0.0/29"


# --------------------------------------------------------------------------------------------- allocation

def test_candidate_ips_random_among_first_16_then_in_order():
    sn = parse_subnet("10.0.0.0/24")
    firsts = set()
    for seed in range(200):
        ips = list(candidate_ips(sn, set(), random.Random(seed)))
        assert len(ips) == sn.pool_size == len(set(ips))
        firsts.add(ips[0])
        window = ["10.0.0.%d" % i for i in range(3, 19)]
        assert ips[0] in window
        assert ips[1:16] == [ip for ip in window if ip != ips[0]]
        assert ips[16:] == ["10.0.0.%d" % i for i in range(19, 255)]
    assert len(firsts) > 8


def test_candidate_ips_skips_used():
    sn = parse_subnet("10.0.0.0/28")
    used = {"10.0.0.3", "10.0.0.5", "10.0.0.14"}
    ips = list(candidate_ips(sn, used, random.Random(0)))
    assert sorted(ips, key=ipaddress.IPv4Address) == ["10.0.0.4"] + ["10.0.0.%d" % i for i in range(6, 14)]


def test_candidate_ips_is_lazy_on_large_pools():
    sn = parse_subnet("10.0.0.0/8")
    it = candidate_ips(sn, {"10.0.0.3"}, random.Random(1))
    first = next(it)
    assert ipaddress.IPv4Address(first) in ipaddress.IPv4Network("10.0.0.0/27")


def test_exhaust_slash_29():
    sn = parse_subnet("10.0.0.0/29")
    used: set[str] = set()
    rng = random.Random(42)
    for _index in range(sn.pool_size):
        ip = allocate_ip(sn, used, rng)
        assert ip not in used
        used.add(ip)
    assert used == {"10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}
    assert list(candidate_ips(sn, used)) == []
    with pytest.raises(NoMoreIps, match=r"No more IP addresses available on subnet 10.0.0.0/29"):
        allocate_ip(sn, used, rng)


def test_used_addresses_are_validated():
    with pytest.raises(IpamError):
        list(candidate_ips(parse_subnet("10.0.0.0/29"), {"nope"}))


def test_check_fixed_ip():
    sn = parse_subnet("10.0.0.0/24", pool_start="10.0.0.100", pool_end="10.0.0.200")
    used = {"10.0.0.150", "10.0.0.5"}
    assert check_fixed_ip(sn, "10.0.0.151", used) == "10.0.0.151"
    # outside the pool but inside the subnet is allowed (as in Neutron)
    assert check_fixed_ip(sn, "10.0.0.20", used) == "10.0.0.20"
    assert check_fixed_ip(sn, " 10.0.0.254 ", used) == "10.0.0.254"
    cases = [
        ("10.0.0.5", r"^10.0.0.5 is already allocated$"),
        ("10.0.0.150", r"^10.0.0.150 is already allocated$"),
        ("10.0.1.5", r"^10.0.1.5 is not in subnet 10.0.0.0/24$"),
        ("10.0.0.1", r"^10.0.0.1 is the gateway address$"),
        ("10.0.0.100", r"^10.0.0.100 is the DHCP server address$"),
        ("10.0.0.0", r"^10.0.0.0 is the network address of subnet 10.0.0.0/24$"),
        ("10.0.0.255", r"^10.0.0.255 is the broadcast address of subnet 10.0.0.0/24$"),
        ("10.0.0.300", r"is not a valid IP address"),
        ("fd00::1", r"only IPv4"),
    ]
    for ip, msg in cases:
        with pytest.raises(IpamError, match=msg):
            check_fixed_ip(sn, ip, used)


# --------------------------------------------------------------------------------------------- MAC / hostname

MAC_RE = re.compile(r"^fa:16:3e(:[0-9a-f]{2}){3}$")


def test_random_mac_format_and_uniqueness():
    rng = random.Random(7)
    macs = [random_mac(rng) for _index in range(5000)]
    assert all(MAC_RE.match(m) for m in macs)
    # 2**24 possibilities: a handful of birthday collisions at most
    assert len(set(macs)) >= 4990
    assert all(validate_mac(m) == m for m in macs[:100])
    assert MAC_RE.match(random_mac())


def test_random_mac_prefixes():
    rng = random.Random(3)
    assert re.match(r"^52:54:00(:[0-9a-f]{2}){3}$", random_mac(rng, prefix="52:54:00"))
    assert re.match(r"^02:aa:bb:cc:dd:[0-9a-f]{2}$", random_mac(rng, prefix="02:AA:BB:CC:DD"))
    for _index in range(200):
        mac = random_mac(rng, prefix="")
        first = int(mac[:2], 16)
        assert first & 1 == 0 and first & 2 == 2
        assert validate_mac(mac) == mac
    for bad in ("zz:16:3e", "01:00:5e", "fa:16:3e:00:00:00", "fa163e"):
        with pytest.raises(IpamError):
            random_mac(rng, prefix=bad)


@pytest.mark.parametrize("mac, expected", [
    ("fa:16:3e:00:11:22", "fa:16:3e:00:11:22"),
    ("FA:16:3E:AA:BB:CC", "fa:16:3e:aa:bb:cc"),
    ("52-54-00-aa-bb-cc", "52:54:00:aa:bb:cc"),
])
def test_validate_mac_ok(mac, expected):
    assert validate_mac(mac) == expected


@pytest.mark.parametrize("mac", [
    "", "fa:16:3e:00:11", "fa:16:3e:00:11:22:33", "fa:16:3e:00:11:2g", "fa16.3e00.1122", "fa:16-3e:00:11:22",
    "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01", "fa:16:3e:0:1:2",
])
def test_validate_mac_bad(mac):
    with pytest.raises(IpamError):
        validate_mac(mac)


def test_dhcp_hostname():
    assert dhcp_hostname("10.0.0.5") == "host-10-0-0-5"
    assert dhcp_hostname("192.168.100.254") == "host-192-168-100-254"
    with pytest.raises(IpamError):
        dhcp_hostname("10.0.0")


# --------------------------------------------------------------------------------------------- properties

@st.composite
def subnet_and_used(draw):
    prefix = draw(st.integers(22, 29))
    base = draw(st.integers(0, 2**32 - 1)) & ~((1 << (32 - prefix)) - 1) & 0xFFFFFFFF
    net = ipaddress.IPv4Network((base, prefix))
    hosts = list(range(int(net.network_address) + 1, int(net.broadcast_address)))
    kwargs = {}
    if draw(st.booleans()):
        kwargs["gateway_ip"] = str(ipaddress.IPv4Address(draw(st.sampled_from(hosts))))
    sn = parse_subnet(str(net), **kwargs)
    everything = list(range(int(net.network_address), int(net.broadcast_address) + 1))
    used = draw(st.sets(st.sampled_from(everything), max_size=len(everything)))
    return sn, {str(ipaddress.IPv4Address(u)) for u in used}


@settings(max_examples=300)
@given(data=subnet_and_used(), seed=st.integers(0, 2**32 - 1))
def test_property_candidates_never_reserved_or_used(data, seed):
    sn, used = data
    net = sn.network
    forbidden = used | {sn.gateway_ip, sn.dhcp_ip, str(net.network_address), str(net.broadcast_address)}
    ips = list(candidate_ips(sn, used, random.Random(seed)))
    assert len(ips) == len(set(ips))
    assert not forbidden.intersection(ips)
    start, end = ipaddress.IPv4Address(sn.pool_start), ipaddress.IPv4Address(sn.pool_end)
    assert all(start <= ipaddress.IPv4Address(ip) <= end for ip in ips)
    # and nothing free in the pool is missed
    pool = {str(ipaddress.IPv4Address(i)) for i in range(int(start), int(end) + 1)}
    assert set(ips) == pool - forbidden
    for ip in ips[:5]:
        assert check_fixed_ip(sn, ip, used) == ip
