# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""neutron-server's IPAM under contention, on a real SQLite file: 30 ports requested at the same
moment by 30 separate processes (each with its own engine and connection, as 30 parallel
ansible-playbook runs would) on one /27 that has room for 28."""

from __future__ import annotations

import ipaddress
import multiprocessing
import os

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking

CIDR = "10.0.0.0/27"
WORKERS = 30


@pytest.fixture()
def subnet(tmp_path):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(state_dir=state_dir)
    try:
        _networking.ensure_network(db, "net27", "br-test", "present", False)
        _networking.ensure_subnet(db, "net27", "net27-subnet", CIDR, None, None, None, None, [], "present", False)
        with db.tx() as conn:
            row = _networking.network_subnet(conn, _networking.find_network(conn, "net27").id)
            sub = _db.row_dict(row)
    finally:
        db.dispose()
    return dict(state_dir=state_dir, subnet=sub)


def _worker(state_dir, uuid, barrier, results):
    """One process: wait until all are ready, then ask for a port."""
    try:
        db = _db.open_db(state_dir=state_dir)
        try:
            barrier.wait(timeout=60)
            port = _networking.allocate_port(db, uuid, "net27", "hv1")[1]
            results.put((uuid, "ok", port["ip"], port["mac"]))
        finally:
            db.dispose()
    except Exception as exc:  # pylint: disable=broad-except  # reported to the test, which judges it
        results.put((uuid, "error", type(exc).__name__, str(exc)))


def test_30_parallel_ports_on_a_27_never_share_an_ip_or_a_mac(subnet):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    uuids = ["00000000-0000-0000-0000-%012d" % i for i in range(WORKERS)]
    procs = [ctx.Process(target=_worker, args=(subnet["state_dir"], u, barrier, results)) for u in uuids]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _proc in procs]
    for p in procs:
        p.join(timeout=30)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    assert sorted(g[0] for g in got) == uuids            # every process answered once
    ok = [g for g in got if g[1] == "ok"]
    errors = [g for g in got if g[1] == "error"]
    net = ipaddress.ip_network(CIDR)
    sub = subnet["subnet"]
    # 32 addresses - network, broadcast, gateway, DHCP server = 28
    room = net.num_addresses - 2 - len({sub["gateway_ip"], sub["dhcp_ip"]})
    assert room == 28
    assert len(ok) == room <= WORKERS - 1, got
    ips = [g[2] for g in ok]
    macs = [g[3] for g in ok]
    assert len(set(ips)) == len(ips), "an IP was handed out twice: %s" % sorted(ips)
    assert len(set(macs)) == len(macs), "a MAC was handed out twice: %s" % sorted(macs)
    for ip in ips:
        addr = ipaddress.ip_address(ip)
        assert addr in net and addr not in (net.network_address, net.broadcast_address)
        assert ip not in (sub["gateway_ip"], sub["dhcp_ip"])
    # the others fail with neutron's clear message, not a lock timeout or an integrity error
    assert len(errors) == WORKERS - room
    for _uuid, _kind, exc_type, msg in errors:
        assert "No more IP addresses available on subnet %s" % CIDR in msg, (exc_type, msg)

    # the database agrees: one row per success, unique IPs and MACs
    db = _db.open_db(state_dir=subnet["state_dir"])
    try:
        with db.tx() as conn:
            rows = conn.execute(_db.table("ports").select()).fetchall()
    finally:
        db.dispose()
    assert sorted((r.instance_uuid, r.ip, r.mac) for r in rows) == sorted((g[0], g[2], g[3]) for g in ok)
    assert os.stat(os.path.join(subnet["state_dir"], "bootflow.db")).st_mode & 0o777 == 0o600
