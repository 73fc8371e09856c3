# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Day-2 power actions (playbooks/server_action.yml) on one real guest on test host bfhv248, each observed in
the guest, not only in the database: stop and start (the domain stops, the guest boots again and renews its
lease), a forbidden transition refused with nothing changed, soft and hard reboots (a second boot on the
console; the soft one after a clean ACPI power-off), pause (the guest stops answering HTTP) and unpause,
an action interrupted after nova-api saved its task_state (finished by running it again; another action is
refused), suspend and resume (its uptime carries on: no new boot), check mode, a rebuild refused while paused, a rebuild
from a second image (its name on the console, the same UUID, IP and MAC), a rebuild whose spawn the host refuses
(ERROR with the fault) and a second one that brings it back, the console log action, snapshots (of the running
guest: a marker it wrote on its disk shows in a new instance booted from the image; a taken name refused; a cold copy
of the stopped guest; check mode; an upload a dead controller left is made again), resizes (refused while paused or
without a flavor; a spawn the host refuses rolled back; the new memory in the guest with both claims held, then
reverted or confirmed; confirmed by hypervisors.yml after the operator's window; an instance deleted while waiting
for its confirm frees both claims), and delete.yml of a suspended instance. The tests run in file order and share
the instance."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from conftest import INVENTORY_SH, REPO, Env, console, wait_console
from image_helpers import GUEST_RAW
from sched_helpers import flag, fresh_hosts, install_fault_hook, purge

HOST_N = 248
NAME = "d2-vm"
KEYPAIR_PB = os.path.join(REPO, "tests", "integration", "playbooks", "keypair.yml")
IMAGE_OPS_PB = os.path.join(REPO, "tests", "integration", "playbooks", "image_ops.yml")
VARIANT_SH = os.path.join(REPO, "tests", "guest", "variant.sh")


@pytest.fixture(scope="module")
def day2(tmp_path_factory):
    base = tmp_path_factory.mktemp("bootflow-day2")
    try:
        fresh_hosts([HOST_N])
        install_fault_hook(HOST_N)          # a flag file makes the host refuse to start QEMU
        inventory = base / "inventory.ini"
        inventory.write_text(subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE,
                                            text=True).stdout)
        env = Env(base / "state", inventory, HOST_N)
        env.base = base
        # the default flavors (m1.tiny, m1.small) and m1.medium, for a second resize
        env.play("bootstrap.yml", "-e", json.dumps({"bootflow_bootstrap_flavors": [
            {"name": "m1.tiny", "vcpus": 1, "ram_mb": 128, "disk_gb": 1},
            {"name": "m1.small", "vcpus": 1, "ram_mb": 256, "disk_gb": 2},
            {"name": "m1.medium", "vcpus": 2, "ram_mb": 384, "disk_gb": 2}]}))
        env.play("hypervisors.yml")
        key = base / "id_day2"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "day2-test", "-f", str(key)], check=True)
        env.play(KEYPAIR_PB, "-e", json.dumps({"kp_name": "ops", "kp_public_key": (base / "id_day2.pub").read_text().strip()}))
        env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": NAME, "bootflow_key_name": "ops",
                                               "bootflow_volume_size_gb": 0}))
        inst = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME)[0]
        ip = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]["ip"]
        wait_console(env, inst["uuid"], r"GUEST-SSH: up")
        try:
            yield {"env": env, "uuid": inst["uuid"], "ip": ip, "key": key}
        finally:
            flag(HOST_N, "fail-start", on=False)
            env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME, check=False)   # after a failed test
    finally:
        purge([HOST_N])


def act(day2, action, *args, check=True):
    return day2["env"].play("server_action.yml", "-e", json.dumps({"bootflow_instance_name": NAME,
                                                                   "bootflow_action": action}), *args, check=check)


def row(day2):
    return day2["env"].query("SELECT vm_state, task_state, power_state FROM instances WHERE uuid=?", day2["uuid"])[0]


def domstate(day2):
    return day2["env"].ssh("virsh -c qemu:///system domstate bootflow-%s" % day2["uuid"]).strip()


def boots(day2):
    return console(day2["env"], day2["uuid"]).count("GUEST-INIT: started")


def http(day2):
    """The guest's page, fetched inside the host's namespace ('' when it does not answer within 5 s)."""
    return day2["env"].ssh("timeout 5 busybox wget -qO- http://%s/ || true" % day2["ip"], check=False)


def guest_ssh(day2, command):
    """``command`` in the guest, over SSH from inside the host's namespace."""
    return day2["env"].ssh("ssh -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 "
                           "-o ConnectionAttempts=6 root@%s %s" % (day2["key"], day2["ip"], command))


def guest_uptime(day2):
    return float(guest_ssh(day2, "cat /proc/uptime").split()[0])


def lease_expiry(day2):
    port = day2["env"].query("SELECT mac, network_id FROM ports WHERE instance_uuid=?", day2["uuid"])[0]
    leases = day2["env"].ssh("cat /var/lib/bootflow/dhcp/%s/leases" % port["network_id"])
    return [int(line.split()[0]) for line in leases.splitlines() if line.split()[1:2] == [port["mac"]]]


def steps(day2, action):
    return [(r["service"], r["host"], r["vm_state_from"], r["task_state_from"], r["vm_state"], r["task_state"])
            for r in day2["env"].query("SELECT * FROM instance_steps WHERE instance_uuid=? AND action=? ORDER BY id",
                                       day2["uuid"], action)]


def wait_lines(day2, line, count, timeout=120):
    """Wait until the console log holds ``line`` at least ``count`` times (every boot appends to it)."""
    deadline = time.monotonic() + timeout
    while True:
        text = console(day2["env"], day2["uuid"])
        if text.count(line) >= count:
            return
        assert time.monotonic() < deadline, "%r not %d times on the console in %d s:\n%s" % (
            line, count, timeout, text[-3000:])
        time.sleep(1)


def wait_boots(day2, count):
    wait_lines(day2, "GUEST-INIT: started", count)


def test_stop_powers_the_guest_off_and_records_both_transitions(day2):
    env = day2["env"]
    assert (row(day2)["vm_state"], domstate(day2)) == ("active", "running")
    res = act(day2, "stop")
    assert row(day2) == {"vm_state": "stopped", "task_state": None, "power_state": "SHUTDOWN"}
    assert domstate(day2) == "shut off"
    assert "GUEST-POWER: off" in console(env, day2["uuid"])     # an ACPI shutdown, not a power cut
    assert steps(day2, "stop") == [("nova-api", None, "active", None, "active", "powering-off"),
                                   ("nova-compute", env.host, "active", "powering-off", "stopped", None)]
    assert re.search(r'"%s\s+%s\s+\S+\s+SHUTOFF' % (NAME, env.host), res.out), res.out[-2000:]   # the closing table
    again = act(day2, "stop")
    assert again.recap()[env.host]["changed"] == 0, again.out[-3000:]
    assert len(steps(day2, "stop")) == 3      # the compute row of the no-op; no second nova-api row


def test_pause_while_stopped_is_refused_and_changes_nothing(day2):
    env = day2["env"]
    before = (env.full_db_snapshot(), domstate(day2))
    res = act(day2, "pause", check=False)
    assert res.rc != 0
    assert "Cannot 'pause' instance %s (%s) while it is in vm_state stopped" % (NAME, day2["uuid"]) in res.out
    assert (env.full_db_snapshot(), domstate(day2)) == before


def test_a_start_the_host_refuses_puts_the_task_state_back(day2):
    env = day2["env"]
    flag(HOST_N, "fail-start")
    try:
        res = act(day2, "start", check=False)
    finally:
        flag(HOST_N, "fail-start", on=False)
    assert res.rc != 0 and "injected fault: this host refuses to start QEMU" in res.out, res.out[-3000:]
    assert row(day2) == {"vm_state": "stopped", "task_state": None, "power_state": "SHUTDOWN"}
    assert domstate(day2) == "shut off"
    assert steps(day2, "start") == [("nova-api", None, "stopped", None, "stopped", "powering-on")]


def test_a_boot_rerun_leaves_a_stopped_instance_stopped_and_does_not_fail(day2):
    res = day2["env"].play("boot.yml", "-e", json.dumps({"bootflow_instance_name": NAME, "bootflow_key_name": "ops",
                                                         "bootflow_volume_size_gb": 0}))
    assert all(r["changed"] == 0 for r in res.recap().values()), res.out[-3000:]
    assert (row(day2)["vm_state"], domstate(day2)) == ("stopped", "shut off")


def test_start_boots_the_guest_again_and_renews_its_lease(day2):
    expiry = lease_expiry(day2)
    act(day2, "start")
    assert row(day2) == {"vm_state": "active", "task_state": None, "power_state": "RUNNING"}
    assert domstate(day2) == "running"
    wait_boots(day2, 2)
    wait_lines(day2, "GUEST-DHCP-LEASE: ", 2)
    assert max(lease_expiry(day2)) > max(expiry)
    assert "bootflow guest" in http(day2)


def test_soft_reboot_shuts_down_cleanly_and_boots_again(day2):
    n, offs = boots(day2), console(day2["env"], day2["uuid"]).count("GUEST-POWER: off")
    res = act(day2, "reboot_soft")
    wait_boots(day2, n + 1)
    assert console(day2["env"], day2["uuid"]).count("GUEST-POWER: off") == offs + 1
    assert row(day2) == {"vm_state": "active", "task_state": None, "power_state": "RUNNING"}
    assert "did not shut down" not in res.out
    assert steps(day2, "reboot_soft")[0][-1] == "rebooting"


def test_hard_reboot_boots_again_without_a_shutdown(day2):
    wait_lines(day2, "GUEST-HTTP: up", 3)
    n, offs = boots(day2), console(day2["env"], day2["uuid"]).count("GUEST-POWER: off")
    act(day2, "reboot_hard")
    wait_boots(day2, n + 1)
    assert console(day2["env"], day2["uuid"]).count("GUEST-POWER: off") == offs
    assert row(day2)["vm_state"] == "active"
    assert steps(day2, "reboot_hard")[0][-1] == "rebooting_hard"


def test_pause_stops_the_guest_answering_and_unpause_brings_it_back(day2):
    wait_lines(day2, "GUEST-SSH: up", 4)
    assert "bootflow guest" in http(day2)
    act(day2, "pause")
    assert (row(day2)["vm_state"], row(day2)["power_state"], domstate(day2)) == ("paused", "PAUSED", "paused")
    assert http(day2) == ""
    act(day2, "unpause")
    assert (row(day2)["vm_state"], domstate(day2)) == ("active", "running")
    assert "bootflow guest" in http(day2)


def test_an_action_interrupted_after_nova_api_saved_it_is_finished_by_running_it_again(day2):
    env = day2["env"]
    env.execute("UPDATE instances SET task_state='pausing' WHERE uuid=?", day2["uuid"])   # the controller died there
    res = act(day2, "stop", check=False)
    assert res.rc != 0 and "while it is in task_state pausing" in res.out, res.out[-3000:]
    assert domstate(day2) == "running"
    act(day2, "pause")
    assert (row(day2)["vm_state"], row(day2)["task_state"], domstate(day2)) == ("paused", None, "paused")
    act(day2, "unpause")
    assert (row(day2)["vm_state"], domstate(day2)) == ("active", "running")


def test_check_mode_says_what_would_change_and_changes_nothing(day2):
    env = day2["env"]
    before = (env.full_db_snapshot(), domstate(day2))
    res = act(day2, "suspend", "--check", "--diff")
    assert res.recap()[env.host]["changed"] == 1, res.out[-3000:]
    assert "+vm_state: suspended" in res.out
    assert (env.full_db_snapshot(), domstate(day2)) == before


def test_suspend_and_resume_carry_the_guest_on_where_it_was(day2):
    env = day2["env"]
    up, n = guest_uptime(day2), boots(day2)
    act(day2, "suspend")
    assert row(day2) == {"vm_state": "suspended", "task_state": None, "power_state": "SHUTDOWN"}
    assert domstate(day2) == "shut off"
    assert "Managed save:   yes" in env.ssh("virsh -c qemu:///system dominfo bootflow-%s" % day2["uuid"])
    act(day2, "resume")
    assert (row(day2)["vm_state"], domstate(day2)) == ("active", "running")
    assert guest_uptime(day2) >= up
    assert boots(day2) == n


def test_rebuild_while_paused_is_refused_and_changes_nothing(day2):
    env = day2["env"]
    act(day2, "pause")
    before = (env.full_db_snapshot(), domstate(day2))
    res = act(day2, "rebuild", "-e", "bootflow_rebuild_image=bootflow-guest", check=False)
    assert res.rc != 0
    assert "Cannot 'rebuild' instance %s (%s) while it is in vm_state paused" % (NAME, day2["uuid"]) in res.out
    assert (env.full_db_snapshot(), domstate(day2)) == before
    act(day2, "unpause")


def test_rebuild_spawns_the_new_image_with_the_same_uuid_ip_and_mac(day2):
    env = day2["env"]
    v2 = env.base / "guest-v2.qcow2"
    subprocess.run([VARIANT_SH, GUEST_RAW, str(v2), "guest-v2"], check=True)
    out = env.base / "images.json"
    env.play(IMAGE_OPS_PB, "-e", json.dumps({"register_images": [{"name": "guest-v2", "filename": str(v2)}],
                                             "out": str(out)}), "--limit", "localhost")
    port = env.query("SELECT id, mac, ip FROM ports WHERE instance_uuid=?", day2["uuid"])
    n = boots(day2)
    assert console(env, day2["uuid"]).count("GUEST-IMAGE: bootflow-guest") == n
    act(day2, "rebuild", "-e", "bootflow_rebuild_image=guest-v2")
    wait_lines(day2, "GUEST-IMAGE: guest-v2", 1)
    wait_lines(day2, "GUEST-DHCP-LEASE: iface=eth0 ip=%s " % day2["ip"], n + 1)
    inst = env.query("SELECT i.vm_state, i.task_state, i.power_state, m.name AS image FROM instances i "
                     "JOIN images m ON m.id = i.image_id WHERE i.uuid=?", day2["uuid"])[0]
    assert inst == {"vm_state": "active", "task_state": None, "power_state": "RUNNING", "image": "guest-v2"}
    assert env.query("SELECT id, mac, ip FROM ports WHERE instance_uuid=?", day2["uuid"]) == port
    assert "GUEST-INSTANCE-ID: %s" % day2["uuid"] in console(env, day2["uuid"]).split("GUEST-IMAGE: guest-v2")[1]
    assert steps(day2, "rebuild") == [("nova-api", None, "active", None, "active", "rebuilding"),
                                      ("nova-compute", env.host, "active", "rebuilding", "active", "rebuild_spawning")]
    assert steps(day2, "domain")[-1][2:] == ("active", "rebuild_spawning", "active", None)
    # the overlay's backing file is the new image's base (its cache name: sha1 of the image ID, as Nova's)
    disk = env.ssh("qemu-img info -U --output=json /var/lib/bootflow/instances/%s/disk" % day2["uuid"])
    v2_id = env.query("SELECT id FROM images WHERE name='guest-v2'")[0]["id"]
    assert json.loads(disk)["backing-filename"] == "/var/lib/bootflow/instances/_base/" + hashlib.sha1(
        v2_id.encode()).hexdigest()
    # a re-run of boot.yml with the image it was created from still finds the same request
    res = env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": NAME, "bootflow_key_name": "ops",
                                                 "bootflow_volume_size_gb": 0}))
    assert all(r["changed"] == 0 for r in res.recap().values()), res.out[-3000:]


def test_a_rebuild_whose_spawn_fails_ends_in_error_and_a_second_rebuild_brings_it_back(day2):
    env = day2["env"]
    flag(HOST_N, "fail-start")
    try:
        res = act(day2, "rebuild", "-e", "bootflow_rebuild_image=bootflow-guest", check=False)
    finally:
        flag(HOST_N, "fail-start", on=False)
    assert res.rc != 0 and "injected fault: this host refuses to start QEMU" in res.out, res.out[-3000:]
    inst = env.query("SELECT vm_state, task_state, fault FROM instances WHERE uuid=?", day2["uuid"])[0]
    assert (inst["vm_state"], inst["task_state"]) == ("error", None)
    fault = inst["fault"] if isinstance(inst["fault"], dict) else json.loads(inst["fault"])
    assert fault["message"].startswith("rebuild to bootflow-guest failed at '28 | nova-compute -> libvirt"), fault
    n = console(env, day2["uuid"]).count("GUEST-IMAGE: bootflow-guest")
    act(day2, "rebuild", "-e", "bootflow_rebuild_image=bootflow-guest")     # allowed from ERROR, as in Nova
    wait_lines(day2, "GUEST-IMAGE: bootflow-guest", n + 1)
    inst = env.query("SELECT vm_state, task_state, power_state, fault FROM instances WHERE uuid=?", day2["uuid"])[0]
    assert inst == {"vm_state": "active", "task_state": None, "power_state": "RUNNING", "fault": None}


def test_console_action_prints_the_tail_of_the_log(day2):
    res = act(day2, "console", "-e", "bootflow_console_lines=400")
    assert res.out.count("GUEST-INIT: started") == boots(day2) >= 5
    short = act(day2, "console", "-e", "bootflow_console_lines=1")
    assert "GUEST-INIT: started" not in short.out


def image_row(env, name):
    rows = env.query("SELECT * FROM images WHERE name=? AND status != 'deleted'", name)
    assert len(rows) <= 1, rows
    if rows and isinstance(rows[0]["properties"], str):
        rows[0]["properties"] = json.loads(rows[0]["properties"])
    return rows[0] if rows else None


def file_digests(path):
    md5, sha512 = hashlib.md5(), hashlib.sha512()   # noqa: S324  # Glance's checksum is md5
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


def snapshot_files(day2):
    return day2["env"].ssh("ls /var/lib/bootflow/instances/%s" % day2["uuid"]).split()


def test_a_snapshot_of_the_running_guest_carries_its_disk_into_a_new_instance(day2):
    env = day2["env"]
    marker = "mark-%s" % os.urandom(4).hex()
    assert "marker written: %s" % marker in guest_ssh(day2, "guest-marker %s" % marker)
    up, n = guest_uptime(day2), boots(day2)
    base_id = env.query("SELECT image_id FROM instances WHERE uuid=?", day2["uuid"])[0]["image_id"]
    act(day2, "snapshot", "-e", "bootflow_snapshot_name=d2-snap")
    # the guest ran on: no new boot, its uptime carried on, the instance active with no task
    assert (domstate(day2), boots(day2), row(day2)["vm_state"], row(day2)["task_state"]) == ("running", n, "active", None)
    assert guest_uptime(day2) >= up
    assert steps(day2, "snapshot") == [("nova-api", None, "active", None, "active", "image_snapshot"),
                                       ("nova-compute", env.host, "active", "image_snapshot", "active", None)]
    image = image_row(env, "d2-snap")
    project = env.query("SELECT project_id FROM instances WHERE uuid=?", day2["uuid"])[0]["project_id"]
    assert (image["status"], image["disk_format"], image["visibility"], image["owner"]) == (
        "active", "qcow2", "private", project)
    props = image["properties"]
    assert (props["image_type"], props["instance_uuid"], props["base_image_ref"]) == ("snapshot", day2["uuid"], base_id)
    # the registry's file is what its hashes say, and a self-contained qcow2
    assert file_digests(image["location"]) == (image["checksum"], image["os_hash_value"])
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", image["location"]], check=True,
                                     stdout=subprocess.PIPE, text=True).stdout)
    assert info["format"] == "qcow2" and "backing-filename" not in info
    assert "snapshot.qcow2" not in snapshot_files(day2)     # the host's copy is gone
    # a re-run finds the image it made: nothing changes
    again = act(day2, "snapshot", "-e", "bootflow_snapshot_name=d2-snap")
    assert again.recap()[env.host]["changed"] == 0 and image_row(env, "d2-snap")["id"] == image["id"]
    # a new instance from the snapshot shows the marker the first guest wrote on its disk
    env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": "d2-from-snap", "bootflow_image": "d2-snap",
                                           "bootflow_volume_size_gb": 0}))
    try:
        second = env.query("SELECT uuid, image_id FROM instances WHERE name='d2-from-snap' AND deleted=0")[0]
        assert second["image_id"] == image["id"]
        wait_console(env, second["uuid"], r"GUEST-DISK-MARKER: %s" % marker)
    finally:
        env.play("delete.yml", "-e", "bootflow_instance_name=d2-from-snap")


def test_a_snapshot_name_taken_by_another_image_is_refused_and_changes_nothing(day2):
    env = day2["env"]
    before = (env.full_db_snapshot(), domstate(day2), snapshot_files(day2))
    res = act(day2, "snapshot", "-e", "bootflow_snapshot_name=guest-v2", check=False)
    assert res.rc != 0
    assert "An image named guest-v2 already exists" in res.out and "choose another name" in res.out, res.out[-3000:]
    assert (env.full_db_snapshot(), domstate(day2), snapshot_files(day2)) == before


def test_a_snapshot_of_a_stopped_guest_is_a_cold_copy_and_check_mode_copies_nothing(day2):
    env = day2["env"]
    act(day2, "stop")
    try:
        before = env.full_db_snapshot()
        act(day2, "snapshot", "-e", "bootflow_snapshot_name=d2-cold", "--check")
        assert env.full_db_snapshot() == before and image_row(env, "d2-cold") is None
        res = act(day2, "snapshot", "-e", "bootflow_snapshot_name=d2-cold", "-v")
        assert '"method": "cold"' in res.out, res.out[-3000:]
        image = image_row(env, "d2-cold")
        assert image["status"] == "active"
        assert file_digests(image["location"]) == (image["checksum"], image["os_hash_value"])
        assert (row(day2)["vm_state"], domstate(day2)) == ("stopped", "shut off")
        assert "snapshot.qcow2" not in snapshot_files(day2)
    finally:
        act(day2, "start")


def test_a_snapshot_a_dead_controller_left_uploading_is_made_again_under_its_name(day2):
    """The controller died mid-upload: the instance is left in image_uploading, its image record saving with no
    file, and its staging copy in the store. Running the snapshot again deletes that record and the staging copy and
    makes the image anew, instead of a Conflict on the name or an instance blocked in its task_state."""
    env = day2["env"]
    dead = image_row(env, "d2-cold")       # the previous test's image, made to look like a killed upload
    env.execute("UPDATE images SET status='saving', location=NULL, checksum=NULL WHERE id=?", dead["id"])
    env.execute("UPDATE instances SET task_state='image_uploading' WHERE uuid=?", day2["uuid"])
    store = os.path.dirname(dead["location"])
    staging = os.path.join(store, ".snapshot-%s-dead.part" % day2["uuid"])     # the dead run's staging copy
    with open(staging, "wb") as f:
        f.write(b"\0" * 4096)
    other = act(day2, "stop", check=False)
    assert other.rc != 0 and "while it is in task_state image_uploading" in other.out, other.out[-3000:]
    act(day2, "snapshot", "-e", "bootflow_snapshot_name=d2-cold")
    image = image_row(env, "d2-cold")
    assert image["id"] != dead["id"] and image["status"] == "active"
    assert env.query("SELECT status FROM images WHERE id=?", dead["id"])[0]["status"] == "deleted"
    assert not os.path.exists(staging) and not [f for f in os.listdir(store) if f.startswith(".snapshot-")]
    assert file_digests(image["location"]) == (image["checksum"], image["os_hash_value"])
    assert (row(day2)["vm_state"], row(day2)["task_state"], domstate(day2)) == ("active", None, "running")


def guest_mem(day2):
    """The memory each boot of the guest saw (GUEST-MEM lines, kB), in order."""
    return [int(m) for m in re.findall(r"GUEST-MEM: (\d+) kB", console(day2["env"], day2["uuid"]))]


def claims(day2):
    """The claims on the host: {consumer: (vcpus, memory_mb, disk_gb)}, the instance's under "instance"."""
    env = day2["env"]
    rows = env.query("SELECT a.consumer_id, a.vcpus, a.memory_mb, a.disk_gb FROM allocations a JOIN compute_nodes n "
                     "ON n.id = a.compute_node_id WHERE n.hostname=?", env.host)
    return {("instance" if r["consumer_id"] == day2["uuid"] else r["consumer_id"]):
            (r["vcpus"], r["memory_mb"], r["disk_gb"]) for r in rows}


def resize_state(day2):
    """(flavor, the last migration's status, vm_state, task_state) of the instance."""
    flavor, statuses, _ids = flavor_and_migration(day2)
    return flavor, statuses[-1] if statuses else None, row(day2)["vm_state"], row(day2)["task_state"]


def flavor_and_migration(day2):
    env = day2["env"]
    flavor = env.query("SELECT f.name FROM instances i JOIN flavors f ON f.id = i.flavor_id WHERE i.uuid=?",
                       day2["uuid"])[0]["name"]
    migs = env.query("SELECT id, status FROM migrations WHERE instance_uuid=? ORDER BY created_at", day2["uuid"])
    return flavor, [m["status"] for m in migs], [m["id"] for m in migs]


def resize_dir(day2):
    return day2["env"].ssh("test -d /var/lib/bootflow/instances/%s_resize && echo kept || echo none" % day2["uuid"]).strip()


TINY, SMALL = (1, 128, 1), (1, 256, 2)     # the test flavors m1.tiny and m1.small (vcpus, MB, GB)


def test_resize_while_paused_is_refused_and_changes_nothing(day2):
    env = day2["env"]
    act(day2, "pause")
    try:
        before = (env.full_db_snapshot(), domstate(day2), resize_dir(day2))
        res = act(day2, "resize", "-e", "bootflow_resize_flavor=m1.small", check=False)
        assert res.rc != 0 and "Cannot 'resize' instance %s" % NAME in res.out, res.out[-3000:]
        assert "while it is in vm_state paused (allowed: active, stopped)" in res.out
        assert (env.full_db_snapshot(), domstate(day2), resize_dir(day2)) == before
    finally:
        act(day2, "unpause")


def test_a_resize_to_no_flavor_or_a_missing_one_is_refused_and_changes_nothing(day2):
    env = day2["env"]
    before = (env.full_db_snapshot(), domstate(day2), resize_dir(day2))
    res = act(day2, "resize", check=False)
    assert res.rc != 0 and "A resize needs the new flavor (bootflow_resize_flavor)" in res.out, res.out[-3000:]
    res = act(day2, "resize", "-e", "bootflow_resize_flavor=m1.nope", check=False)
    assert res.rc != 0 and "Flavor m1.nope could not be found" in res.out, res.out[-3000:]
    assert "has no resize in progress" not in res.out       # the rollback of nothing says nothing
    assert (env.full_db_snapshot(), domstate(day2), resize_dir(day2)) == before


def test_a_resize_whose_new_flavor_the_host_refuses_to_start_is_rolled_back(day2):
    """The spawn with the new flavor fails (the host refuses to start QEMU once): the old disk, definition, flavor
    and claim come back, the guest runs again with its old memory, and the fault says what happened."""
    env = day2["env"]
    assert flavor_and_migration(day2)[0] == "m1.tiny" and claims(day2) == {"instance": TINY}
    n, mems = boots(day2), guest_mem(day2)
    flag(HOST_N, "fail-start-once")
    try:
        res = act(day2, "resize", "-e", "bootflow_resize_flavor=m1.small", check=False)
    finally:
        flag(HOST_N, "fail-start-once", on=False)
    assert res.rc != 0 and "was rolled back" in res.out and "refuses to start QEMU this once" in res.out, res.out[-3000:]
    assert "failed at '28 | nova-compute -> libvirt: define and start the domain" in res.out
    assert resize_state(day2) == ("m1.tiny", "error", "active", None)
    fault = env.query("SELECT fault FROM instances WHERE uuid=?", day2["uuid"])[0]["fault"]
    fault = fault if isinstance(fault, dict) else json.loads(fault)
    assert "resize to m1.small failed" in fault["message"] and fault["step"] == "resize"
    assert claims(day2) == {"instance": TINY} and resize_dir(day2) == "none"
    wait_boots(day2, n + 1)
    assert domstate(day2) == "running"
    wait_lines(day2, "GUEST-MEM:", len(mems) + 1)
    assert guest_mem(day2)[-1] == mems[-1]


def test_resize_gives_the_guest_the_new_memory_and_revert_brings_back_the_old(day2):
    env = day2["env"]
    n, mems = boots(day2), guest_mem(day2)
    act(day2, "resize", "-e", "bootflow_resize_flavor=m1.small")
    assert resize_state(day2) == ("m1.small", "finished", "resized", None)
    ids = flavor_and_migration(day2)[2]
    # both claims until the revert or the confirm: the new flavor the instance's, the old one its migration's
    assert claims(day2) == {"instance": SMALL, ids[-1]: TINY}
    assert resize_dir(day2) == "kept" and domstate(day2) == "running"
    wait_boots(day2, n + 1)
    wait_lines(day2, "GUEST-MEM:", len(mems) + 1)
    grown = guest_mem(day2)[-1]
    assert grown > mems[-1] + 100 * 1024, (mems, grown)          # 128 MB -> 256 MB of RAM
    assert steps(day2, "resize")[-2:] == [("nova-api", None, "active", None, "active", "resize_prep"),
                                          ("nova-compute", env.host, "active", "resize_migrating", "active",
                                           "resize_finish")]
    assert steps(day2, "domain")[-1][2:] == ("active", "resize_finish", "resized", None)
    res = act(day2, "resize", "-e", "bootflow_resize_flavor=m1.small")          # a re-run: waits for the confirm
    assert res.recap()[env.host]["changed"] == 0
    act(day2, "revert_resize")
    assert resize_state(day2) == ("m1.tiny", "reverted", "active", None)
    assert claims(day2) == {"instance": TINY} and resize_dir(day2) == "none"
    wait_boots(day2, n + 2)
    wait_lines(day2, "GUEST-MEM:", len(mems) + 2)
    assert guest_mem(day2)[-1] == mems[-1] and domstate(day2) == "running"
    again = act(day2, "revert_resize")
    assert again.recap()[env.host]["changed"] == 0


def test_confirm_keeps_the_new_flavor_and_frees_the_old_claim_and_disk(day2):
    env = day2["env"]
    act(day2, "resize", "-e", "bootflow_resize_flavor=m1.small")
    assert claims(day2)["instance"] == SMALL and len(claims(day2)) == 2
    act(day2, "confirm_resize")
    assert resize_state(day2) == ("m1.small", "confirmed", "active", None)
    assert claims(day2) == {"instance": SMALL} and resize_dir(day2) == "none" and domstate(day2) == "running"
    for action, extra in (("confirm_resize", ()), ("resize", ("-e", "bootflow_resize_flavor=m1.small"))):
        res = act(day2, action, *extra)
        assert res.recap()[env.host]["changed"] == 0, (action, res.out[-2000:])
    # a boot.yml re-run naming the first flavor (m1.tiny, the default) still finds the instance, and leaves it
    env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": NAME, "bootflow_key_name": "ops",
                                           "bootflow_volume_size_gb": 0}))
    assert resize_state(day2) == ("m1.small", "confirmed", "active", None) and claims(day2) == {"instance": SMALL}


def test_hypervisors_yml_confirms_a_resize_that_waited_longer_than_the_window(day2):
    """nova-compute's periodic _poll_unconfirmed_resizes: the operator's resize_confirm_window (seconds) decides."""
    env = day2["env"]
    act(day2, "resize", "-e", "bootflow_resize_flavor=m1.medium")
    config = env.state_dir / "bootflow.yml"
    try:
        config.write_text("compute:\n  resize_confirm_window: 3600\n")
        config.chmod(0o600)
        env.play("hypervisors.yml")           # waited less than an hour: left waiting
        assert resize_state(day2) == ("m1.medium", "finished", "resized", None) and len(claims(day2)) == 2
        config.write_text("compute:\n  resize_confirm_window: 1\n")
        time.sleep(2)
        res = env.play("hypervisors.yml")
        assert "confirming the resize of %s" % NAME in res.out, res.out[-3000:]
        assert resize_state(day2) == ("m1.medium", "confirmed", "active", None)
        assert claims(day2) == {"instance": (2, 384, 2)} and resize_dir(day2) == "none"
        assert steps(day2, "confirm_resize")[-1][2:] == ("resized", None, "active", None)
    finally:
        config.unlink()


def test_deleting_an_instance_waiting_for_its_resize_confirm_frees_both_claims_and_the_kept_disk(day2):
    env = day2["env"]
    env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": "d2-resized", "bootflow_volume_size_gb": 0}))
    other = env.query("SELECT uuid FROM instances WHERE name='d2-resized' AND deleted=0")[0]["uuid"]
    env.play("server_action.yml", "-e", json.dumps({"bootflow_instance_name": "d2-resized", "bootflow_action": "resize",
                                                    "bootflow_resize_flavor": "m1.small"}))
    mig = env.query("SELECT id, status FROM migrations WHERE instance_uuid=?", other)[0]
    assert mig["status"] == "finished" and len(claims(day2)) == 3      # ours, and the other one's two
    env.play("delete.yml", "-e", "bootflow_instance_name=d2-resized")
    assert claims(day2) == {"instance": (2, 384, 2)}
    assert env.query("SELECT status FROM migrations WHERE id=?", mig["id"])[0]["status"] == "confirmed"
    assert sorted(env.ssh("ls /var/lib/bootflow/instances").split()) == sorted([day2["uuid"], "_base", "locks"])


def test_delete_removes_a_suspended_instance_and_everything_it_had(day2):
    env = day2["env"]
    act(day2, "suspend")
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME)
    assert env.query("SELECT vm_state FROM instances WHERE uuid=?", day2["uuid"])[0]["vm_state"] == "deleted"
    assert "bootflow-%s" % day2["uuid"] not in env.ssh("virsh -c qemu:///system list --all --name")
    assert env.ssh("ls /var/lib/libvirt/qemu/save/ 2>/dev/null || true").strip() == ""
