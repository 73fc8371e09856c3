# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduling end to end on three real test hosts (bfhv41, bfhv42, bfhv43).

The hosts report different memory through the hypervisor role's capacity override (host var
``bootflow_memory_mb`` -> compute_node ``memory_mb``; 512 MB of each is reserved for the host):

* weighing and filtering (SQLite): 1024, 2048 and 192 MB for guests, bfhv43 in availability zone
  az2 (host var ``bootflow_host_availability_zone``). boot.yml lands on the host with the most free
  RAM; a flavor too big for one host gets that host rejected with the reason in the schedule task's
  result; a flavor too big for all, or an image whose hw_architecture no host has, fails with
  NoValidHost and every host's reason; a boot into zone az2 lands on bfhv43. Down detection: a
  host that is stopped (its sshd and libvirtd gone) and has not been seen for longer than
  service_down_time (its last report is moved back in the DB: time passing, not waited for) is
  rejected as down although boot.yml tried a heartbeat; started again, the next boot's heartbeat
  brings it back.
* racing boots (SQLite, PostgreSQL, and a real Placement holding the claims): 384, 256 and 128 MB,
  room for 3 + 2 + 1 m1.tiny guests. 20 ``ansible-playbook boot.yml`` processes start at once
  (separate processes, like AWX jobs): exactly 6 guests boot, the other 14 fail with "No valid
  host", no host is overcommitted and every claim is exactly one allocation on the instance's host
  - in the DB and, with the placement backend, in Placement's own usages and allocations. delete.yml
  then removes all 20 (again in parallel) and the hosts (and Placement) are empty.

Real everything: libvirtd, QEMU TCG guests, dnsmasq, sshd on the test hosts, SQLite, a private
PostgreSQL server (bench/pgserver.py: 127.0.0.1, stopped by its pid) and a private Placement
(tests/openstack/placement.sh: openstack-placement 16, noauth2, 127.0.0.1, stopped by its pid). The
schedule task's result is read from ``boot.yml -v`` output.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from conftest import INVENTORY_SH, REPO, TESTHOST, PlayResult

sys.path.insert(0, os.path.join(REPO, "bench"))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import pgserver  # noqa: E402  # bench/pgserver.py
import placement_server  # noqa: E402  # tests/openstack/placement_server.py

HOSTS = (41, 42, 43)
RESERVED_MB = 512
WEIGH_MB = {41: 1024, 42: 2048, 43: 192}      # memory for guests per host
RACE_MB = {41: 3 * 128, 42: 2 * 128, 43: 128}  # m1.tiny (128 MB) slots: 3 + 2 + 1
WEIGH_VARS = {43: "bootflow_host_availability_zone=az2"}
RACE_BOOTS = 20
SCHEDULE_TASK = "8-12 | nova-scheduler: filter, weigh and claim a host"
SCHED_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "scheduling.yml")


def hostname(n):
    return "bfhv%d" % n


def write_inventory(path, guest_mb, host_vars=None):
    """tests/hosts/inventory.sh for the three hosts, each with its bootflow_memory_mb override (and more vars)."""
    text = subprocess.run([INVENTORY_SH, *map(str, HOSTS)], check=True, stdout=subprocess.PIPE, text=True).stdout
    out = []
    for line in text.splitlines():
        m = re.match(r"^bfhv(\d+) ", line)
        if m:
            line += " bootflow_memory_mb=%d" % (RESERVED_MB + guest_mb[int(m.group(1))])
            if (host_vars or {}).get(int(m.group(1))):
                line += " " + host_vars[int(m.group(1))]
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


def ssh(n, command):
    proc = subprocess.run([TESTHOST, "ssh", str(n), command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, "ssh %s %r: %s %s" % (hostname(n), command, proc.stdout, proc.stderr)
    return proc.stdout


def host_contents(n):
    """What boots leave on a host: domains, pool volumes, instance dirs, DHCP reservations."""
    out = ssh(n, "virsh -c qemu:///system list --all --name | sort; echo ---;"
                 "ls -1 /var/lib/bootflow/volumes 2>/dev/null | sort; echo ---;"
                 "ls -1 /var/lib/bootflow/instances 2>/dev/null | grep -v -e '^_base$' -e '^locks$' | sort; echo ---;"
                 "cat /var/lib/bootflow/dhcp/*/host 2>/dev/null | sort")
    parts = [[x for x in part.strip().splitlines() if x] for part in out.split("---")]
    return dict(zip(("domains", "volumes", "instances", "dhcp_hosts"), parts))


def running_domains(n):
    return sorted(ssh(n, "virsh -c qemu:///system list --state-running --name").split())


EMPTY = {"domains": [], "volumes": [], "instances": [], "dhcp_hosts": []}


class Cloud:
    """One controller: its own state dir and database (SQLite file, or a PostgreSQL database by URL)."""

    def __init__(self, base, db_url=None, placement=None):
        self.base = base
        self.state_dir = base / "state"
        self.db_url = db_url
        self.placement = placement
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=str(self.state_dir), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        self.env.pop("BOOTFLOW_DB_URL", None)
        if db_url:
            self.env["BOOTFLOW_DB_URL"] = db_url   # _db.resolve_db_url honours it in every action plugin
        for name in ("BOOTFLOW_PLACEMENT_BACKEND", "BOOTFLOW_PLACEMENT_URL"):
            self.env.pop(name, None)
        if placement is not None:
            # every step's placement_backend / placement_url default (compute_node, schedule, delete)
            self.env.update(BOOTFLOW_PLACEMENT_BACKEND="placement", BOOTFLOW_PLACEMENT_URL=placement.url)
        url = db_url or "sqlite:///%s" % (self.state_dir / "bootflow.db")
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def cmd(self, playbook, inventory, *args):
        path = playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)
        return ["ansible-playbook", "-i", str(inventory), path, *args]

    def play(self, playbook, inventory, *args, check=True):
        proc = subprocess.run(self.cmd(playbook, inventory, *args), cwd=REPO, env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=600, check=False)
        res = PlayResult(proc.returncode, proc.stdout)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (rc=%d):\n%s" % (playbook, proc.returncode, proc.stdout[-6000:]))
        return res

    def query(self, sql, **params):
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]  # pylint: disable=protected-access

    def query_exec(self, sql, **params):
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def capacity(self):
        """hostname -> (guest memory MB, used MB, allocation count), from compute_nodes + allocations."""
        rows = self.query("SELECT n.hostname, n.memory_mb, n.reserved_host_memory_mb, n.ram_allocation_ratio, "
                          "COALESCE(SUM(a.memory_mb), 0) AS used, COUNT(a.id) AS n FROM compute_nodes n "
                          "LEFT JOIN allocations a ON a.compute_node_id = n.id "
                          "GROUP BY n.hostname, n.memory_mb, n.reserved_host_memory_mb, n.ram_allocation_ratio")
        return {r["hostname"]: ((r["memory_mb"] - r["reserved_host_memory_mb"]) * r["ram_allocation_ratio"],
                                int(r["used"]), int(r["n"])) for r in rows}

    def close(self):
        self.engine.dispose()


def task_result(out, task):
    """(status, result dict) of the task named ``task`` in ``ansible-playbook -v`` output."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and task in line:
            for nxt in lines[i + 1:]:
                m = re.match(r"^(ok|changed|fatal): \[localhost\](?:: FAILED!)? => (\{.*\})\s*$", nxt)
                if m:
                    return m.group(1), json.loads(m.group(2))
                if nxt.startswith("TASK [") or nxt.startswith("PLAY "):
                    break
    raise AssertionError("no result of task %r in:\n%s" % (task, out[-4000:]))


def fatal_lines(out):
    """Why a run failed, short: ansible's '[ERROR]: Task failed: ...' lines."""
    found = [line[:500] for line in out.splitlines() if line.startswith("[ERROR]:")]
    return found or [out[-1500:]]


def fresh_hosts():
    """Test hosts 41-43, purged and started again (in parallel): nothing of an earlier test on them."""
    for n in HOSTS:
        subprocess.run([TESTHOST, "purge", str(n)], check=False, timeout=120)
    starts = [subprocess.Popen([TESTHOST, "start", str(n)]) for n in HOSTS]
    assert [p.wait(180) for p in starts] == [0, 0, 0]
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)


@pytest.fixture(scope="module", autouse=True)
def purge_hosts_at_the_end():
    yield
    for n in HOSTS:
        subprocess.run([TESTHOST, "purge", str(n)], check=False, timeout=120)


@pytest.fixture(scope="module")
def pg():
    server = pgserver.PgServer(fast=True).start()
    yield server
    server.stop()


# --- weighing and filtering ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weigh(tmp_path_factory):
    fresh_hosts()
    base = tmp_path_factory.mktemp("bootflow-sched")
    cloud = Cloud(base)
    inv = write_inventory(base / "inventory.ini", WEIGH_MB, WEIGH_VARS)
    cloud.play("bootstrap.yml", inv)
    cloud.play("hypervisors.yml", inv)
    cloud.play(SCHED_PLAYBOOK, inv)
    names = []

    def boot(name, *extra, check=True):
        names.append(name)
        res = cloud.play("boot.yml", inv, "-v", "-e", "bootflow_instance_name=%s" % name, *extra, check=check)
        return res, task_result(res.out, SCHEDULE_TASK)

    yield {"cloud": cloud, "inv": inv, "boot": boot, "names": names}
    cloud.close()


def test_hosts_report_the_overridden_memory(weigh):
    cap = weigh["cloud"].capacity()
    assert cap == {hostname(n): (WEIGH_MB[n], 0, 0) for n in HOSTS}, cap


def test_boot_lands_on_the_host_with_the_most_free_ram(weigh):
    res, (status, sched) = weigh["boot"]("sched-a")
    assert status == "changed" and sched["host"] == "bfhv42", sched
    assert sched["rejected"] == {}
    weights = sched["weights"]
    assert set(weights) == {"bfhv41", "bfhv42", "bfhv43"}
    # RAMWeigher: free RAM normalised by the largest (2048 MB), times the multiplier 1.0
    assert weights["bfhv42"]["RAMWeigher"] == 1.0
    assert weights["bfhv41"]["RAMWeigher"] == pytest.approx(1024 / 2048)
    assert weights["bfhv43"]["RAMWeigher"] == pytest.approx(192 / 2048)
    assert max(weights, key=lambda h: weights[h]["total"]) == "bfhv42"
    assert "REQUEST FLOW [sched-a]" in res.out
    cloud = weigh["cloud"]
    inst = cloud.query("SELECT uuid, host, vm_state FROM instances WHERE name = 'sched-a' AND deleted = 0")
    assert [(i["host"], i["vm_state"]) for i in inst] == [("bfhv42", "active")]
    assert running_domains(42) == ["bootflow-%s" % inst[0]["uuid"]]
    assert running_domains(41) == running_domains(43) == []
    assert cloud.capacity()["bfhv42"] == (2048, 128, 1)


def test_a_flavor_too_big_for_one_host_gets_it_rejected_with_the_reason(weigh):
    # m1.small (256 MB) does not fit bfhv43 (192 MB); the image's hw_architecture/img_hv_type match every host
    _res, (status, sched) = weigh["boot"]("sched-b", "-e", "bootflow_flavor=m1.small", "-e", "bootflow_image=guest-x86")
    assert status == "changed", sched
    assert sched["rejected"] == {"bfhv43": "CapacityFilter: RAM: requested 256 MB, free 192 MB"}
    # free RAM now: bfhv42 2048 - 128 = 1920, bfhv41 1024
    assert sched["host"] == "bfhv42"
    assert set(sched["weights"]) == {"bfhv41", "bfhv42"}
    assert sched["weights"]["bfhv41"]["RAMWeigher"] == pytest.approx(1024 / 1920)
    assert weigh["cloud"].capacity()["bfhv42"] == (2048, 128 + 256, 2)


def test_no_host_fits_fails_with_no_valid_host_and_every_reason(weigh):
    cloud = weigh["cloud"]
    before = cloud.capacity()
    res, (status, sched) = weigh["boot"]("sched-c", "-e", "bootflow_flavor=m1.huge", check=False)
    assert res.rc != 0 and status == "fatal"
    assert sched["error"] == "no_valid_host"
    assert sched["rejected"] == {
        "bfhv41": "CapacityFilter: RAM: requested 4096 MB, free 1024 MB",
        "bfhv42": "CapacityFilter: RAM: requested 4096 MB, free 1664 MB",
        "bfhv43": "CapacityFilter: RAM: requested 4096 MB, free 192 MB",
    }
    assert sched["msg"].startswith("No valid host was found.")
    row = cloud.query("SELECT uuid, vm_state, host, fault FROM instances WHERE name = 'sched-c' AND deleted = 0")[0]
    fault = row["fault"] if isinstance(row["fault"], dict) else json.loads(row["fault"])
    assert row["vm_state"] == "error" and row["host"] is None and "No valid host" in fault["message"]
    assert cloud.query("SELECT id FROM allocations WHERE consumer_id = :u", u=row["uuid"]) == []
    assert cloud.capacity() == before


def test_an_image_for_another_architecture_fits_no_host(weigh):
    res, (status, sched) = weigh["boot"]("sched-d", "-e", "bootflow_image=guest-arm", check=False)
    assert res.rc != 0 and status == "fatal" and sched["error"] == "no_valid_host"
    assert sched["rejected"] == {hostname(n): "ImagePropertiesFilter: hw_architecture aarch64 requested, host is x86_64"
                                 for n in HOSTS}


def test_a_zone_request_lands_in_that_zone(weigh):
    _res, (status, sched) = weigh["boot"]("sched-z", "-e", "bootflow_availability_zone=az2")
    assert status == "changed" and sched["host"] == "bfhv43", sched
    assert sched["rejected"] == {"bfhv41": "AvailabilityZoneFilter: host is in zone nova, requested az2",
                                 "bfhv42": "AvailabilityZoneFilter: host is in zone nova, requested az2"}
    zones = {r["hostname"]: r["availability_zone"] for r in weigh["cloud"].query(
        "SELECT hostname, availability_zone FROM compute_nodes")}
    assert zones == {"bfhv41": "nova", "bfhv42": "nova", "bfhv43": "az2"}


def test_a_silent_host_is_down_and_comes_back_with_a_heartbeat(weigh):
    cloud = weigh["cloud"]
    subprocess.run([TESTHOST, "stop", "41"], check=True, timeout=120)
    try:
        # bfhv41 last seen 10 minutes ago (its report moved back in time: a clock, not a wait)
        ten_minutes_ago = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
        cloud.query_exec("UPDATE compute_nodes SET updated_at = :t WHERE hostname = 'bfhv41'",
                         t=ten_minutes_ago.isoformat(sep=" "))
        res, (status, sched) = weigh["boot"]("sched-e")
        assert status == "changed" and sched["host"] == "bfhv42", sched
        assert re.match(r"^ComputeFilter: down \(last update 6\d\d(\.\d)?s ago, service_down_time 60s\)$", sched["rejected"]["bfhv41"]), sched
        assert "bfhv41" not in sched["weights"]
        # boot.yml did try: the heartbeat to bfhv41 found nobody (unreachable, ignored), the others answered
        assert "heartbeats of the candidate hosts" in res.out and "UNREACHABLE" in res.out
    finally:
        subprocess.run([TESTHOST, "start", "41"], check=True, timeout=120)
    # started again: the next boot's heartbeat reaches it, and it is a candidate again
    _res, (status, sched) = weigh["boot"]("sched-f")
    assert status == "changed" and "bfhv41" not in sched["rejected"] and "bfhv41" in sched["weights"], sched
    age = cloud.query("SELECT updated_at FROM compute_nodes WHERE hostname = 'bfhv41'")[0]["updated_at"]
    if isinstance(age, str):
        age = datetime.datetime.fromisoformat(age)
    assert datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - age < datetime.timedelta(minutes=5)


def test_delete_leaves_the_hosts_empty(weigh):
    cloud = weigh["cloud"]
    assert weigh["names"], "no boot ran"
    for name in weigh["names"]:
        cloud.play("delete.yml", weigh["inv"], "-e", "bootflow_instance_name=%s" % name)
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    assert cloud.query("SELECT consumer_id FROM allocations") == []
    assert cloud.query("SELECT name FROM instances WHERE deleted = 0") == []


# --- 20 boots at once ------------------------------------------------------------------------------

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
    fresh_hosts()
    cloud = Cloud(tmp_path, db_url, placement)
    inv = write_inventory(tmp_path / "inventory.ini", RACE_MB)
    cloud.play("bootstrap.yml", inv)
    cloud.play("hypervisors.yml", inv)
    cloud.play(SCHED_PLAYBOOK, inv)   # no quota limits
    yield {"cloud": cloud, "inv": inv, "backend": request.param, "tmp": tmp_path, "placement": placement}
    cloud.close()


def run_parallel(cloud, commands, logdir, label, timeout):
    """Start every command at once (one ansible-playbook process each); returns [(rc, output)]."""
    procs = []
    for i, cmd in enumerate(commands):
        log = open(logdir / ("%s-%02d.log" % (label, i)), "w+")  # pylint: disable=consider-using-with
        procs.append((subprocess.Popen(cmd, cwd=REPO, env=cloud.env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    deadline = time.monotonic() + timeout
    out = []
    for proc, log in procs:
        try:
            proc.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)    # our own child's process group
            proc.wait(30)
        log.seek(0)
        out.append((proc.returncode, log.read()))
        log.close()
    return out


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
