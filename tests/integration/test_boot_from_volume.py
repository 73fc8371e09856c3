# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Boot from volume on a real test host (issue 7, like ``nova boot --block-device
source=image,dest=volume,size=N,bootindex=0``): a too-small root volume is refused before anything
is made; the root volume is a pool volume made from the cached image, the guest boots from it (vda)
with no overlay in the instance directory and its data volume stays vdb; a root volume kept
(delete_on_termination false) survives delete.yml and another instance sees it as vdb; one deleted
with its instance is gone; nothing is left on the host."""

from __future__ import annotations

import os

import pytest

from conftest import REPO, host_session, wait_console

HOST_N = 91
PLAY = os.path.join(REPO, "tests", "integration", "playbooks", "volume_op.yml")
GIB = 1024 ** 3
BFV = ("-e", "bootflow_boot_from_volume=true")


@pytest.fixture(scope="module")
def bfv_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-bfv") as env:
        yield env


def _op(env, op, volume, **extra):
    args = ["-e", "op=%s" % op, "-e", "volume=%s" % volume]
    for key, value in extra.items():
        args += ["-e", "%s=%s" % (key, value)]
    return env.play(PLAY, *args)


def _capacity(env, volume):
    out = env.ssh("virsh -c qemu:///system vol-info --bytes --pool bootflow %s" % volume)
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Capacity:")))


def _instance(env, name):
    return env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)[0]


def _vols(env, uuid):
    return {v["device"]: v for v in env.query("SELECT * FROM volumes WHERE instance_uuid=?", uuid)}


def test_boot_from_volume_lifecycle(bfv_env):
    env = bfv_env
    empty = env.host_snapshot()
    assert empty["domains"] == [] and empty["volumes"] == [] and empty["instances"] == [], empty

    # a root volume smaller than the flavor's disk (m1.small: 2 GB) is refused by nova-api: nothing made
    refused = env.play("boot.yml", "-e", "bootflow_instance_name=bfv-small", "-e", "bootflow_flavor=m1.small",
                       *BFV, "-e", "bootflow_root_volume_size_gb=1", check=False)
    assert refused.rc != 0 and "smaller than flavor m1.small's disk" in refused.out, refused.out[-3000:]
    assert env.query("SELECT name FROM instances") == [] and env.query("SELECT id FROM volumes") == []
    assert env.host_snapshot() == empty

    # boot from a 1 GB root volume (kept on delete) with a 1 GB data volume
    env.play("boot.yml", "-e", "bootflow_instance_name=bfv-a", *BFV,
             "-e", "bootflow_root_volume_delete_on_termination=false")
    a = _instance(env, "bfv-a")
    assert a["vm_state"] == "active"
    vols = _vols(env, a["uuid"])
    root, data = vols["vda"], vols["vdb"]
    assert (root["status"], root["size_gb"], root["delete_on_termination"], root["host"]) == ("in-use", 1, 0, env.host)
    assert (data["status"], data["delete_on_termination"]) == ("in-use", 1)

    # the guest booted from the pool volume (SYSLINUX from the image's content) and got its lease
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", a["uuid"])[0]
    m = wait_console(env, a["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)")
    assert m.group(1) == port["ip"]
    wait_console(env, a["uuid"], r"GUEST-BLOCK: .*\bvda\b.*\bvdb\b")
    wait_console(env, a["uuid"], r"GUEST-BLOCK-SIZE: vda %d$" % (GIB // 512))  # the root volume's size, not 64 MiB

    # no overlay in the instance dir; vda is the pool volume made from the image
    inst_dir = "/var/lib/bootflow/instances/%s" % a["uuid"]
    assert env.ssh("test -e %s/disk && echo present || echo absent" % inst_dir).strip() == "absent"
    assert "console.log" in env.ssh("ls %s" % inst_dir)
    blk = {line.split()[0]: line.split()[1] for line in
           env.ssh("virsh -c qemu:///system domblklist bootflow-%s" % a["uuid"]).splitlines()[2:] if line.strip()}
    assert blk["vda"] in ("/var/lib/bootflow/volumes/%s" % root["name"], root["name"]), blk
    assert root["name"] in blk["vda"] and data["name"] in blk["vdb"], blk
    xml = env.ssh("virsh -c qemu:///system dumpxml bootflow-%s" % a["uuid"])
    assert "pool='bootflow' volume='%s'" % root["name"] in xml and "/disk'" not in xml
    assert _capacity(env, root["name"]) == 1 * GIB

    # delete.yml: the kept root volume survives (available, no instance), the data volume is deleted
    env.play("delete.yml", "-e", "bootflow_instance_name=bfv-a")
    assert env.query("SELECT status, instance_uuid, device FROM volumes WHERE id=?", root["id"])[0] == \
        {"status": "available", "instance_uuid": None, "device": None}
    assert env.query("SELECT status FROM volumes WHERE id=?", data["id"])[0]["status"] == "deleted"
    assert env.ssh("ls -1 /var/lib/bootflow/volumes").split() == [root["name"]]
    assert env.ssh("test -e %s && echo present || echo absent" % inst_dir).strip() == "absent"

    # another boot-from-volume instance (root deleted with it, no data volume) gets the kept volume as vdb
    env.play("boot.yml", "-e", "bootflow_instance_name=bfv-b", *BFV, "-e", "bootflow_volume_size_gb=0")
    b = _instance(env, "bfv-b")
    b_root = _vols(env, b["uuid"])["vda"]
    assert b_root["delete_on_termination"] == 1
    wait_console(env, b["uuid"], r"GUEST-HTTP: up")
    _op(env, "attach", root["name"], instance_uuid=b["uuid"])
    wait_console(env, b["uuid"], r"GUEST-BLOCK: .*\bvda\b.*\bvdb\b")
    wait_console(env, b["uuid"], r"GUEST-BLOCK-SIZE: vdb %d$" % (GIB // 512))
    assert env.query("SELECT status, instance_uuid, device FROM volumes WHERE id=?", root["id"])[0] == \
        {"status": "in-use", "instance_uuid": b["uuid"], "device": "vdb"}

    # delete bfv-b: its own root volume goes with it, the attached one is kept; then delete that one
    env.play("delete.yml", "-e", "bootflow_instance_name=bfv-b")
    assert env.query("SELECT status FROM volumes WHERE id=?", b_root["id"])[0]["status"] == "deleted"
    assert env.query("SELECT status FROM volumes WHERE id=?", root["id"])[0]["status"] == "available"
    _op(env, "delete", root["name"])
    assert env.query("SELECT status FROM volumes WHERE status != 'deleted'") == []
    snap = env.host_snapshot()
    assert snap["domains"] == [] and snap["volumes"] == [] and snap["instances"] == [] and snap["dhcp_hosts"] == [], snap
