# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters of boot.yml's fleet flow (plugins/filter/fleet.py): a build pass's outcomes, the next pass,
the lease errors, the end-of-run table, and the SSH jump through the hypervisor host."""

from __future__ import annotations

import shlex

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.bootflow.cloud.plugins.filter.fleet import (
    fleet_rows,
    fleet_table,
    jump_args,
    lease_errors,
    next_pass,
    pass_outcomes,
    undone,
)


def _outcome(uuid, outcome, host=None):
    return {"uuid": uuid, "name": uuid, "outcome": outcome, "host": host}


def test_a_pass_reports_outcomes_and_the_builds_of_a_host_that_did_not_finish():
    hostvars = {
        "hv1": {"bootflow_builds": ["a", "b"], "bootflow_pass_done": 1,
                "bootflow_pass_outcomes": [_outcome("a", "built", "hv1"), _outcome("b", "rescheduled", "hv3")]},
        # hv2 died while building d: c was built, d and e have no outcome
        "hv2": {"bootflow_builds": ["c", "d", "e"], "bootflow_pass_outcomes": [_outcome("c", "built", "hv2")]},
        # a host that was unreachable from the start has no facts at all
        "hv3": {"bootflow_builds": ["f"]},
    }
    out = pass_outcomes(["hv1", "hv2", "hv3"], hostvars, 1)
    assert [o["uuid"] for o in out["outcomes"]] == ["a", "b", "c"]
    assert out["unfinished"] == [{"uuid": "d", "host": "hv2"}, {"uuid": "e", "host": "hv2"},
                                 {"uuid": "f", "host": "hv3"}]
    # the facts of an earlier pass do not count for this one
    hostvars["hv1"]["bootflow_pass_done"] = 1
    assert pass_outcomes(["hv1"], hostvars, 2)["unfinished"] == []   # every build of hv1 has an outcome
    hostvars["hv1"]["bootflow_pass_outcomes"] = [_outcome("x", "built")]
    assert pass_outcomes(["hv1"], hostvars, 2)["unfinished"] == [{"uuid": "a", "host": "hv1"},
                                                                 {"uuid": "b", "host": "hv1"}]
    with pytest.raises(AnsibleFilterError):
        pass_outcomes(["h"], {"h": {"bootflow_builds": ["a"], "bootflow_pass_outcomes": [_outcome("a", "odd")]}}, 1)


def test_the_next_pass_takes_every_rescheduled_build_to_its_new_host():
    outcomes = [_outcome("a", "built", "hv1"), _outcome("b", "rescheduled", "hv3"), _outcome("c", "error"),
                _outcome("g", "rescheduled", "hv2")]
    results = [{"rescheduled": True, "host": "hv3", "instance": {"uuid": "d"}},
               {"rescheduled": False, "host": None, "instance": {"uuid": "e"}},
               {"skipped": True}]
    assert next_pass(outcomes, results) == [["hv2", ["g"]], ["hv3", ["b", "d"]]]
    assert next_pass([], []) == []


def _lease_item(uuid, name="n"):
    return [{"uuid": uuid, "name": name}, {"id": "p-" + uuid, "ip": "10.0.0.9", "mac": "fa:16:3e:00:00:01"}]


def test_lease_errors_are_per_instance():
    first = [{"leased": True, "item": _lease_item("a")}, {"msg": "no lease for b", "item": _lease_item("b")},
             {"msg": "no lease for c", "item": _lease_item("c")}]
    # no dnsmasq was dead: the retry was skipped, the first wait stands
    assert lease_errors(first, [{"skipped": True}]) == {"b": "no lease for b", "c": "no lease for c"}
    # after a respawn c got its lease, b still not (the retry's items are the first results)
    retry = [{"msg": "still none", "item": first[1]}, {"leased": True, "item": first[2]}]
    assert lease_errors(first, retry) == {"b": "still none"}
    assert lease_errors([{"leased": True, "item": _lease_item("a")}]) == {}


def test_the_table_has_a_row_per_instance_with_its_fault():
    servers = [
        {"name": "web-1", "uuid": "u1", "host": "hv1", "status": "ACTIVE", "ports": [{"ip": "10.0.0.5"}],
         "steps": [{"ms": 1500}, {"ms": 1000}]},
        {"name": "web-2", "uuid": "u2", "host": None, "status": "ERROR", "ports": [],
         "fault": {"message": "No valid host was found.", "step": "schedule", "host": None, "reason": None}},
        {"name": "web-3", "uuid": "u3", "host": "hv2", "status": "ACTIVE", "ports": [{"ip": "10.0.0.6"}], "steps": []},
        {"name": "db", "status": "ABSENT"},
    ]
    hostvars = {"hv2": {"bootflow_lease_errors": {"u3": "timed out"}}, "hv1": {}}
    rows = fleet_rows(servers, hostvars, ["hv1", "hv2"])
    assert [(r["name"], r["host"], r["ip"], r["status"], r["seconds"]) for r in rows] == [
        ("web-1", "hv1", "10.0.0.5", "ACTIVE", 2.5), ("web-2", "-", "-", "ERROR", None),
        ("web-3", "hv2", "10.0.0.6", "ACTIVE", None), ("db", "-", "-", "ABSENT", None)]
    assert "min_count" in rows[3]["fault"]
    assert rows[1]["fault"] == "failed at 'schedule': No valid host was found."
    assert rows[2]["fault"] == "no DHCP lease: timed out" and rows[0]["fault"] == ""
    table = fleet_table(rows)
    assert table[0].split() == ["NAME", "HOST", "IP", "STATUS", "SECONDS", "FAULT"]
    assert table[1].split()[:5] == ["web-1", "hv1", "10.0.0.5", "ACTIVE", "2.5"]
    assert len({line.index("STATUS") if i == 0 else None for i, line in enumerate(table)} - {None}) == 1
    assert table[2].index("ERROR") == table[0].index("STATUS")


def test_the_jump_uses_the_hypervisors_own_connection():
    hv = {"ansible_host": "10.98.1.2", "ansible_user": "root", "ansible_port": 2222,
          "ansible_ssh_private_key_file": "/keys/id ed25519",
          "ansible_ssh_common_args": "-o UserKnownHostsFile=/k/known -o StrictHostKeyChecking=accept-new"}
    args = jump_args(hv, "-o StrictHostKeyChecking=no")
    words = shlex.split(args)   # how Ansible's ssh connection splits ansible_ssh_common_args
    assert words[0] == "-o" and words[1].startswith("ProxyCommand=") and words[2:] == ["-o", "StrictHostKeyChecking=no"]
    proxy = shlex.split(words[1][len("ProxyCommand="):])
    assert proxy == ["ssh", "-W", "%h:%p", "-q", "-p", "2222", "-i", "/keys/id ed25519", "-o",
                     "UserKnownHostsFile=/k/known", "-o", "StrictHostKeyChecking=accept-new", "root@10.98.1.2"]
    assert shlex.split(jump_args({"inventory_hostname": "hv9"}))[1] == "ProxyCommand=ssh -W %h:%p -q hv9"
    with pytest.raises(AnsibleFilterError):
        jump_args({})


def test_delete_releases_only_what_its_host_undid():
    found = [{"uuid": "a", "host": "hv1"}, {"uuid": "b", "host": "hv2"}, {"uuid": "c", "host": None},
             {"uuid": "d", "host": "hv1"}]
    hostvars = {"hv1": {"bootflow_undone": ["a"]}, "hv2": {}}   # hv1 stopped after a; hv2 never answered
    assert [s["uuid"] for s in undone(found, hostvars)] == ["a", "c"]


def test_the_fleet_table_escapes_control_characters_of_names_and_faults():
    rows = [{"name": "vm\u202e1", "host": "hv1", "ip": None, "status": "ERROR", "seconds": None,
             "fault": "bad\x1b[31m thing\n"}]
    lines = fleet_table(rows)
    assert all(ch not in "".join(lines) for ch in "\u202e\x1b\n")
    assert "vm\\u202e1" in lines[1] and "bad\\x1b[31m thing\\n" in lines[1]


def test_request_list_requires_a_name_or_a_list():
    from ansible_collections.bootflow.cloud.plugins.filter.fleet import request_list
    assert request_list([{"name": "a"}], "ignored") == [{"name": "a"}]
    assert request_list([], "web") == [{"name": "web"}]
    assert request_list([], "web", 3) == [{"name": "web", "count": 3}]
    assert request_list([], "  ") == [{"name": "  "}]   # nova-api refuses it: Invalid instance name
    for name in (None, ""):
        with pytest.raises(AnsibleFilterError, match="No instance named: set bootflow_instance_name"):
            request_list([], name)
    with pytest.raises(AnsibleFilterError, match="bootflow_instances must be a list"):
        request_list("web", None)
    with pytest.raises(AnsibleFilterError, match="bootflow_count must be a whole number"):
        request_list([], "web", "three")


def test_next_steps_say_what_is_left_where_and_what_to_run():
    from ansible_collections.bootflow.cloud.plugins.filter.fleet import fleet_next_steps
    servers = [
        {"name": "ok", "uuid": "u0", "status": "ACTIVE"},
        {"name": "gone", "status": "ABSENT"},
        {"name": "web 1", "uuid": "u1", "status": "ERROR", "host": None, "ports": [], "allocation": None,
         "volumes": [{"name": "vol-u1", "status": "creating"}],
         "left_on_hosts": [{"host": "hv1", "reason": "Undo | libvirt: destroy: no connection",
                            "residue": {"domain_name": "bootflow-u1", "instances_path": "/var/lib/bootflow/instances",
                                        "ports": [{"ip": "10.0.0.5", "mac": "fa:16:3e:00:00:01", "network_id": "n1"}],
                                        "volumes": [{"name": "volume-v1", "pool": "bootflow"}]}}]},
        {"name": "stuck", "uuid": "u2", "status": "BUILD", "host": "hv2", "allocation": {"host": "hv2"},
         "ports": [{"ip": "10.0.0.6", "network_name": "private"}], "volumes": []},
    ]
    text = "\n".join(fleet_next_steps(servers))
    assert "ok (u0)" not in text and "gone" not in text
    assert "web 1 (u1) is ERROR in the database; it still holds volume vol-u1 (creating)." in text
    assert ("Left on hv1, whose undo failed (Undo | libvirt: destroy: no connection): libvirt domain bootflow-u1, "
            "instance directory /var/lib/bootflow/instances/u1, DHCP reservation 10.0.0.5 (fa:16:3e:00:00:01) of "
            "network n1, pool volume volume-v1 (pool bootflow).") in text
    assert "bootflow.cloud.hypervisors --limit hv1,localhost" in text
    assert "bootflow.cloud.delete -e bootflow_instance_name='web 1'" in text
    assert "stuck (u2) is BUILD in the database on host hv2; it still holds its claim on hv2, port 10.0.0.6 (private)." in text
    assert "Left on hv2, which did not finish the build" in text and "--limit hv2" not in text
    assert fleet_next_steps([{"name": "ok", "uuid": "u0", "status": "ACTIVE"}]) == []


def test_unsettled_rows_are_what_makes_boot_yml_fail():
    from ansible_collections.bootflow.cloud.plugins.filter.fleet import fleet_unsettled
    rows = [{"name": n, "status": st, "fault": f} for n, st, f in (
        ("a", "ACTIVE", ""), ("off", "SHUTOFF", ""), ("p", "PAUSED", ""), ("s", "SUSPENDED", ""),
        ("v", "VERIFY_RESIZE", ""), ("e", "ERROR", "boom"), ("b", "BUILD", ""), ("r", "REBUILD", ""),
        ("rs", "RESIZE", ""), ("gone", "ABSENT", "not recorded"), ("a2", "ACTIVE", "undo failed on hv1"))]
    assert [r["name"] for r in fleet_unsettled(rows)] == ["e", "b", "r", "rs", "gone", "a2"]
    assert fleet_unsettled(rows[:5]) == [] and fleet_unsettled(None) == []
