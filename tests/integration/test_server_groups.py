# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server groups end to end on three real test hosts (bfhv151, bfhv152, bfhv153).

The hosts report different memory for guests (host var ``bootflow_memory_mb``, 512 MB reserved each):
1024, 768 and 512 MB, so the RAM weigher orders them bfhv151, bfhv152, bfhv153 when they are empty.

* ``bootflow.cloud.server_group`` through ansible-playbook: create, no change on a re-run, check mode
  with --diff writes nothing, another policy for the name is a conflict, rules for a soft policy are
  refused.
* anti-affinity: three ``boot.yml`` runs with ``-e bootflow_server_group=...`` land on three distinct
  hosts (each boot's schedule result rejects the hosts of the earlier members with the filter's
  reason); a fourth fails with "No valid host" and the anti-affinity reason for every host, and
  leaves nothing behind (ERROR without host, claim, port; the hosts hold only the three guests).
  ``delete.yml`` removes the members' memberships with the instances; the group is deleted.
* soft-anti-affinity: four boots spread 2/1/1 - the soft weigher puts each of the first three on a
  host without a member, the fourth goes where the other weighers say (the most free RAM).

The boots skip the data volume and the lease wait (``bootflow_volume_size_gb=0``,
``bootflow_wait_for_lease=false``): seven guests boot in all. Real libvirtd, QEMU TCG, dnsmasq and
sshd on the hosts, SQLite on the controller.
"""

from __future__ import annotations

import collections
import json
import os

import pytest

from conftest import REPO
from sched_helpers import (EMPTY, SCHEDULE_TASK, Cloud, fatal_lines, fresh_hosts, host_contents, hostname, purge,
                           run_parallel, running_domains, task_result, write_inventory)

HOSTS = (151, 152, 153)
GUEST_MB = {151: 1024, 152: 768, 153: 512}
FAST = ("-e", "bootflow_volume_size_gb=0", "-e", "bootflow_wait_for_lease=false")
SG_TASK = "Nova-api: os-server-groups"
SG_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "server_group.yml")
ANTI = "anti-affinity: 1 group member(s) already on the host, max_server_per_host 1"


@pytest.fixture(scope="module")
def sg(tmp_path_factory):
    """Hosts 151-153 purged and started (in parallel), a controller of its own, bootstrap + hypervisors."""
    base = tmp_path_factory.mktemp("bootflow-groups")
    try:
        fresh_hosts(HOSTS)
        inv = write_inventory(base / "inventory.ini", HOSTS, GUEST_MB)
        cloud = Cloud(base)
        cloud.play("bootstrap.yml", inv)
        cloud.play("hypervisors.yml", inv)
        yield {"cloud": cloud, "inv": inv, "base": base}
        cloud.close()
    finally:
        purge(HOSTS)


def group_task(sg, *extra, check=True):
    res = sg["cloud"].play(SG_PLAYBOOK, sg["inv"], "-v", *extra, check=check)
    return res, task_result(res.out, SG_TASK)


def boot(sg, name, group, check=True):
    res = sg["cloud"].play("boot.yml", sg["inv"], "-v", "-e", "bootflow_instance_name=%s" % name,
                           "-e", "bootflow_server_group=%s" % group, *FAST, check=check)
    return res, task_result(res.out, SCHEDULE_TASK)


def delete(sg, *names):
    """delete.yml for each name, all at once (one ansible-playbook process each)."""
    cloud = sg["cloud"]
    results = run_parallel(cloud, [cloud.cmd("delete.yml", sg["inv"], "-e", "bootflow_instance_name=%s" % name)
                                   for name in names], sg["base"], "delete-%s" % names[0], 300)
    bad = {name: fatal_lines(out) for name, (rc, out) in zip(names, results) if rc != 0}
    assert not bad, bad


def instance(sg, name):
    rows = sg["cloud"].query("SELECT uuid, host, vm_state, fault FROM instances WHERE name = :n AND deleted = 0", n=name)
    assert len(rows) == 1, rows
    return rows[0]


def members(sg, group):
    return sorted(r["name"] for r in sg["cloud"].query(
        "SELECT i.name FROM server_group_members m JOIN server_groups g ON g.id = m.group_id "
        "JOIN instances i ON i.uuid = m.instance_uuid WHERE g.name = :g", g=group))


def test_the_server_group_module(sg):
    _res, (status, out) = group_task(sg, "-e", "sg_name=sg-anti", "-e", "sg_policy=anti-affinity")
    assert status == "changed", out
    anti = out["server_group"]
    assert (anti["name"], anti["policy"], anti["rules"], anti["members"], anti["hosts"]) == (
        "sg-anti", "anti-affinity", {}, [], [])
    _res, (status, out) = group_task(sg, "-e", "sg_name=sg-anti", "-e", "sg_policy=anti-affinity")
    assert status == "ok" and out["server_group"]["id"] == anti["id"]
    # a group's policy never changes: a clear conflict
    res, (status, out) = group_task(sg, "-e", "sg_name=sg-anti", "-e", "sg_policy=affinity", check=False)
    assert res.rc != 0 and status == "fatal" and out["error"] == "conflict"
    assert "policy and rules cannot be changed" in out["msg"], out
    res, (status, out) = group_task(sg, "-e", "sg_name=sg-x", "-e", "sg_policy=soft-affinity",
                                    "-e", json.dumps({"sg_rules": {"max_server_per_host": 2}}), check=False)
    assert status == "fatal" and out["error"] == "invalid" and "Only anti-affinity policy supports rules" in out["msg"]
    # check mode with --diff: the group that would be made, nothing written
    res, (status, out) = group_task(sg, "-e", "sg_name=sg-soft", "-e", "sg_policy=soft-anti-affinity", "--check", "--diff")
    assert status == "changed" and out["server_group"]["id"] is None
    # the callback prints the diff above the result: from nothing to the group
    shown = res.out[res.out.index("TASK [%s]" % SG_TASK):res.out.index("changed: [localhost]")]
    assert "-{}" in shown and '+    "policy": "soft-anti-affinity",' in shown and '+    "members": [],' in shown, shown
    assert sorted(r["name"] for r in sg["cloud"].query("SELECT name FROM server_groups")) == ["sg-anti"]
    _res, (status, out) = group_task(sg, "-e", "sg_name=sg-soft", "-e", "sg_policy=soft-anti-affinity")
    assert status == "changed" and out["server_group"]["policy"] == "soft-anti-affinity"


def test_anti_affinity_members_land_on_distinct_hosts_and_a_fourth_finds_no_host(sg):
    cloud = sg["cloud"]
    placed = []
    for i in range(3):
        _res, (status, sched) = boot(sg, "aa-%d" % i, "sg-anti")
        assert status == "changed", sched
        # the earlier members' hosts are rejected by the filter, with its reason; the RAM order decides the rest
        assert sched["rejected"] == {h: "ServerGroupAntiAffinityFilter: " + ANTI for h in placed}, sched
        assert sched["server_group"]["policy"] == "anti-affinity" and sorted(sched["server_group"]["hosts"]) == sorted(placed)
        assert sched["claim_failures"] == {}
        placed.append(sched["host"])
        assert instance(sg, "aa-%d" % i)["vm_state"] == "active"
    assert placed == [hostname(n) for n in HOSTS]       # 1024, 768, 512 MB: the RAM weigher's order
    for n in HOSTS:
        assert running_domains(n) == ["bootflow-%s" % instance(sg, "aa-%d" % HOSTS.index(n))["uuid"]]
    before = {n: host_contents(n) for n in HOSTS}
    res, (status, sched) = boot(sg, "aa-3", "sg-anti", check=False)
    assert res.rc != 0 and status == "fatal" and sched["error"] == "no_valid_host", sched
    assert sched["rejected"] == {hostname(n): "ServerGroupAntiAffinityFilter: " + ANTI for n in HOSTS}
    assert sched["msg"].startswith("No valid host was found.") and ANTI in sched["msg"]
    # nothing left behind: ERROR without host or claim or port, the hosts hold what they held
    row = instance(sg, "aa-3")
    fault = row["fault"] if isinstance(row["fault"], dict) else json.loads(row["fault"])
    assert row["vm_state"] == "error" and row["host"] is None and "anti-affinity" in fault["message"]
    assert cloud.query("SELECT id FROM allocations WHERE consumer_id = :u", u=row["uuid"]) == []
    assert cloud.query("SELECT id FROM ports WHERE instance_uuid = :u", u=row["uuid"]) == []
    assert {n: host_contents(n) for n in HOSTS} == before
    assert members(sg, "sg-anti") == ["aa-0", "aa-1", "aa-2", "aa-3"]
    # the module shows the members and their hosts (the ERROR one on none)
    _res, (status, out) = group_task(sg, "-e", "sg_name=sg-anti")
    assert status == "ok" and out["server_group"]["hosts"] == sorted(placed)
    assert {m["name"]: m["host"] for m in out["server_group"]["members"]} == {
        "aa-0": placed[0], "aa-1": placed[1], "aa-2": placed[2], "aa-3": None}


def test_delete_removes_the_membership(sg):
    delete(sg, "aa-3")
    assert members(sg, "sg-anti") == ["aa-0", "aa-1", "aa-2"]
    delete(sg, "aa-0", "aa-1", "aa-2")
    assert members(sg, "sg-anti") == []
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    _res, (status, out) = group_task(sg, "-e", "sg_name=sg-anti", "-e", "sg_state=absent")
    assert status == "changed" and out["server_group"]["members"] == []
    assert sg["cloud"].query("SELECT name FROM server_groups WHERE name = 'sg-anti'") == []


def test_soft_anti_affinity_spreads_as_the_weighers_say(sg):
    cloud = sg["cloud"]
    names = ["soft-%d" % i for i in range(4)]
    placed = []
    try:
        for name in names:
            _res, (status, sched) = boot(sg, name, "sg-soft")
            assert status == "changed" and sched["rejected"] == {}, sched   # a soft policy rejects nothing
            weights = sched["weights"]
            soft = {h: w["ServerGroupSoftAntiAffinityWeigher"] for h, w in weights.items()}
            on = collections.Counter(placed)
            if len(set(on[hostname(n)] for n in HOSTS)) > 1:
                # normalised: the hosts with the fewest members 1.0, the ones with the most 0.0
                assert all(soft[h] == (1.0 if on[h] == min(on[hostname(n)] for n in HOSTS) else 0.0) for h in soft), soft
            else:
                assert set(soft.values()) == {0.0}, soft          # all equal: the other weighers decide
            assert sched["host"] == max(weights, key=lambda h: weights[h]["total"]), weights
            placed.append(sched["host"])
            assert instance(sg, name)["vm_state"] == "active"
        # each of the first three on its own host, the fourth with the most free RAM (bfhv151): 2/1/1
        assert sorted(collections.Counter(placed).values()) == [1, 1, 2] and len(set(placed[:3])) == 3
        assert placed[3] == hostname(151)
        assert members(sg, "sg-soft") == names
    finally:
        delete(sg, *names)
    assert members(sg, "sg-soft") == []
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    assert cloud.query("SELECT consumer_id FROM allocations") == []
    assert cloud.query("SELECT name FROM instances WHERE deleted = 0") == []
