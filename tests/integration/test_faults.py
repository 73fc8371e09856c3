# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real faults injected into real test hosts (bfhv121, bfhv122, bfhv123), and delete.yml on an
instance in every state. Nothing is mocked: the faults are a libvirt hook that refuses to start QEMU,
a damaged image in the controller's image store, dnsmasq killed by PID while the guest boots, and a
1 MiB tmpfs over a host's instance directory.

The hosts report different memory (host var ``bootflow_memory_mb``), so with no instance on them
the scheduler's order is always bfhv121, bfhv122, bfhv123: the fault goes on bfhv121 and the
reschedule must land on bfhv122. Every test leaves all hosts empty (checked: domains, pool volumes,
instance directories, DHCP ``host``/``ports``/``leases`` lines), so the order holds for the next.

Fault injection: ``/etc/libvirt/hooks/qemu`` (per host: /etc/libvirt is the host's own) runs at
every domain start. It fails the ``prepare`` phase while the flag file ``fail-start`` exists (libvirt
then refuses to start the domain: "Hook script execution failed"), and on ``started`` kills the
network's dnsmasq once while ``kill-dnsmasq`` exists. libvirtd reads its hooks when it starts, so the
session installs the hook, then stops and starts each host once.

Every test runs on SQLite (the state dir's file). The tests in ON_POSTGRESQL run a second time, in a
second session of the same hosts, on a fresh database of the worker's private PostgreSQL server
(conftest pg_server; the playbooks get BOOTFLOW_DB_URL): the reschedule after a refusing host, and an
RBAC refusal. The SQLite session runs first and is over before the PostgreSQL one starts (one
module-scoped ``cloud`` per backend).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conftest import INVENTORY_SH, REPO, TESTHOST, Env, fresh_pg_url, wait_console
from sched_helpers import flag, install_fault_hook

HOSTS = (121, 122, 123)
GUEST_MB = {121: 1024, 122: 768, 123: 512}      # + 512 reserved: the RAM weigher's order is 121, 122, 123
ROOT = os.environ.get("BOOTFLOW_TESTHOSTS", "/var/tmp/bootflow-hosts")
PARTIAL = os.path.join(REPO, "tests", "integration", "playbooks", "partial_boot.yml")
FAULTS = os.path.join(REPO, "tests", "integration", "playbooks", "faults.yml")
INFO = os.path.join(REPO, "tests", "integration", "playbooks", "instance_info.yml")
EMPTY = {"domains": [], "volumes": [], "instances": [], "dhcp_hosts": [], "dhcp_ports": [], "leases": []}
# the tests that run on PostgreSQL too (the rest: SQLite only, to keep the suite's time)
ON_POSTGRESQL = ("test_libvirt_refuses_to_start_on_the_chosen_host_rescheduled_and_first_host_clean",
                 "test_member_refused_an_admin_step_changes_nothing")


def pytest_generate_tests(metafunc):
    """``cloud`` per backend: every test on SQLite, ON_POSTGRESQL also on PostgreSQL (pytest groups the
    tests by the module-scoped parameter: all SQLite ones in file order, then the PostgreSQL ones)."""
    if "cloud" in metafunc.fixturenames:
        backends = ["sqlite", "postgresql"] if metafunc.function.__name__ in ON_POSTGRESQL else ["sqlite"]
        metafunc.parametrize("cloud", backends, indirect=True, scope="module")


def hostname(n):
    return "bfhv%d" % n


def run_testhost(*args):
    subprocess.run([TESTHOST, *map(str, args)], check=True, timeout=180, stdout=subprocess.DEVNULL)


def write_inventory(path):
    text = subprocess.run([INVENTORY_SH, *map(str, HOSTS)], check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = []
    for line in text.splitlines():
        m = re.match(r"^bfhv(\d+) ", line)
        lines.append(line + (" bootflow_memory_mb=%d" % (512 + GUEST_MB[int(m.group(1))]) if m else ""))
    path.write_text("\n".join(lines) + "\n")


class Faults:
    def __init__(self, base, db_url=None):
        self.base = base
        self.inventory = base / "inventory.ini"
        write_inventory(self.inventory)
        self.env = {n: Env(base / "state", self.inventory, n, db_url=db_url) for n in HOSTS}
        self.any = self.env[HOSTS[0]]

    def play(self, playbook, *args, check=True):
        return self.any.play(playbook, *args, check=check)

    def boot(self, name, *args, check=True):
        return self.play("boot.yml", "-e", "bootflow_instance_name=%s" % name, *args, check=check)

    def delete(self, name):
        return self.play("delete.yml", "-e", "bootflow_instance_name=%s" % name)

    def query(self, sql, *params):
        return self.any.query(sql, *params)

    def instance_info(self, name):
        """bootflow.cloud.instance_info's answer, as a playbook gets it."""
        out = self.base / ("info-%s.json" % name)
        self.play(INFO, "-e", "bootflow_instance_name=%s" % name, "-e", "info_out=%s" % out)
        return json.loads(out.read_text())

    def instance(self, name):
        rows = self.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)
        assert len(rows) == 1, rows
        row = rows[0]
        for key in ("fault", "request"):
            if isinstance(row[key], str):
                row[key] = json.loads(row[key])
        return row

    def host_state(self, n):
        """What a boot may leave on host n: domains, pool volumes, instance directories (besides the
        image cache), DHCP reservations (host and ports files) and leases."""
        out = self.env[n].ssh(
            "virsh -c qemu:///system list --all --name | sort; echo ---;"
            "ls -1 /var/lib/bootflow/volumes 2>/dev/null | sort; echo ---;"
            "ls -1 /var/lib/bootflow/instances 2>/dev/null | grep -v -e '^_base$' -e '^locks$' | sort; echo ---;"
            "cat /var/lib/bootflow/dhcp/*/host 2>/dev/null | sort; echo ---;"
            "cat /var/lib/bootflow/dhcp/*/ports 2>/dev/null | sort; echo ---;"
            "cat /var/lib/bootflow/dhcp/*/leases 2>/dev/null | sort")
        parts = [[x for x in part.strip().splitlines() if x] for part in out.split("---")]
        return dict(zip(EMPTY, parts))

    def all_empty(self):
        return {n: self.host_state(n) for n in HOSTS} == {n: EMPTY for n in HOSTS}

    def base_cache(self, n):
        """The host's image cache: file name -> sha256 (the .part files of a failed fetch included)."""
        out = self.env[n].ssh("cd /var/lib/bootflow/instances/_base 2>/dev/null && for f in $(ls -A); do "
                              "echo \"$f $(sha256sum < \"$f\" | cut -d' ' -f1)\"; done; true")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def claims(self):
        return self.query("SELECT a.consumer_id, c.hostname FROM allocations a JOIN compute_nodes c "
                          "ON c.id = a.compute_node_id")


@pytest.fixture(scope="module")
def cloud(request, tmp_path_factory):
    db_url = fresh_pg_url(request.getfixturevalue("pg_server"), "faults") if request.param == "postgresql" else None
    base = tmp_path_factory.mktemp("bootflow-faults-" + request.param)
    for n in HOSTS:
        subprocess.run([TESTHOST, "purge", str(n)], check=False, timeout=180, stdout=subprocess.DEVNULL)
    try:
        for n in HOSTS:
            run_testhost("start", n)
            install_fault_hook(n)
        c = Faults(base, db_url)
        c.play("bootstrap.yml")
        c.play("hypervisors.yml")
        c.play(FAULTS)
        assert c.all_empty()
        yield c
        # a failed test may have left its instance: delete.yml removes it (what it cannot is residue)
        for row in c.query("SELECT name FROM instances WHERE deleted = 0"):
            c.play("delete.yml", "-e", "bootflow_instance_name=%s" % row["name"], check=False)
    finally:
        for n in HOSTS:
            subprocess.run([TESTHOST, "purge", str(n)], check=False, timeout=180, stdout=subprocess.DEVNULL)


@pytest.fixture(autouse=True)
def no_failed_builds(cloud):
    """Each test starts from the RAM weigher's order 121, 122, 123: the failed builds of an earlier test
    (BuildFailureWeigher) are forgotten, as a successful build on the host would."""
    cloud.any.execute("UPDATE compute_nodes SET failed_builds = 0")


def assert_clean(cloud, instance_uuid=None):
    """Every host empty; no claim, no port; the instance's volumes back to 'creating' (or deleted)."""
    states = {n: cloud.host_state(n) for n in HOSTS}
    assert states == {n: EMPTY for n in HOSTS}, states
    assert cloud.claims() == []
    assert cloud.query("SELECT id FROM ports") == []
    if instance_uuid:
        vols = cloud.query("SELECT status, host FROM volumes WHERE instance_uuid=?", instance_uuid)
        assert all(v["host"] is None and v["status"] in ("creating", "deleted") for v in vols), vols


def assert_deleted(cloud, name):
    cloud.delete(name)
    assert_clean(cloud)
    rows = cloud.query("SELECT uuid, vm_state, deleted FROM instances WHERE name=?", name)
    assert rows and all(r["vm_state"] == "deleted" and r["deleted"] != 0 for r in rows), rows
    uuids = [r["uuid"] for r in rows]
    vols = cloud.query("SELECT status FROM volumes WHERE instance_uuid IN (%s)" % ",".join("?" * len(uuids)), *uuids)
    assert all(v["status"] == "deleted" for v in vols), vols


# --- faults during the build ---------------------------------------------------------------------

def test_libvirt_refuses_to_start_on_the_chosen_host_rescheduled_and_first_host_clean(cloud):
    flag(121, "fail-start")
    try:
        res = cloud.boot("f-start")
    finally:
        flag(121, "fail-start", on=False)
    inst = cloud.instance("f-start")
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("active", None, "bfhv122"), inst
    assert inst["fault"] is None
    retry = inst["request"]["retry"]
    assert retry["num_attempts"] == 2 and retry["hosts"] == ["bfhv121"], retry
    failed = retry["failures"][0]
    assert failed["host"] == "bfhv121" and failed["action"] == "domain" and failed["category"] == "host"
    assert failed["step"].startswith("28 | ") and "injected fault" in failed["message"], failed
    # the first host is left exactly as before: no domain, volume, instance dir, DHCP line or lease
    assert cloud.host_state(121) == EMPTY and cloud.host_state(123) == EMPTY
    assert cloud.claims() == [{"consumer_id": inst["uuid"], "hostname": "bfhv122"}]
    ports = cloud.query("SELECT host, status, ip FROM ports WHERE instance_uuid=?", inst["uuid"])
    assert [(p["host"], p["status"]) for p in ports] == [("bfhv122", "ACTIVE")]
    m = wait_console(cloud.env[122], inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)")
    assert m.group(1) == ports[0]["ip"]
    steps = cloud.query("SELECT seed_steps, action, host FROM instance_steps WHERE instance_uuid=? ORDER BY id",
                        inst["uuid"])
    assert {"seed_steps": "8-12", "action": "reschedule", "host": "bfhv122"} in steps
    assert "Reschedule | nova-conductor" in res.out and "REQUEST FLOW [f-start]" in res.out
    # the rescheduled instance re-runs like any other: nothing changes, in check mode neither
    for extra in ((), ("--check",)):
        again = cloud.boot("f-start", *extra)
        assert all(v["changed"] == 0 and v["failed"] == 0 for v in again.recap().values()), again.out[-3000:]
    # check mode on a new instance creates nothing and claims nothing
    check = cloud.boot("f-check", "--check")
    assert check.rc == 0 and cloud.query("SELECT uuid FROM instances WHERE name='f-check'") == []
    assert len(cloud.claims()) == 1
    assert_deleted(cloud, "f-start")


def test_image_hash_mismatch_goes_to_error_at_once_cache_intact(cloud):
    img = cloud.query("SELECT id, location FROM images WHERE name='guest-corrupt'")[0]
    path = img["location"]
    assert os.path.isfile(path), img
    with open(path, "r+b") as f:             # damage the stored bytes (the registry's hashes stay)
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    caches = {n: cloud.base_cache(n) for n in HOSTS}
    res = cloud.boot("f-hash", "-e", "bootflow_image=guest-corrupt", check=False)
    assert res.rc != 0 and "checksum mismatch" in res.out, res.out[-3000:]
    inst = cloud.instance("f-hash")
    fault = inst["fault"]
    assert (inst["vm_state"], inst["host"]) == ("error", None)
    assert fault["host"] == "bfhv121" and fault["step"].startswith("19-21 | ") and fault["action"] == "image_fetch"
    assert "checksum mismatch" in fault["message"] and fault["category"] == "image" and not fault["reschedulable"]
    assert fault["reason"].startswith("Not rescheduled (image)") and fault["at"].endswith("Z")
    assert len(fault["attempts"]) == 1                         # no other host was tried
    assert_clean(cloud, inst["uuid"])
    # the cache: nothing of the bad image (no base, no .part), every other cached base untouched
    assert {n: cloud.base_cache(n) for n in HOSTS} == caches
    assert_deleted(cloud, "f-hash")


def test_no_ip_left_goes_to_error_at_once_nothing_left(cloud):
    """The one address of network tiny is taken: the port step fails (the subnet is exhausted, the
    same on every host), the step itself puts the instance in ERROR, the rescue undoes the build on
    the host and the conductor releases the claim without trying an alternate."""
    nets = ["-e", '{"bootflow_networks": ["tiny"], "bootflow_volume_size_gb": 0}']
    cloud.play(PARTIAL, "-e", "bootflow_instance_name=f-ipholder", "-e", "bootflow_partial=port", *nets)
    holder = cloud.instance("f-ipholder")
    assert [p["ip"] for p in cloud.query("SELECT ip FROM ports WHERE instance_uuid=?", holder["uuid"])] == ["10.97.0.5"]
    res = cloud.boot("f-noip", *nets, check=False)
    assert res.rc != 0 and "No more IP addresses available on subnet 10.97.0.0/29" in res.out, res.out[-3000:]
    inst = cloud.instance("f-noip")
    fault = inst["fault"]
    assert (inst["vm_state"], inst["host"]) == ("error", None)
    assert fault["category"] == "no_ips" and not fault["reschedulable"] and fault["action"] == "port"
    assert fault["step"].startswith("22-24 | ") and fault["host"] == "bfhv121" and len(fault["attempts"]) == 1
    assert cloud.query("SELECT id FROM ports WHERE instance_uuid=?", inst["uuid"]) == []
    assert [c["consumer_id"] for c in cloud.claims()] == [holder["uuid"]]
    assert {n: cloud.host_state(n) for n in HOSTS} == {n: EMPTY for n in HOSTS}
    assert_deleted(cloud, "f-ipholder")
    assert_deleted(cloud, "f-noip")


def test_dnsmasq_killed_while_the_guest_boots_is_respawned_and_the_boot_converges(cloud):
    for n in HOSTS:
        flag(n, "kill-dnsmasq")
    try:
        res = cloud.boot("f-dhcp")
    finally:
        for n in HOSTS:
            flag(n, "kill-dnsmasq", on=False)
    inst = cloud.instance("f-dhcp")
    assert (inst["vm_state"], inst["host"]) == ("active", "bfhv121")
    n = int(inst["host"][4:])
    assert re.search(r"TASK \[bootflow\.cloud\.compute : Wait \| neutron DHCP agent: respawn dnsmasq", res.out), res.out[-4000:]
    assert "is not running" in res.out          # the first look saw the dead dnsmasq, and said so
    port = cloud.query("SELECT ip, mac, network_id FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    m = wait_console(cloud.env[n], inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)")
    assert m.group(1) == port["ip"]
    leases = cloud.env[n].ssh("cat /var/lib/bootflow/dhcp/%s/leases" % port["network_id"])
    assert any(line.split()[1:3] == [port["mac"], port["ip"]] for line in leases.splitlines()), leases
    assert_deleted(cloud, "f-dhcp")


def test_instance_dir_out_of_space_rescheduled_and_first_host_clean(cloud):
    host = cloud.env[121]
    host.ssh("mount -t tmpfs -o size=1m,mode=0755 bootflow-full /var/lib/bootflow/instances")
    try:
        cloud.boot("f-disk")
        full = host.ssh("find /var/lib/bootflow/instances -mindepth 1 | sort")
    finally:
        host.ssh("umount /var/lib/bootflow/instances")
    inst = cloud.instance("f-disk")
    assert (inst["vm_state"], inst["host"]) == ("active", "bfhv122")
    failed = inst["request"]["retry"]["failures"]
    assert [(f["host"], f["action"], f["category"]) for f in failed] == [("bfhv121", "image_fetch", "host_resources")]
    assert "No space left on device" in failed[0]["message"]
    # on the full disk only the cache directories and the image's lock file (kept, as Nova's lock_path
    # files are) are left: no .part file in _base, no instance directory
    kept = re.compile(r"^/var/lib/bootflow/instances/(_base|locks|locks/[0-9a-f]{40}\.lock)$")
    assert [p for p in full.split() if not kept.match(p)] == [], full
    assert cloud.host_state(121) == EMPTY
    assert_deleted(cloud, "f-disk")


LIBVIRTD_STOP = ("kill \"$(cat /run/libvirt/libvirtd.pid)\"; for i in $(seq 50); do "
                 "virsh -c qemu:///system -q version >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1")
LIBVIRTD_START = ("taskset -c 0 libvirtd -d -p /run/libvirt/libvirtd.pid; for i in $(seq 150); do "
                  "virsh -c qemu:///system -q version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")


def test_libvirtd_down_the_build_moves_on_and_the_host_cleans_up_when_it_is_back(cloud):
    """libvirtd stopped on the chosen host: the first step that needs it fails, and so does the undo's first
    step (the domain cannot be looked at). The conductor does not wait for the host (Nova): it records what
    the build left there, releases the claim and the port, and reschedules - the instance is ACTIVE on the
    next host. The failed host is weighed down (BuildFailureWeigher): the next boot goes elsewhere although
    it has the most free memory. When libvirtd is back, hypervisors.yml removes the residue."""
    host = cloud.env[121]
    host.ssh(LIBVIRTD_STOP)
    try:
        # service_down_time=0: the scheduler does not judge hosts by their heartbeats here
        res = cloud.boot("f-virtd", "-e", "bootflow_service_down_time=0", check=False)
    finally:
        host.ssh(LIBVIRTD_START)
    assert res.rc == 0, res.out[-3000:]
    inst = cloud.instance("f-virtd")
    assert (inst["vm_state"], inst["host"]) == ("active", "bfhv122")
    attempt = inst["request"]["retry"]["failures"][0]
    assert attempt["host"] == "bfhv121" and attempt["step"].startswith("25-27 | ") and attempt["action"] == "volume"
    assert [c["hostname"] for c in cloud.claims()] == ["bfhv122"]
    (record,) = cloud.query("SELECT * FROM host_cleanups WHERE done_at IS NULL")
    assert record["host"] == "bfhv121" and record["instance_uuid"] == inst["uuid"]
    assert record["reason"].startswith("Undo | libvirt: destroy and undefine the domain")
    left = cloud.host_state(121)
    assert left["instances"] == [inst["uuid"]] and len(left["dhcp_hosts"]) == 1 and left["domains"] == [], left
    failed = {r["hostname"]: r["failed_builds"] for r in cloud.query("SELECT hostname, failed_builds FROM compute_nodes")}
    assert failed == {"bfhv121": 1, "bfhv122": 0, "bfhv123": 0}
    # the next boot: 121 has the most free memory, but one failed build outweighs it
    cloud.boot("f-next", "-e", "bootflow_service_down_time=0")
    assert cloud.instance("f-next")["host"] != "bfhv121"
    # libvirtd is back: hypervisors.yml (nova-compute's start-up) removes the residue, the record is closed
    cloud.play("hypervisors.yml")
    assert cloud.host_state(121) == EMPTY
    assert cloud.query("SELECT id FROM host_cleanups WHERE done_at IS NULL") == []
    cloud.delete("f-next")
    assert_deleted(cloud, "f-virtd")


def test_every_host_failing_ends_in_error_after_max_attempts_nothing_left(cloud):
    for n in HOSTS:
        flag(n, "fail-start")
    try:
        res = cloud.boot("f-all", check=False)
    finally:
        for n in HOSTS:
            flag(n, "fail-start", on=False)
    assert res.rc != 0 and "Exceeded maximum number of retries" in res.out, res.out[-3000:]
    inst = cloud.instance("f-all")
    fault = inst["fault"]
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("error", None, None)
    assert [a["host"] for a in fault["attempts"]] == ["bfhv121", "bfhv122", "bfhv123"]
    assert all("injected fault" in a["message"] and a["action"] == "domain" for a in fault["attempts"])
    assert fault["host"] == "bfhv123" and fault["step"].startswith("28 | ") and "injected fault" in fault["message"]
    assert fault["reason"].startswith("Exceeded maximum number of retries. Exhausted all hosts available")
    assert "3 of max_attempts=3" in fault["reason"]
    assert_clean(cloud, inst["uuid"])
    # what a user reads with bootflow.cloud.instance_info
    info = cloud.instance_info("f-all")
    assert info["status"] == "ERROR" and info["fault"] == fault and info["allocation"] is None
    assert info["retry"]["hosts"] == ["bfhv121", "bfhv122", "bfhv123"] and info["ports"] == []


# --- RBAC --------------------------------------------------------------------------------------------

def adhoc(cloud, module, args):
    """One bootflow module on localhost (ansible ad hoc, the real action plugin); its JSON result."""
    proc = subprocess.run(["ansible", "localhost", "-i", str(cloud.inventory), "-m", module, "-a", json.dumps(args), "-o"],
                          cwd=REPO, env=dict(cloud.any.env, ANSIBLE_LOAD_CALLBACK_PLUGINS="0"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert " => " in proc.stdout, proc.stdout[-3000:]
    return json.loads(proc.stdout.split(" => ", 1)[1])


def test_member_refused_an_admin_step_changes_nothing(cloud):
    """A member's token on an admin-only step (compute:flavor_manage) is refused by the policy, and the
    whole DB is as it was."""
    with open(os.path.join(str(cloud.any.state_dir), "admin-password")) as f:
        admin = adhoc(cloud, "bootflow.cloud.token", {"username": "admin", "password": f.read().strip()})["token"]
    for module, args in (("bootflow.cloud.project", {"name": "f-rbac"}),
                         ("bootflow.cloud.user", {"name": "f-rbac-bob", "password": "bobpw", "default_project": "f-rbac"}),
                         ("bootflow.cloud.role_assignment", {"user": "f-rbac-bob", "project": "f-rbac", "role": "member"})):
        res = adhoc(cloud, module, dict(args, auth_token=admin))
        assert not res.get("failed"), (module, res)
    member = adhoc(cloud, "bootflow.cloud.token", {"username": "f-rbac-bob", "password": "bobpw", "project": "f-rbac"})["token"]
    before = cloud.any.full_db_snapshot()
    res = adhoc(cloud, "bootflow.cloud.flavor",
                {"name": "f-rbac-huge", "vcpus": 64, "ram_mb": 262144, "disk_gb": 1, "auth_token": member})
    assert res.get("error") == "auth" and "Policy doesn't allow compute:flavor_manage" in res["msg"], res
    assert "f-rbac-bob" in res["msg"] and "member" in res["msg"], res
    assert cloud.any.full_db_snapshot() == before
    assert cloud.query("SELECT name FROM flavors WHERE name='f-rbac-huge'") == []


# --- delete.yml on an instance in any state -----------------------------------------------------

def test_delete_an_instance_in_error_after_a_failed_build(cloud):
    assert cloud.instance("f-all")["vm_state"] == "error"
    assert_deleted(cloud, "f-all")


def test_delete_an_instance_never_scheduled(cloud):
    cloud.play(PARTIAL, "-e", "bootflow_instance_name=d-api", "-e", "bootflow_partial=api")
    inst = cloud.instance("d-api")
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("building", "scheduling", None)
    assert_deleted(cloud, "d-api")


def test_delete_an_instance_scheduled_but_not_built(cloud):
    cloud.play(PARTIAL, "-e", "bootflow_instance_name=d-sched", "-e", "bootflow_partial=scheduled")
    inst = cloud.instance("d-sched")
    assert inst["vm_state"] == "building" and inst["host"] == "bfhv121"
    assert cloud.claims() == [{"consumer_id": inst["uuid"], "hostname": "bfhv121"}]
    assert_deleted(cloud, "d-sched")


def test_delete_a_half_made_instance(cloud):
    cloud.play(PARTIAL, "-e", "bootflow_instance_name=d-half", "-e", "bootflow_partial=half")
    inst = cloud.instance("d-half")
    state = cloud.host_state(121)
    assert inst["vm_state"] == "building" and inst["power_state"] == "NOSTATE"
    assert state["domains"] == ["bootflow-%s" % inst["uuid"]] and len(state["volumes"]) == 1
    assert state["instances"] == [inst["uuid"]] and len(state["dhcp_hosts"]) == 1, state
    assert_deleted(cloud, "d-half")


def test_delete_an_instance_already_gone(cloud):
    res = cloud.delete("d-half")
    assert all(v["failed"] == 0 and v["changed"] == 0 for v in res.recap().values()), res.out[-3000:]
    res = cloud.delete("never-existed")
    assert all(v["failed"] == 0 and v["changed"] == 0 for v in res.recap().values()), res.out[-3000:]
    assert_clean(cloud)
