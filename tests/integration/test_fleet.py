# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet in one boot.yml run (bootflow_instances) on three real test hosts (bfhv161-163): the list
recorded and scheduled as one request, built in parallel across the hosts, every guest holding its
reserved DHCP lease and reachable over SSH (dropbear in the test guest, the key from the config drive)
through its hypervisor - in a follow-up play of the same run, and in a second run that takes its hosts
from the inventory plugin. Then a re-run changes nothing (and skips the delete plays), a new item boots
alone and a later run that lists it with state: absent deletes it, a build refused on one host is
rescheduled while the others go on, an impossible item ends in ERROR, an unmet min_count leaves nothing,
bad input is refused before any host is touched, and delete.yml with the list leaves every host and the
database as they were.

The hosts carry the libvirt fault hook of test_faults.py (a flag file makes a host refuse to start QEMU).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conftest import REPO
from sched_helpers import (EMPTY, Cloud, flag, fresh_hosts, host_contents, hostname, install_fault_hook, purge, ssh,
                           write_inventory)

HOSTS = (161, 162, 163)
GUEST_MB = {161: 768, 162: 640, 163: 640}     # m1.tiny is 128 MB: room for 6 + 5 + 5 (the module boots 13 + a small)
FLEET_PB = os.path.join(REPO, "tests", "integration", "playbooks", "fleet.yml")
KEYPAIR_PB = os.path.join(REPO, "tests", "integration", "playbooks", "keypair.yml")
SG_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "server_group.yml")
QUOTA_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "quota.yml")
FLEET = [
    {"name": "web", "count": 3, "server_group": "web", "metadata": {"role": "web"}},
    {"name": "db", "networks": [{"network": "private", "fixed_ip": "10.99.0.250"}], "volume_size_gb": 1},
    {"name": "cache", "flavor": "m1.small"},
    {"name": "worker"},
]
NAMES = ["web-1", "web-2", "web-3", "db", "cache", "worker"]
PASS_PLAY = "PLAY [Boot | nova-compute on the chosen hosts, in parallel (conductor, glance, neutron, cinder, libvirt): pass %d]"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    base = tmp_path_factory.mktemp("bootflow-fleet")
    try:
        fresh_hosts(HOSTS)
        for n in HOSTS:
            install_fault_hook(n)
        inv = write_inventory(base / "inventory.ini", HOSTS, GUEST_MB)
        cloud = Cloud(base)
        cloud.play("bootstrap.yml", inv)
        cloud.play("hypervisors.yml", inv)
        cloud.play(SG_PLAYBOOK, inv, "-e", "sg_name=web", "-e", "sg_policy=anti-affinity")
        cloud.play(QUOTA_PLAYBOOK, inv)     # the module boots 11 instances; the default quota is 10
        key = base / "id_fleet"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleet-test", "-f", str(key)], check=True)
        cloud.play(KEYPAIR_PB, inv, "-e", json.dumps({"kp_name": "ops", "kp_public_key": (base / "id_fleet.pub").read_text().strip()}))
        out = base / "ssh-out"
        out.mkdir()
        yield {"cloud": cloud, "inv": inv, "base": base, "key": key, "out": out, "booted": []}
        cloud.close()
    finally:
        for n in HOSTS:
            flag(n, "fail-start", on=False)
        purge(HOSTS)


def run(fleet, items, playbook=FLEET_PB, check=True, **extra):
    """boot.yml (through fleet.yml: plus the SSH play) with ``items`` as bootflow_instances."""
    vars_file = fleet["base"] / "vars.json"
    vars_file.write_text(json.dumps(dict({
        "bootflow_instances": items, "bootflow_key_name": "ops", "bootflow_volume_size_gb": 0,
        "bootflow_instance_ssh_key_file": str(fleet["key"]), "fleet_out": str(fleet["out"])}, **extra)))
    return fleet["cloud"].play(playbook, fleet["inv"], "-e", "@%s" % vars_file, check=check)


def live(fleet):
    return {r["name"]: r for r in fleet["cloud"].query(
        "SELECT i.uuid, i.name, i.host, i.vm_state, i.task_state, i.fault, i.request FROM instances i "
        "WHERE i.deleted = 0")}


def ips(fleet, uuid):
    return [(r["mac"], r["ip"]) for r in fleet["cloud"].query("SELECT mac, ip FROM ports WHERE instance_uuid = :u",
                                                              u=uuid)]


def step_count(fleet):
    return {r["instance_uuid"]: r["n"] for r in fleet["cloud"].query(
        "SELECT instance_uuid, COUNT(*) AS n FROM instance_steps GROUP BY instance_uuid")}


def recap(out):
    return {m.group(1): (int(m.group(2)), int(m.group(3)), int(m.group(4))) for m in RECAP.finditer(out)}


def test_a_fleet_boots_in_one_run_in_parallel_and_every_guest_answers_over_ssh(fleet):
    res = run(fleet, FLEET)
    fleet["booted"] += NAMES
    rows = live(fleet)
    assert sorted(rows) == sorted(NAMES)
    assert all((r["vm_state"], r["task_state"]) == ("active", None) for r in rows.values()), rows
    # anti-affinity across the list: the three web instances on three hosts
    assert sorted(rows["web-%d" % i]["host"] for i in (1, 2, 3)) == [hostname(n) for n in HOSTS]
    # the fixed IP asked for, the others from the pool
    assert ips(fleet, rows["db"]["uuid"])[0][1] == "10.99.0.250"
    # within capacity on every host
    for host, (total, used, _n) in fleet["cloud"].capacity().items():
        assert used <= total, (host, used, total)
    # builds ran on all three hosts in the same pass (one play), in parallel: one build pass only
    pass1, pass2 = (PASS_PLAY % 1, PASS_PLAY % 2)
    assert pass1 in res.out and pass2 in res.out
    assert "skipping: no hosts matched" in res.out.split(pass2)[1].split("PLAY [")[0]
    for name, row in rows.items():
        mac, ip = ips(fleet, row["uuid"])[0]
        n = int(row["host"][len("bfhv"):])
        # the guest holds its reserved lease in its host's dnsmasq
        leases = ssh(n, "cat /var/lib/bootflow/dhcp/*/leases")
        assert re.search(r"\b%s %s\b" % (re.escape(mac), re.escape(ip)), leases), (name, leases)
        # and answered over SSH through its hypervisor, with the key pair's key
        answer = (fleet["out"] / ("%s.txt" % name)).read_text().split()
        assert answer == ["FLEET-SSH", name, "%s/24" % ip, "keys=1"], answer
        # a progress line per instance as its lease was seen
        assert re.search(r"\b%s\b.*holds %s" % (re.escape(mac), re.escape(ip)), res.out), name
    # the end-of-run table names every instance ACTIVE
    table = res.out.split('"NAME  ')[1].split("]")[0]
    for name in NAMES:
        assert re.search(r'"%s\s+bfhv\d+\s+[\d.]+\s+ACTIVE' % re.escape(name), table), (name, table)


def delete_play(out):
    """What boot.yml printed for the first play it imports from delete.yml."""
    return out.split("PLAY [Delete | keystone + nova-api lookup (controller)]", 1)[1].split("PLAY [", 1)[0]


def test_a_rerun_changes_nothing_and_a_new_item_boots_alone(fleet):
    before = step_count(fleet)
    res = run(fleet, FLEET)
    assert all(changed == 0 and failed == 0 for changed, _u, failed in recap(res.out).values()), recap(res.out)
    # no item with state absent: the delete plays boot.yml imports are skipped as a whole
    assert "skipping: no hosts matched" in delete_play(res.out) and "TASK [" not in delete_play(res.out)
    assert step_count(fleet) == before and sorted(live(fleet)) == sorted(NAMES)
    res = run(fleet, FLEET + [{"name": "extra"}])
    fleet["booted"].append("extra")
    rows = live(fleet)
    assert rows["extra"]["vm_state"] == "active"
    after = step_count(fleet)
    assert {u: n for u, n in after.items() if u in before} == before     # no step of the others ran
    assert (fleet["out"] / "extra.txt").read_text().split()[1] == "extra"
    built = [h for h, (changed, _u, _f) in recap(res.out).items() if h.startswith("bfhv") and changed]
    assert built == [rows["extra"]["host"]], recap(res.out)


def test_an_item_with_state_absent_is_deleted_by_the_boot_run(fleet):
    extra = live(fleet)["extra"]
    res = run(fleet, FLEET + [{"name": "extra", "state": "absent"}])
    fleet["booted"].remove("extra")
    assert "TASK [" in delete_play(res.out)
    assert sorted(live(fleet)) == sorted(NAMES)
    cloud = fleet["cloud"]
    assert cloud.query("SELECT deleted FROM instances WHERE uuid = :u", u=extra["uuid"])[0]["deleted"] != 0
    assert ips(fleet, extra["uuid"]) == []
    assert cloud.query("SELECT COUNT(*) AS n FROM allocations WHERE consumer_id = :u", u=extra["uuid"])[0]["n"] == 0
    assert extra["uuid"] not in ssh(int(extra["host"][len("bfhv"):]), "ls /var/lib/bootflow/instances")


def test_the_inventory_plugin_lists_the_fleet_and_reaches_every_guest(fleet):
    """A second run, as a later job would: its hosts from bootflow.cloud.instances (after the hypervisors'
    inventory, so each instance jumps through its hypervisor), logged into with ansible's raw."""
    cloud = fleet["cloud"]
    source = fleet["base"] / "fleet.bootflow.yml"
    source.write_text("plugin: bootflow.cloud.instances\nstatuses: [ACTIVE]\n"
                      "keyed_groups:\n  - key: bootflow_metadata.role | default('none')\n    prefix: role\n"
                      "compose:\n  ansible_user: \"'root'\"\n  ansible_ssh_private_key_file: \"'%s'\"\n" % fleet["key"])
    proc = subprocess.run(["ansible", "-i", str(fleet["inv"]), "-i", str(source), "bootflow_status_active",
                           "-m", "raw", "-a", "hostname"], cwd=REPO, env=cloud.env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    for name in fleet["booted"]:
        assert re.search(r"^%s \| CHANGED \| rc=0 >>\s*\n%s\s*$" % (re.escape(name), re.escape(name)), proc.stdout, re.M), \
            (name, proc.stdout[-3000:])
    graph = subprocess.run(["ansible-inventory", "-i", str(fleet["inv"]), "-i", str(source), "--graph", "role_web"],
                           cwd=REPO, env=cloud.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=120, check=True).stdout
    assert sorted(re.findall(r"--(web-\d)", graph)) == ["web-1", "web-2", "web-3"], graph


def test_within_a_list_failures_stay_with_their_instance(fleet):
    """A host refuses to start QEMU: its builds are rescheduled while the others reach ACTIVE. An item no host
    can take ends in ERROR with No valid host; an item whose min_count cannot be met leaves nothing. The run
    fails at its end, after everything else was built, with the table saying why."""
    target = HOSTS[0]
    before_hosts = host_contents(target)
    items = [{"name": "f", "count": 3}, {"name": "nowhere", "availability_zone": "mars"},
             {"name": "few", "count": 2, "min_count": 2, "availability_zone": "mars"}]
    flag(target, "fail-start")
    try:
        res = run(fleet, items, check=False)
    finally:
        flag(target, "fail-start", on=False)
    assert res.rc != 0
    rows = live(fleet)
    for name in ("f-1", "f-2", "f-3"):
        assert rows[name]["vm_state"] == "active" and rows[name]["host"] != hostname(target), rows[name]
    fleet["booted"] += ["f-1", "f-2", "f-3", "nowhere"]
    retried = [n for n in ("f-1", "f-2", "f-3")
               if hostname(target) in ((json.loads(rows[n]["request"]) if isinstance(rows[n]["request"], str)
                                        else rows[n]["request"]).get("retry") or {}).get("hosts", [])]
    assert retried, "no build of the list went to %s first" % hostname(target)
    assert rows["nowhere"]["vm_state"] == "error"
    fault = rows["nowhere"]["fault"]
    fault = json.loads(fault) if isinstance(fault, str) else fault
    assert "No valid host" in fault["message"]
    assert "few-1" not in rows and "few-2" not in rows
    assert fleet["cloud"].query("SELECT COUNT(*) AS n FROM allocations a JOIN instances i ON i.uuid = a.consumer_id "
                                "WHERE i.name LIKE 'few-%'")[0]["n"] == 0
    # the refusing host holds nothing of the failed builds, and the report says what is not ACTIVE
    assert host_contents(target) == before_hosts
    assert re.search(r'"nowhere\s+-\s+-\s+ERROR\s+.*No valid host', res.out), res.out[-3000:]
    assert re.search(r'"few-1\s+-\s+-\s+ABSENT\s+.*min_count', res.out), res.out[-3000:]
    assert "3 of 6 instances are not ACTIVE" in res.out


@pytest.mark.parametrize("items, extra, message", [
    ([{"name": "dup"}, {"name": "dup"}], {}, "names in one request must be unique"),
    ([{"name": "ok"}, {"name": "z", "count": 0}], {}, "count must be at least 1"),
    ([{"name": "ok"}, {"name": "z", "count": -2}], {}, "count must be at least 1"),
    ([{"name": "ok"}, {"name": "z", "key_name": "nobody-has-this-key"}], {}, "nobody-has-this-key"),
    ([{"name": "ok"}, {"name": "web", "count": 2}, {"name": "web-2"}], {}, "web-2 is also given"),
])
def test_bad_input_in_the_list_is_refused_before_any_host_is_touched(fleet, items, extra, message):
    before = {n: host_contents(n) for n in HOSTS}
    names = set(live(fleet))
    res = run(fleet, items, check=False, **extra)
    assert res.rc != 0 and message in res.out, res.out[-3000:]
    assert "PLAY [Boot | nova-compute on the chosen hosts" not in res.out
    assert set(live(fleet)) == names
    assert {n: host_contents(n) for n in HOSTS} == before


def test_a_malformed_public_key_is_refused(fleet):
    res = fleet["cloud"].play(KEYPAIR_PB, fleet["inv"], "-e", json.dumps({"kp_name": "bad", "kp_public_key": "ssh-ed25519 AAAAnotbase64!"}),
                              check=False)
    assert res.rc != 0 and "public key" in res.out.lower(), res.out[-2000:]


def test_a_host_that_does_not_answer_does_not_sink_the_list(fleet):
    """A host cannot be reached (this run's inventory gives it an address nobody answers on): the build
    handed to it never starts, the conductor on the controller reschedules it - here it was forced onto that
    host, so no alternate is left and it ends in ERROR, with the claim and the port released and the
    residue recorded - while the other instance of the list is built. When the host answers again,
    hypervisors.yml closes the record."""
    cloud = fleet["cloud"]
    free = {host: total - used for host, (total, used, _n) in cloud.capacity().items()}
    dead = int(max(free, key=free.get)[len("bfhv"):])      # the host with room for the forced instance
    assert free[hostname(dead)] >= 128 and sum(1 for f in free.values() if f >= 128) >= 2, free
    inv = fleet["base"] / "inventory-dead.ini"
    inv.write_text(fleet["inv"].read_text().replace("ansible_host=10.98.%d.2 " % dead, "ansible_host=10.98.%d.99 " % dead))
    vars_file = fleet["base"] / "dead.json"
    vars_file.write_text(json.dumps({"bootflow_instances": [{"name": "lost", "availability_zone": "nova:%s" % hostname(dead)},
                                                            {"name": "kept"}],
                                     "bootflow_volume_size_gb": 0, "bootflow_service_down_time": 0}))
    res = cloud.play("boot.yml", inv, "-e", "@%s" % vars_file, check=False)
    assert res.rc != 0
    fleet["booted"] += ["lost", "kept"]
    rows = live(fleet)
    assert rows["kept"]["vm_state"] == "active" and rows["kept"]["host"] != hostname(dead)
    assert (rows["lost"]["vm_state"], rows["lost"]["host"]) == ("error", None)
    assert "did not finish the build" in res.out and re.search(r'"lost\s+-\s+-\s+ERROR\s+\S+\s+failed on %s' % hostname(dead), res.out)
    uuid = rows["lost"]["uuid"]
    assert cloud.query("SELECT COUNT(*) AS n FROM allocations WHERE consumer_id = :u", u=uuid)[0]["n"] == 0
    assert ips(fleet, uuid) == []
    (record,) = cloud.query("SELECT host, done_at FROM host_cleanups WHERE instance_uuid = :u", u=uuid)
    assert record == {"host": hostname(dead), "done_at": None}
    cloud.play("hypervisors.yml", fleet["inv"])
    assert cloud.query("SELECT COUNT(*) AS n FROM host_cleanups WHERE done_at IS NULL")[0]["n"] == 0


def test_delete_with_the_list_leaves_hosts_and_db_as_before(fleet):
    items = FLEET + [{"name": "extra"}, {"name": "f", "count": 3}, {"name": "nowhere"}, {"name": "lost"}, {"name": "kept"}]
    fleet["cloud"].play("delete.yml", fleet["inv"], "-e", "@%s" % _vars(fleet, items))
    assert live(fleet) == {}
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
        assert ssh(n, "cat /var/lib/bootflow/dhcp/*/leases 2>/dev/null || true").strip() == ""
    cloud = fleet["cloud"]
    assert cloud.query("SELECT COUNT(*) AS n FROM ports")[0]["n"] == 0
    assert cloud.query("SELECT COUNT(*) AS n FROM allocations")[0]["n"] == 0
    assert cloud.query("SELECT COUNT(*) AS n FROM server_group_members")[0]["n"] == 0


def _vars(fleet, items):
    path = fleet["base"] / "delete-vars.json"
    path.write_text(json.dumps({"bootflow_instances": items}))
    return path
