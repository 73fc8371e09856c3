# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""20 racing boots on three real test hosts (bfhv44, bfhv45, bfhv46), on SQLite, PostgreSQL, and a real
Placement holding the claims.

The hosts report 384, 256 and 128 MB for guests (host var ``bootflow_memory_mb``, 512 MB reserved each):
room for 3 + 2 + 1 m1.tiny guests. 20 ``ansible-playbook boot.yml`` processes start at once (separate
processes, like AWX jobs): exactly 6 guests boot, the other 14 fail with "No valid host", no host is
overcommitted and every claim is exactly one allocation on the instance's host - in the DB and, with the
placement backend, in Placement's own usages and allocations. delete.yml then removes all 20 (again in
parallel) and the hosts (and Placement) are empty.

Real everything: libvirtd, QEMU TCG guests, dnsmasq, sshd on the test hosts, SQLite, a private
PostgreSQL server (bench/pgserver.py: 127.0.0.1, stopped by its pid) and a private Placement
(tests/openstack/placement.sh: openstack-placement 16, noauth2, 127.0.0.1, stopped by its pid).
"""

from __future__ import annotations

import os
import sys
import time

import pytest

from conftest import REPO
from sched_helpers import (EMPTY, SCHED_PLAYBOOK, Cloud, fatal_lines, fresh_hosts, host_contents, hostname, purge,
                           run_parallel, running_domains, write_inventory)

sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import pgserver  # noqa: E402  # bench/pgserver.py
import placement_server  # noqa: E402  # tests/openstack/placement_server.py

HOSTS = (44, 45, 46)
RACE_MB = {44: 3 * 128, 45: 2 * 128, 46: 128}  # m1.tiny (128 MB) slots: 3 + 2 + 1
RACE_BOOTS = 20


@pytest.fixture(scope="module", autouse=True)
def purge_hosts_at_the_end():
    yield
    purge(HOSTS)


@pytest.fixture(scope="module")
def pg():
    server = pgserver.PgServer(fast=True).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql", "placement"])
def race(request, tmp_path):
    db_url, placement = None, None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("pg").create_database("race")
    if request.param == "placement":
        # the claims in a real Placement (its own, fresh), the DB (SQLite) keeps copies
        placement = placement_server.PlacementServer(tmp_path / "osp")
        try:
            placement.start()
        except (RuntimeError, OSError) as exc:
            placement.stop()
            pytest.fail("cannot start a private Placement (scripts/setup.sh installs it): %s" % exc)
        request.addfinalizer(placement.stop)
    fresh_hosts(HOSTS)
    cloud = Cloud(tmp_path, db_url, placement)
    inv = write_inventory(tmp_path / "inventory.ini", HOSTS, RACE_MB)
    cloud.play("bootstrap.yml", inv)
    cloud.play("hypervisors.yml", inv)
    cloud.play(SCHED_PLAYBOOK, inv)   # no quota limits
    yield {"cloud": cloud, "inv": inv, "backend": request.param, "tmp": tmp_path, "placement": placement}
    cloud.close()


def test_twenty_simultaneous_boots_fill_the_hosts_and_never_overcommit(race):
    cloud, inv = race["cloud"], race["inv"]
    names = ["race-%02d" % i for i in range(RACE_BOOTS)]
    t0 = time.monotonic()
    # the race is about the claims: the six winners' guests are started (their domains are checked below),
    # nobody waits for their DHCP leases (six TCG guests booting at once on two cores take minutes). The
    # timeout only guards against a hang: a slow machine is not a failure.
    results = run_parallel(cloud, [cloud.cmd("boot.yml", inv, "-e", "bootflow_instance_name=%s" % name,
                                             "-e", "bootflow_wait_for_lease=false")
                                   for name in names], race["tmp"], "boot", 900)
    boot_s = time.monotonic() - t0
    try:
        booted = [name for name, (rc, _out) in zip(names, results) if rc == 0]
        failed = {name: out for name, (rc, out) in zip(names, results) if rc != 0}
        odd = {name: fatal_lines(out) for name, out in failed.items() if "No valid host was found" not in out}
        assert not odd, "boots that failed for another reason than No valid host (logs in %s): %s" % (race["tmp"], odd)
        assert len(booted) == sum(RACE_MB.values()) // 128 == 6, (booted, boot_s)

        # the database: one allocation per ACTIVE instance, on its host; none for the others
        insts = {r["name"]: r for r in cloud.query("SELECT uuid, name, host, vm_state, fault FROM instances WHERE deleted = 0")}
        assert sorted(insts) == names
        assert sorted(n for n, r in insts.items() if r["vm_state"] == "active") == sorted(booted)
        assert all(insts[n]["vm_state"] == "error" and insts[n]["host"] is None for n in failed)
        allocs = cloud.query("SELECT a.consumer_id, n.hostname, a.memory_mb, a.vcpus, a.disk_gb, a.backend "
                             "FROM allocations a JOIN compute_nodes n ON n.id = a.compute_node_id")
        by_uuid = {r["uuid"]: r for r in insts.values()}
        assert len(allocs) == len(booted) == len({a["consumer_id"] for a in allocs})
        for a in allocs:
            inst = by_uuid[a["consumer_id"]]
            assert inst["vm_state"] == "active" and inst["host"] == a["hostname"], (a, inst)
        cap = cloud.capacity()
        for n in HOSTS:
            guest_mb, used, count = cap[hostname(n)]
            assert used <= guest_mb, (hostname(n), cap)            # never overcommitted
            assert (used, count) == (RACE_MB[n], RACE_MB[n] // 128), (hostname(n), cap)   # and filled
            # the hosts: exactly the instances the DB puts there are running
            want = sorted("bootflow-%s" % r["uuid"] for r in insts.values() if r["host"] == hostname(n))
            assert running_domains(n) == want, hostname(n)
        pl = race["placement"]
        assert {a["backend"] for a in allocs} == {"local" if pl is None else "placement"}
        figures = {hostname(n): "%d/%d MB" % (cap[hostname(n)][1], cap[hostname(n)][0]) for n in HOSTS}
        if pl is not None:
            check_placement(pl, cloud, insts, allocs)
            figures = placement_figures(pl, cloud)
        print("%s: %d ACTIVE, %d No valid host; memory used/capacity per host: %s"
              % (race["backend"], len(booted), len(failed), figures))
    finally:
        t1 = time.monotonic()
        deletes = run_parallel(cloud, [cloud.cmd("delete.yml", inv, "-e", "bootflow_instance_name=%s" % name)
                                       for name in names], race["tmp"], "delete", 900)
        delete_s = time.monotonic() - t1
        print("%s: 20 boots in %.0f s, 20 deletes in %.0f s" % (race["backend"], boot_s, delete_s))
    bad = {name: fatal_lines(out) for name, (rc, out) in zip(names, deletes) if rc != 0}
    assert not bad, bad
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    assert cloud.query("SELECT consumer_id FROM allocations") == []
    assert cloud.query("SELECT id FROM ports") == []
    assert cloud.query("SELECT name FROM instances WHERE deleted = 0") == []
    assert all(c[1:] == (0, 0) for c in cloud.capacity().values())
    if race["placement"] is not None:
        pl = race["placement"]
        for rp in placement_nodes(cloud).values():
            assert pl.provider_allocations(rp) == {} and set(pl.usages(rp).values()) == {0}, rp


def placement_nodes(cloud):
    return {r["hostname"]: r["id"] for r in cloud.query("SELECT id, hostname FROM compute_nodes")}


def placement_figures(pl, cloud):
    """host -> 'used/capacity MB' of MEMORY_MB as Placement itself counts it."""
    out = {}
    for host, rp in sorted(placement_nodes(cloud).items()):
        inv = pl.inventories(rp)["MEMORY_MB"]
        out[host] = "%d/%d MB" % (pl.usages(rp)["MEMORY_MB"], (inv["total"] - inv["reserved"]) * inv["allocation_ratio"])
    return out


def check_placement(pl, cloud, insts, allocs):
    """Placement's own view after the race: one resource provider per compute node (same UUID), no
    provider used beyond its inventory (usages against (total - reserved) * ratio, every class), and
    exactly one allocation per ACTIVE instance - on its host, the same as the DB's copy - and none for
    the instances that got No valid host."""
    nodes = placement_nodes(cloud)
    providers = pl.providers()
    assert {h: providers.get(h) for h in nodes} == nodes
    copies = {a["consumer_id"]: a for a in allocs}
    for n in HOSTS:
        rp = nodes[hostname(n)]
        inventory, usage = pl.inventories(rp), pl.usages(rp)
        for rc, inv in inventory.items():
            assert usage.get(rc, 0) <= (inv["total"] - inv["reserved"]) * inv["allocation_ratio"], (hostname(n), rc, usage)
        assert usage["MEMORY_MB"] == RACE_MB[n], (hostname(n), usage)
        on_host = sorted(r["uuid"] for r in insts.values() if r["host"] == hostname(n))
        assert sorted(pl.provider_allocations(rp)) == on_host, hostname(n)
    for inst in insts.values():
        held = pl.allocations(inst["uuid"])
        if inst["vm_state"] == "active":
            copy = copies[inst["uuid"]]
            assert held == {nodes[inst["host"]]: {"VCPU": copy["vcpus"], "MEMORY_MB": copy["memory_mb"],
                                                  **({"DISK_GB": copy["disk_gb"]} if copy["disk_gb"] else {})}}, inst
        else:
            assert held == {} and inst["uuid"] not in copies, inst
