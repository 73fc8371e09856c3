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
The 20 racing boots are in test_scheduling_race.py (hosts bfhv44-46).

Real everything: libvirtd, QEMU TCG guests, dnsmasq, sshd on the test hosts, SQLite. The schedule
task's result is read from ``boot.yml -v`` output.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess

import pytest

from conftest import REPO, TESTHOST, run_playbook
from sched_helpers import (EMPTY, SCHED_PLAYBOOK, SCHEDULE_TASK, Cloud, fresh_hosts, host_contents, hostname, purge,
                           running_domains, task_result, write_inventory)

HOSTS = (41, 42, 43)
WEIGH_MB = {41: 1024, 42: 2048, 43: 192}      # memory for guests per host
WEIGH_VARS = {43: "bootflow_host_availability_zone=az2"}


@pytest.fixture(scope="module", autouse=True)
def purge_hosts_at_the_end():
    yield
    purge(HOSTS)


# --- weighing and filtering ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def weigh(tmp_path_factory):
    fresh_hosts(HOSTS)
    base = tmp_path_factory.mktemp("bootflow-sched")
    cloud = Cloud(base)
    inv = write_inventory(base / "inventory.ini", HOSTS, WEIGH_MB, WEIGH_VARS)
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


def test_a_frozen_host_does_not_hold_the_boot(weigh):
    """A host that accepted SSH and then went silent: its processes are stopped (SIGSTOP) while the SSH master
    connection of an earlier task is still open, so the connect timeout never applies. The site's ansible.cfg
    has no ServerAlive here: the heartbeat's own bound (6 x bootflow_heartbeat_timeout) must end the wait."""
    cloud, inv = weigh["cloud"], weigh["inv"]
    # its own master connection (the earlier plays' masters to bfhv41 have ServerAlive, from ansible.cfg)
    env = dict(cloud.env, ANSIBLE_SSH_ARGS="-o ControlMaster=auto -o ControlPersist=120s",
               ANSIBLE_SSH_CONTROL_PATH_DIR=str(cloud.base / "cp-frozen"))
    ping = subprocess.run(["ansible", "-i", str(inv), "bfhv41", "-m", "ansible.builtin.ping"], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    assert ping.returncode == 0, ping.stdout      # the master connection to bfhv41 is up
    cloud.query_exec("UPDATE compute_nodes SET updated_at = :t WHERE hostname = 'bfhv41'",
                     t=(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
                        - datetime.timedelta(minutes=10)).isoformat(sep=" "))
    pids = subprocess.run(["ip", "netns", "pids", "bfhv41"], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    assert pids
    for pid in pids:
        os.kill(int(pid), signal.SIGSTOP)
    try:
        weigh["names"].append("sched-g")
        res = run_playbook(cloud.cmd("boot.yml", inv, "-v", "-e", "bootflow_instance_name=sched-g",
                                     "-e", "bootflow_heartbeat_timeout=2"), env)
    finally:
        for pid in pids:
            os.kill(int(pid), signal.SIGCONT)
    assert res.rc == 0, res.out[-4000:]
    status, sched = task_result(res.out, SCHEDULE_TASK)
    assert status == "changed" and sched["host"] != "bfhv41", sched
    assert sched["rejected"]["bfhv41"].startswith("ComputeFilter: down"), sched
    # the heartbeat to bfhv41 was given up after 12 s (the task's timeout), not refused or unreachable
    heartbeat = res.out[res.out.index("heartbeats of the candidate hosts"):res.out.index(SCHEDULE_TASK)]
    assert re.search(r'"period": 12\b', heartbeat), heartbeat[-3000:]


def test_delete_leaves_the_hosts_empty(weigh):
    cloud = weigh["cloud"]
    assert weigh["names"], "no boot ran"
    for name in weigh["names"]:
        cloud.play("delete.yml", weigh["inv"], "-e", "bootflow_instance_name=%s" % name)
    for n in HOSTS:
        assert host_contents(n) == EMPTY, hostname(n)
    assert cloud.query("SELECT consumer_id FROM allocations") == []
    assert cloud.query("SELECT name FROM instances WHERE deleted = 0") == []
