# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real site's start and what a new user stumbles on, on test host bfhv241 (a libvirt hook that can
refuse QEMU, as in test_faults.py).

* bootstrap.yml --check on a new state dir (SQLite) and on a new PostgreSQL database: exit 0, nothing
  written (no state dir, no table); then a real run of a site from variables only (flavors, image, network
  with gateway and DNS, users with passwords that never show), a second run changed=0, and --check changed=0.
* boot.yml and delete.yml without bootflow_instance_name or bootflow_instances fail at their first task
  with a clear message, and change nothing.
* delete.yml of a name the project has no instance of says so (a warning, exit 0, changed=0); an admin is
  told of another project's instance of that name with its UUID, a member is not; a second delete says it
  was deleted already.
* a build that fails on the only host while libvirtd is down (its undo fails too): the run ends with the
  instance in ERROR and says what is left where (the record, and on bfhv241 the domain's instance directory
  and DHCP reservation) and what to run next; running exactly that (hypervisors.yml --limit, delete.yml)
  leaves host and DB empty.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import sqlalchemy as sa

from conftest import INVENTORY_SH, REPO, TESTHOST, Env, fresh_pg_url
from sched_helpers import install_fault_hook

HOST_N = 241
PARTIAL = os.path.join(REPO, "tests", "integration", "playbooks", "partial_boot.yml")
LIBVIRTD_STOP = ("kill \"$(cat /run/libvirt/libvirtd.pid)\"; for i in $(seq 50); do "
                 "virsh -c qemu:///system -q version >/dev/null 2>&1 || exit 0; sleep 0.2; done; exit 1")
LIBVIRTD_START = ("taskset -c 0 libvirtd -d -p /run/libvirt/libvirtd.pid; for i in $(seq 150); do "
                  "virsh -c qemu:///system -q version >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1")
SITE_VARS = {
    "bootflow_bootstrap_flavors": [{"name": "s1.one", "vcpus": 1, "ram_mb": 128, "disk_gb": 1},
                                   {"name": "m1.tiny", "vcpus": 1, "ram_mb": 128, "disk_gb": 1}],
    "bootflow_image_name": "site-guest",
    "bootflow_network_name": "site-net",
    "bootflow_network_cidr": "10.99.0.0/24",
    "bootflow_network_gateway": "10.99.0.254",
    "bootflow_network_dns_servers": ["10.99.0.254"],
    "bootflow_bootstrap_users": [{"name": "site-alice", "password": "alice-SECRET-1", "project": "site-web"},
                                 {"name": "site-rita", "password": "rita-SECRET-2", "project": "site-web",
                                  "role": "reader"}],
}
# the user of another project, for the delete tests
ALICE = ("-e", "bootflow_username=site-alice", "-e", "bootflow_password=alice-SECRET-1", "-e", "bootflow_project=site-web")
RECAP = re.compile(r"^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", re.M)


def inventory_text():
    return subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE, text=True).stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """bfhv241 with the fault hook, a controller of its own: bootstrap.yml (the test inventory's site) + hypervisors.yml."""
    base = tmp_path_factory.mktemp("bootflow-site")
    subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=180, stdout=subprocess.DEVNULL)
    try:
        subprocess.run([TESTHOST, "start", str(HOST_N)], check=True, timeout=180, stdout=subprocess.DEVNULL)
        install_fault_hook(HOST_N)
        (base / "inventory.ini").write_text(inventory_text())
        env = Env(base / "state", base / "inventory.ini", HOST_N)
        env.base = base
        env.play("bootstrap.yml", "-e", json.dumps({"bootflow_bootstrap_users": SITE_VARS["bootflow_bootstrap_users"]}))
        env.play("hypervisors.yml")
        yield env
        for row in env.query("SELECT name FROM instances WHERE deleted = 0"):
            env.play("delete.yml", "-e", "bootflow_instance_name=%s" % row["name"], check=False)
    finally:
        subprocess.run([TESTHOST, "ssh", str(HOST_N), LIBVIRTD_START], check=False, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=180, stdout=subprocess.DEVNULL)


def recap(res):
    m = RECAP.search(res.out)
    assert m, res.out[-3000:]
    return {"changed": int(m.group(1)), "failed": int(m.group(2))}


def tables(env):
    """The tables of env's database (PostgreSQL) - [] for a new one."""
    engine = sa.create_engine(env.db_url, poolclass=sa.pool.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


# --- bootstrap.yml ------------------------------------------------------------------------------------

def test_bootstrap_check_on_a_new_state_writes_nothing(tmp_path, pg_server):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(inventory_text())
    sqlite_env = Env(tmp_path / "state", inventory, HOST_N)
    pg_env = Env(tmp_path / "pg-state", inventory, HOST_N, db_url=fresh_pg_url(pg_server, "site_check"))
    for env in (sqlite_env, pg_env):
        res = env.play("bootstrap.yml", "--check", "-e", json.dumps(SITE_VARS))
        assert res.rc == 0 and recap(res)["failed"] == 0, res.out[-3000:]
        for what in ("flavor s1.one", "flavor m1.tiny", "image site-guest from ", "network site-net on bridge br-bootflow",
                     "subnet site-net-subnet 10.99.0.0/24", "project site-web", "user site-alice", "user site-rita"):
            assert "would create " + what in res.out, (what, res.out[-3000:])
        assert "SECRET" not in res.out
        assert not os.path.exists(str(env.state_dir)), os.listdir(str(env.state_dir))
    assert tables(pg_env) == []
    # what can be checked without writing is: a missing image file fails the check run
    res = sqlite_env.play("bootstrap.yml", "--check", "-e", json.dumps(dict(SITE_VARS, bootflow_image_file="/nonexistent.qcow2")),
                          check=False)
    assert res.rc != 0 and "bootflow_image_file /nonexistent.qcow2 is not a file on the controller" in res.out
    assert not os.path.exists(str(sqlite_env.state_dir))


def test_bootstrap_a_site_from_variables_then_nothing_changes(tmp_path):
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(inventory_text())
    env = Env(tmp_path / "state", inventory, HOST_N)
    first = env.play("bootstrap.yml", "-e", json.dumps(SITE_VARS))
    assert recap(first)["changed"] > 0 and "SECRET" not in first.out
    flavors = {r["name"]: (r["vcpus"], r["ram_mb"], r["disk_gb"]) for r in env.query("SELECT * FROM flavors")}
    assert flavors == {"s1.one": (1, 128, 1), "m1.tiny": (1, 128, 1)}
    (image,) = env.query("SELECT name, status, disk_format, visibility FROM images")
    assert image == {"name": "site-guest", "status": "active", "disk_format": "qcow2", "visibility": "public"}
    (net,) = env.query("SELECT n.name, n.bridge, s.name AS subnet, s.cidr, s.gateway_ip, s.dns_servers "
                       "FROM networks n JOIN subnets s ON s.network_id = n.id")
    assert (net["name"], net["bridge"], net["subnet"], net["cidr"], net["gateway_ip"]) == \
        ("site-net", "br-bootflow", "site-net-subnet", "10.99.0.0/24", "10.99.0.254")
    assert json.loads(net["dns_servers"]) == ["10.99.0.254"]
    roles = env.query("SELECT u.name AS user, p.name AS project, r.role FROM role_assignments r "
                      "JOIN users u ON u.id = r.user_id JOIN projects p ON p.id = r.project_id ORDER BY u.name")
    assert [(r["user"], r["project"], r["role"]) for r in roles] == [
        ("admin", "admin", "admin"), ("site-alice", "site-web", "member"), ("site-rita", "site-web", "reader")]
    again = env.play("bootstrap.yml", "-e", json.dumps(SITE_VARS))
    assert recap(again) == {"changed": 0, "failed": 0}, again.out[-3000:]
    before = env.full_db_snapshot()
    check = env.play("bootstrap.yml", "--check", "-e", json.dumps(SITE_VARS))
    assert recap(check) == {"changed": 0, "failed": 0}, check.out[-3000:]
    assert env.full_db_snapshot() == before
    # the user's password is the one given (and shown nowhere)
    token = subprocess.run(["ansible", "localhost", "-i", str(inventory), "-m", "bootflow.cloud.token", "-o", "-a",
                            json.dumps({"username": "site-alice", "password": "alice-SECRET-1", "project": "site-web"})],
                           cwd=REPO, env=env.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    assert "SUCCESS" in token.stdout, token.stdout[-2000:]


# --- boot.yml / delete.yml: a name is required, a missing one is reported ---------------------------

@pytest.mark.parametrize("playbook", ["boot.yml", "delete.yml"])
def test_no_instance_name_fails_at_once_and_changes_nothing(site, playbook):
    before = site.full_db_snapshot()
    for extra in ((), ("-e", "bootflow_instance_name="), ("-e", '{"bootflow_instances": []}')):
        res = site.play(playbook, *extra, check=False)
        assert res.rc != 0 and "No instance named: set bootflow_instance_name" in res.out, res.out[-3000:]
        assert "TASK [bootflow.cloud.identity" not in res.out   # before the token
    assert site.full_db_snapshot() == before


def test_delete_of_a_missing_or_other_projects_instance_says_so(site):
    res = site.play("delete.yml", "-e", "bootflow_instance_name=site-typo")
    assert recap(res) == {"changed": 0, "failed": 0}
    assert "[WARNING]: No instance site-typo in project admin: nothing deleted" in res.out, res.out[-3000:]
    # site-alice records an instance of project site-web (not built: its record is enough to be found)
    site.play(PARTIAL, *ALICE, "-e", "bootflow_instance_name=site-theirs", "-e", "bootflow_partial=api")
    (theirs,) = site.query("SELECT uuid FROM instances WHERE name = 'site-theirs' AND deleted = 0")
    before = site.full_db_snapshot()
    res = site.play("delete.yml", "-e", "bootflow_instance_name=site-theirs")
    assert recap(res) == {"changed": 0, "failed": 0}
    assert ("No instance site-theirs in project admin; project site-web has one (%s): delete it by its UUID"
            % theirs["uuid"]) in res.out, res.out[-3000:]
    # a member is told nothing of other projects
    res = site.play("delete.yml", *ALICE, "-e", "bootflow_instance_name=admin-only")
    assert "No instance admin-only in project site-web: nothing deleted (a mistyped name, or another project's " \
           "instance)." in res.out, res.out[-3000:]
    assert site.full_db_snapshot() == before
    # the owner deletes it; a second delete says it was deleted already, and is no warning
    assert recap(site.play("delete.yml", *ALICE, "-e", "bootflow_instance_name=site-theirs"))["changed"] > 0
    res = site.play("delete.yml", *ALICE, "-e", "bootflow_instance_name=site-theirs")
    assert recap(res) == {"changed": 0, "failed": 0}
    assert re.search(r"Instance site-theirs \(%s\) in project site-web was deleted at \d{4}-\d\d-\d\d" % theirs["uuid"],
                     res.out), res.out[-3000:]
    assert "[WARNING]: No instance site-theirs" not in res.out


# --- a failed build says what is left where, and what to run next -----------------------------------

def test_a_failed_build_says_what_is_left_where_and_what_to_run_next(site):
    site.ssh(LIBVIRTD_STOP)
    try:
        res = site.play("boot.yml", "-e", "bootflow_instance_name=site-broken", "-e", "bootflow_service_down_time=0",
                        check=False)
    finally:
        site.ssh(LIBVIRTD_START)
    assert res.rc != 0, res.out[-3000:]
    (inst,) = site.query("SELECT uuid, vm_state, host FROM instances WHERE name = 'site-broken' AND deleted = 0")
    assert (inst["vm_state"], inst["host"]) == ("error", None)
    uuid = inst["uuid"]
    (record,) = site.query("SELECT residue, reason FROM host_cleanups WHERE done_at IS NULL")
    residue = json.loads(record["residue"]) if isinstance(record["residue"], str) else record["residue"]
    (port,) = residue["ports"]
    left = site.host_snapshot()
    assert left["instances"] == [uuid] and len(left["dhcp_hosts"]) == 1, left
    # the report: the record, then what bfhv241 holds, then the commands
    said = re.sub(r"\s+", " ", res.out)
    assert "site-broken (%s) is ERROR in the database" % uuid in said, res.out[-4000:]
    assert ("Left on bfhv241, whose undo failed (%s" % record["reason"][:30]) in said
    assert "instance directory /var/lib/bootflow/instances/%s" % uuid in said
    assert "DHCP reservation %s (%s)" % (port["ip"], port["mac"]) in said
    assert "ansible-playbook -i INVENTORY bootflow.cloud.hypervisors --limit bfhv241,localhost" in said
    assert "ansible-playbook -i INVENTORY bootflow.cloud.delete -e bootflow_instance_name=site-broken" in said
    # the last task's failure message says it too (what AWX shows for the job)
    fatal = [line for line in res.out.splitlines() if line.startswith("fatal: [localhost]")][-1]
    assert "is ERROR in the database" in fatal and "bootflow.cloud.delete -e bootflow_instance_name=site-broken" in fatal
    # what it says to run works: the host removes its residue, delete.yml the record
    site.play("hypervisors.yml", "--limit", "bfhv241,localhost")
    assert site.query("SELECT id FROM host_cleanups WHERE done_at IS NULL") == []
    site.play("delete.yml", "-e", "bootflow_instance_name=site-broken")
    assert site.host_snapshot() == {"domains": [], "volumes": [], "instances": [], "dhcp_hosts": []}
    assert site.query("SELECT uuid FROM instances WHERE deleted = 0") == []
    assert site.query("SELECT id FROM ports") == [] and site.query("SELECT consumer_id FROM allocations") == []
