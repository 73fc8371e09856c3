# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared images and deactivation end to end on test host bfhv141 (local identity and image store), every
step a real ansible-playbook run (playbooks/boot.yml and delete.yml unchanged; the image steps through
tests/integration/playbooks/image_share.yml).

In file order: project sa (member ann) registers a shared image and shares it with project sb (member
ben); while ben's membership is pending, boot.yml by name is refused and changes nothing (by ID nova-api
accepts it, as Glance's rule lets a pending member use an image whose ID it knows: shown in check mode);
ben accepts and boots it (ACTIVE, its DHCP lease on the console); ann removes ben: ben's next boot is
refused, his running guest keeps running; ann deactivates the image: her boot is refused with the reason
and changes nothing; she reactivates it and boots; delete.yml removes both guests and ann deletes the
image (its members go with it). Two guests boot in all. Real libvirtd, QEMU TCG, dnsmasq and sshd on
the host, SQLite on the controller.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from conftest import host_session, snapshot_diff, wait_console
from image_helpers import GUEST_QCOW2, image_row, instance, write_secret

HOST_N = int(os.environ.get("BOOTFLOW_IT_SHARING_HOST", "141"))
PLAYBOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "playbooks", "image_share.yml")
IMAGE = "sh-img"
PASSWORDS = {"ann": "ann-pw-141", "ben": "ben-pw-141"}
PROJECTS = {"ann": "sa", "ben": "sb"}
# no data volume; every boot sends the host's heartbeat (interval 1 s) with the member's token (policy
# compute:heartbeat), so the liveness check is on and passes for the projects' members
FAST = ("-e", "bootflow_volume_size_gb=0", "-e", "bootflow_heartbeat_interval=1")


@pytest.fixture(scope="module")
def sh_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-sharing") as env:
        env.files = tmp_path_factory.mktemp("bootflow-sharing-files")
        # the operator lets members register files of the guest image's directory (image.upload_dir):
        # without it, only an admin may use filename (issue 16, finding 6)
        config = os.path.join(str(env.state_dir), "bootflow.yml")
        with open(os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write("image:\n  upload_dir: %s\n" % json.dumps(os.path.dirname(GUEST_QCOW2)))
        env.creds = {user: write_secret(env.files / ("%s.json" % user), json.dumps({
            "bootflow_username": user, "bootflow_password": PASSWORDS[user], "bootflow_project": PROJECTS[user]}))
            for user in PASSWORDS}
        yield env


def steps(env, *ops, world=False, extra=()):
    """Run image_share.yml with these steps (dicts: user + image or member); returns (play, results)."""
    out = env.files / ("results-%d.json" % time.monotonic_ns())
    ops = [dict(op, project=PROJECTS[op["user"]]) for op in ops]
    extra_vars = write_secret(env.files / ("vars-%d.json" % time.monotonic_ns()), json.dumps(
        {"world": world, "ops": ops, "out": str(out), "share_passwords": PASSWORDS}))
    play = env.play(PLAYBOOK, "-e", "@" + extra_vars, *extra)
    return play, json.loads(out.read_text())


def boot(env, user, name, *extra, check=True):
    return env.play("boot.yml", "-e", "@" + env.creds[user], "-e", "bootflow_instance_name=%s" % name, *FAST, *extra,
                    check=check)


def project_id(env, name):
    return env.query("SELECT id FROM projects WHERE name=?", name)[0]["id"]


def members(env):
    return {r["member_id"]: r["status"] for r in env.query(
        "SELECT m.member_id, m.status FROM image_members m JOIN images i ON i.id = m.image_id WHERE i.name=?", IMAGE)}


def assert_active_with_lease(env, name, user):
    inst = instance(env, name)
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == ("active", None, "RUNNING")
    assert inst["project_id"] == project_id(env, PROJECTS[user])
    port = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    assert wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)").group(1) == port["ip"]
    return inst


def assert_refused(env, user, name, message, *extra):
    """boot.yml as ``user`` fails with ``message`` and changes nothing, DB, host or controller."""
    before = env.everything()
    res = boot(env, user, name, *extra, check=False)
    assert res.rc != 0 and message in res.out, res.out[-4000:]
    diff = snapshot_diff(before, env.everything())
    assert diff == [], "\n".join(diff)
    assert env.query("SELECT uuid FROM instances WHERE name=?", name) == []


@pytest.fixture(scope="module")
def shared(sh_env):
    """The world, then ann registers the shared image and shares it with sb (ben's membership pending)."""
    env = sh_env
    _play, results = steps(env, {"user": "ann", "image": {"name": IMAGE, "filename": GUEST_QCOW2, "visibility": "shared"}},
                           {"user": "ann", "member": {"image": IMAGE, "project": "sb"}}, world=True)
    return {"results": results, "image": image_row(env, IMAGE)}


def test_owner_shares_the_image_member_is_pending(sh_env, shared):
    env, (registered, added) = sh_env, shared["results"]
    assert registered["changed"] and registered["image"]["visibility"] == "shared", registered
    assert added["changed"] and added["member"]["status"] == "pending", added
    image = shared["image"]
    assert (image["visibility"], image["owner"], image["status"]) == ("shared", project_id(env, "sa"), "active")
    assert members(env) == {project_id(env, "sb"): "pending"}
    # the same steps again, in check mode with --diff too: no change
    for extra in ((), ("--check", "--diff")):
        play, again = steps(env, {"user": "ann", "image": {"name": IMAGE, "filename": GUEST_QCOW2, "visibility": "shared"}},
                            {"user": "ann", "member": {"image": IMAGE, "project": "sb"}}, extra=extra)
        assert [r["changed"] for r in again] == [False, False], again
        assert play.recap()["localhost"]["failed"] == 0


def test_pending_member_cannot_boot_it_by_name(sh_env, shared):
    env = sh_env
    assert_refused(env, "ben", "sh-b1", "Image %s could not be found." % IMAGE, "-e", "bootflow_image=%s" % IMAGE)
    # Glance's rule: a pending member may use an image whose ID it knows (check mode: nothing is created)
    res = boot(env, "ben", "sh-b1", "-e", "bootflow_image=%s" % shared["image"]["id"], "--check")
    assert res.rc == 0 and env.query("SELECT uuid FROM instances WHERE name='sh-b1'") == []


def test_member_accepts_and_boots_it(sh_env, shared):
    env = sh_env
    # check mode with --diff first: the change is shown and predicted, nothing is written
    before = env.full_db_snapshot()
    play, (predicted,) = steps(env, {"user": "ben", "member": {"image": IMAGE, "member_status": "accepted"}},
                               extra=("--check", "--diff"))
    assert predicted["changed"] and predicted["diff"]["before"]["status"] == "pending", predicted
    assert re.search(r'^-\s+"status": "pending"', play.out, re.M) and re.search(r'^\+\s+"status": "accepted"', play.out, re.M), \
        play.out[-3000:]
    assert env.full_db_snapshot() == before
    _play, (accepted,) = steps(env, {"user": "ben", "member": {"image": IMAGE, "member_status": "accepted"}})
    assert accepted["changed"] and accepted["member"]["status"] == "accepted", accepted
    assert members(env) == {project_id(env, "sb"): "accepted"}
    seen = env.query("SELECT updated_at FROM compute_nodes")[0]["updated_at"]
    time.sleep(1.1)
    boot(env, "ben", "sh-b1", "-e", "bootflow_image=%s" % IMAGE)
    inst = assert_active_with_lease(env, "sh-b1", "ben")
    assert inst["image_id"] == shared["image"]["id"]
    # the member's boot sent the host's heartbeat (a member may, a full report needs admin)
    assert env.query("SELECT updated_at FROM compute_nodes")[0]["updated_at"] > seen


def test_removed_member_cannot_boot_again_its_guest_keeps_running(sh_env, shared):
    env = sh_env
    _play, (refused, removed) = steps(env, {"user": "ben", "member": {"image": IMAGE, "project": "sb", "state": "absent"}},
                                      {"user": "ann", "member": {"image": IMAGE, "project": "sb", "state": "absent"}})
    assert refused["failed"] and refused["error"] == "auth" and "Only the owner of image %s" % IMAGE in refused["msg"]
    assert removed["changed"] and removed["member"] is None, removed
    assert members(env) == {}
    assert_refused(env, "ben", "sh-b2", "Image %s could not be found." % IMAGE, "-e", "bootflow_image=%s" % IMAGE)
    inst = instance(env, "sh-b1")
    assert inst["vm_state"] == "active"
    assert env.ssh("virsh -c qemu:///system domstate bootflow-%s" % inst["uuid"]).strip() == "running"


def test_deactivated_image_is_refused_reactivated_it_boots(sh_env, shared):
    env = sh_env
    _play, (deactivated,) = steps(env, {"user": "ann", "image": {"name": IMAGE, "state": "deactivated"}})
    assert deactivated["changed"] and deactivated["image"]["status"] == "deactivated", deactivated
    assert_refused(env, "ann", "sh-a1", "Image %s is not active (status deactivated)" % IMAGE,
                   "-e", "bootflow_image=%s" % IMAGE)
    _play, (reactivated,) = steps(env, {"user": "ann", "image": {"name": IMAGE}})
    assert reactivated["changed"] and reactivated["image"]["status"] == "active", reactivated
    boot(env, "ann", "sh-a1", "-e", "bootflow_image=%s" % IMAGE)
    assert assert_active_with_lease(env, "sh-a1", "ann")["image_id"] == shared["image"]["id"]


def test_delete_cleans_up(sh_env, shared):
    env = sh_env
    for user, name in (("ben", "sh-b1"), ("ann", "sh-a1")):
        env.play("delete.yml", "-e", "@" + env.creds[user], "-e", "bootflow_instance_name=%s" % name)
    assert env.host_snapshot()["instances"] == [] and env.host_snapshot()["domains"] == []
    assert env.query("SELECT name FROM instances WHERE deleted=0") == []
    _play, (deleted,) = steps(env, {"user": "ann", "image": {"name": IMAGE, "state": "absent"}})
    assert deleted["changed"], deleted
    assert env.query("SELECT status FROM images WHERE id=?", shared["image"]["id"]) == [{"status": "deleted"}]
    assert env.query("SELECT * FROM image_members") == []
