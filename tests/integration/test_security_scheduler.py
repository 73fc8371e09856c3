# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, the scheduler's findings, replayed as a member would through real playbooks on three real test
hosts (bfhv191, bfhv192, bfhv193; bfhv193 is registered disabled, host var bootflow_host_disabled).

* A member's schedule task choosing the scheduler's configuration (enabled_filters [CapacityFilter], hosts
  [the disabled host], service_down_time, ...) is refused - those are the operator's settings (nova.conf) -
  and nothing changes; an admin's enabled_filters without ComputeFilter still never places on the disabled
  host (ComputeFilter is mandatory).
* A member's reschedule naming the disabled host as alternate is refused, nothing changes; a stored
  alternate disabled after scheduling is skipped by the re-check (the instance goes to ERROR with the reason).
* A member's boot.yml without overrides runs with the operator's file (bootflow.yml in the state dir,
  scheduler.hosts) and boots.

The service-credential finding (a task's auth_url / placement_url) is replayed against a real Keystone and
Placement in tests/unit/plugins/plugin_utils/test_placement.py (test_attack_a_member_pointing_...).
"""

from __future__ import annotations

import datetime
import json
import os

import pytest

from sched_helpers import EMPTY, Cloud, fresh_hosts, host_contents, hostname, purge, write_inventory

HOSTS = (191, 192, 193)
MB = {191: 1024, 192: 1024, 193: 2048}
DISABLED = hostname(193)
MEMBER = {"username": "sec-mal", "password": "sec-mal-pw", "project": "admin"}


@pytest.fixture(scope="module", autouse=True)
def purge_hosts_at_the_end():
    yield
    purge(HOSTS)


def _playbook(path, tasks, user=None):
    """A playbook on localhost: a token (the member's, or the admin's) then ``tasks`` [(module, args)]."""
    token_args = dict(user or {})
    play = {"name": "sec", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "token", "bootflow.cloud.token": token_args, "register": "tok", "no_log": True}]}
    for i, (module, args) in enumerate(tasks):
        play["tasks"].append({"name": "step %d" % i,
                              "bootflow.cloud.%s" % module: dict(args, auth_token="{{ tok.token }}")})
    path.write_text(json.dumps([play], indent=1))
    return str(path)


@pytest.fixture(scope="module")
def sec(tmp_path_factory):
    fresh_hosts(HOSTS)
    base = tmp_path_factory.mktemp("bootflow-sec-sched")
    cloud = Cloud(base)
    inv = write_inventory(base / "inventory.ini", HOSTS, MB, {193: "bootflow_host_disabled=true"})
    cloud.play("bootstrap.yml", inv)
    cloud.play("hypervisors.yml", inv)
    counter = [0]

    def run(tasks, user=None, check=True):
        counter[0] += 1
        return cloud.play(_playbook(base / ("p%d.json" % counter[0]), tasks, user), inv, "-v", check=check)

    run([("user", {"name": MEMBER["username"], "password": MEMBER["password"], "default_project": "admin"}),
         ("role_assignment", {"user": MEMBER["username"], "project": "admin", "role": "member"})])
    yield {"cloud": cloud, "inv": inv, "run": run, "base": base}
    cloud.close()


def _state(cloud):
    """Every row a schedule or reschedule could touch."""
    out = {}
    for table in ("instances", "allocations", "compute_nodes", "instance_steps", "ports", "volumes"):
        out[table] = sorted(json.dumps(r, sort_keys=True, default=str) for r in cloud.query("SELECT * FROM %s" % table))
    return out


def _fresh(cloud):
    """The hosts answered just now (as boot.yml's heartbeats would): ComputeFilter judges them up."""
    cloud.query_exec("UPDATE compute_nodes SET updated_at = :t",
                     t=datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None))


def _new_instance(sec, name):
    sec["run"]([("instance", {"name": name, "flavor": "m1.tiny", "image": "bootflow-guest",
                              "networks": ["private"], "volume_size_gb": 0})], MEMBER)


def test_disabled_host_is_registered_disabled(sec):
    rows = {r["hostname"]: bool(r["disabled"]) for r in sec["cloud"].query("SELECT hostname, disabled FROM compute_nodes")}
    assert rows == {hostname(191): False, hostname(192): False, DISABLED: True}


@pytest.mark.parametrize("option", [
    {"enabled_filters": ["CapacityFilter"]},
    {"hosts": [DISABLED]},
    {"enabled_filters": ["CapacityFilter"], "hosts": [DISABLED]},
    {"service_down_time": 0},
    {"weight_multipliers": {"ram": -1.0}},
    {"host_subset_size": 3},
    {"max_attempts": 1},
])
def test_attack_a_members_schedule_choosing_the_schedulers_settings_is_refused_state_unchanged(sec, option):
    _new_instance(sec, "sec-a")
    before = _state(sec["cloud"])
    res = sec["run"]([("schedule", dict(option, instances=["sec-a"]))], MEMBER, check=False)
    assert res.rc != 0
    assert "is an operator setting (section scheduler of the operator configuration" in res.out, res.out[-3000:]
    assert "only an admin may set it in a task; user sec-mal has member" in res.out
    assert _state(sec["cloud"]) == before


def test_an_admins_enabled_filters_without_compute_filter_never_place_on_the_disabled_host(sec):
    _new_instance(sec, "sec-b")
    res = sec["run"]([("schedule", {"instance": "sec-b", "enabled_filters": ["CapacityFilter"], "hosts": [DISABLED]})],
                     check=False)
    assert res.rc != 0 and "No valid host was found" in res.out
    assert "%s: ComputeFilter: disabled" % DISABLED in res.out
    assert sec["cloud"].query("SELECT COUNT(*) AS n FROM allocations a JOIN compute_nodes c ON c.id = a.compute_node_id "
                              "WHERE c.hostname = :h", h=DISABLED)[0]["n"] == 0


def test_attack_a_members_reschedule_onto_the_disabled_host_is_refused_and_stale_alternates_are_skipped(sec):
    cloud = sec["cloud"]
    _new_instance(sec, "sec-c")
    _fresh(cloud)
    sec["run"]([("schedule", {"instance": "sec-c"})], MEMBER)
    row = cloud.query("SELECT host, request FROM instances WHERE name = 'sec-c' AND deleted_at IS NULL")[0]
    host, alternates = row["host"], json.loads(row["request"])["alternates"]
    assert host != DISABLED and DISABLED not in alternates and alternates, row
    before = _state(cloud)
    failure = {"msg": "domain bootflow-x: cannot start: Hook script execution failed", "error": "error"}
    res = sec["run"]([("reschedule", {"instance": "sec-c", "host": host, "failure": failure,
                                      "alternates": [DISABLED]})], MEMBER, check=False)
    assert res.rc != 0 and "alternates names the hosts to build on, which only an admin may do" in res.out
    assert _state(cloud) == before
    res = sec["run"]([("reschedule", {"instance": "sec-c", "host": host, "failure": failure, "max_attempts": 3})],
                     MEMBER, check=False)
    assert res.rc != 0 and "max_attempts is an operator setting" in res.out
    assert _state(cloud) == before
    # the operator disables the stored alternate after scheduling: the member's reschedule skips it
    cloud.query_exec("UPDATE compute_nodes SET disabled = :t WHERE hostname = :h", t=True, h=alternates[0])
    _fresh(cloud)
    try:
        res = sec["run"]([("reschedule", {"instance": "sec-c", "host": host, "failure": failure})], MEMBER)
        assert "ComputeFilter: disabled" in res.out and '"rescheduled": false' in res.out, res.out[-3000:]
        row = cloud.query("SELECT vm_state, host FROM instances WHERE name = 'sec-c' AND deleted_at IS NULL")[0]
        assert (row["vm_state"], row["host"]) == ("error", None)
        assert cloud.query("SELECT COUNT(*) AS n FROM allocations a JOIN instances i ON i.uuid = a.consumer_id "
                           "WHERE i.name = 'sec-c'")[0]["n"] == 0
    finally:
        cloud.query_exec("UPDATE compute_nodes SET disabled = :f WHERE hostname = :h", f=False, h=alternates[0])


def test_a_member_boots_with_boot_yml_on_the_operators_settings(sec):
    cloud = sec["cloud"]
    config = cloud.state_dir / "bootflow.yml"
    config.write_text("scheduler:\n  hosts: [%s]\n" % hostname(192))
    os.chmod(config, 0o600)
    try:
        res = cloud.play("boot.yml", sec["inv"], "-e", "bootflow_instance_name=sec-boot", "-e",
                         "bootflow_username=%s bootflow_password=%s bootflow_project=admin"
                         % (MEMBER["username"], MEMBER["password"]))
        assert "sec-boot" in res.out
        row = cloud.query("SELECT vm_state, host FROM instances WHERE name = 'sec-boot' AND deleted_at IS NULL")[0]
        assert (row["vm_state"], row["host"]) == ("active", hostname(192)), row
        # an override in the member's run is refused before nova-api records anything (the scheduler's preflight)
        before = cloud.query("SELECT COUNT(*) AS n FROM instances")[0]["n"]
        res = cloud.play("boot.yml", sec["inv"], "-e", "bootflow_instance_name=sec-boot2", "-e",
                         "bootflow_username=%s bootflow_password=%s bootflow_project=admin" % (
                             MEMBER["username"], MEMBER["password"]),
                         "-e", '{"bootflow_enabled_filters": ["CapacityFilter"]}', check=False)
        assert res.rc != 0 and "bootflow_enabled_filters override the operator's scheduler settings" in res.out, res.out
        assert "Nothing was recorded" in res.out
        assert cloud.query("SELECT COUNT(*) AS n FROM instances")[0]["n"] == before
    finally:
        config.unlink()


def test_delete_leaves_the_hosts_and_the_db_empty(sec):
    cloud = sec["cloud"]
    names = [r["name"] for r in cloud.query("SELECT name FROM instances WHERE deleted = 0")]
    assert names, "no instance was made"
    for name in names:
        cloud.play("delete.yml", sec["inv"], "-e", "bootflow_instance_name=%s" % name)
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    assert cloud.query("SELECT consumer_id FROM allocations") == []
    assert cloud.query("SELECT name FROM instances WHERE deleted = 0") == []
