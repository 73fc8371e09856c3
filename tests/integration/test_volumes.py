# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cinder-grade volumes on a real test host: extend (shrink refused), delete of an attached
volume refused, hot detach and attach seen by the guest, a kept volume (delete_on_termination
false) surviving delete.yml and attached to another instance, then deleted."""

from __future__ import annotations

import os

import pytest

from conftest import REPO, host_session, wait_console

HOST_N = 81
PLAY = os.path.join(REPO, "tests", "integration", "playbooks", "volume_op.yml")
GIB = 1024 ** 3


@pytest.fixture(scope="module")
def vol_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-volumes") as env:
        yield env


def _op(env, op, volume, check=True, **extra):
    args = ["-e", "op=%s" % op, "-e", "volume=%s" % volume]
    for key, value in extra.items():
        args += ["-e", "%s=%s" % (key, value)]
    return env.play(PLAY, *args, check=check)


def _capacity(env, volume):
    out = env.ssh("virsh -c qemu:///system vol-info --bytes --pool bootflow %s" % volume)
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Capacity:")))


def test_volume_lifecycle(vol_env):
    env = vol_env
    env.play("boot.yml", "-e", "bootflow_instance_name=vol-a", "-e", "bootflow_volume_delete_on_termination=false")
    a = env.query("SELECT * FROM instances WHERE name='vol-a' AND deleted=0")[0]
    vol = env.query("SELECT * FROM volumes WHERE instance_uuid=?", a["uuid"])[0]
    assert (vol["status"], vol["device"], vol["delete_on_termination"]) == ("in-use", "vdb", 0)
    wait_console(env, a["uuid"], r"GUEST-BLOCK: .*\bvdb\b")

    # extend: libvirt's view of the volume grows; shrinking is refused and changes nothing
    assert _capacity(env, vol["name"]) == 1 * GIB
    _op(env, "extend", vol["name"], size_gb=2)
    assert _capacity(env, vol["name"]) == 2 * GIB
    assert env.query("SELECT size_gb FROM volumes WHERE id=?", vol["id"])[0]["size_gb"] == 2
    shrink = _op(env, "extend", vol["name"], check=False, size_gb=1)
    assert shrink.rc != 0 and "shrink" in shrink.out.lower(), shrink.out[-2000:]
    assert _capacity(env, vol["name"]) == 2 * GIB

    # deleting an attached volume is refused
    refused = _op(env, "delete", vol["name"], check=False)
    assert refused.rc != 0 and "in-use" in refused.out, refused.out[-2000:]
    assert vol["name"] in env.ssh("ls /var/lib/bootflow/volumes")

    # hot detach: the guest sees vdb go; the volume is available again
    _op(env, "detach", vol["name"], instance_uuid=a["uuid"])
    wait_console(env, a["uuid"], r"GUEST-BLOCK: (sr0 )?vda.?$")  # vdb is gone (sr0 is the config drive)
    assert env.query("SELECT status, instance_uuid FROM volumes WHERE id=?", vol["id"])[0] == \
        {"status": "available", "instance_uuid": None}
    # and back
    _op(env, "attach", vol["name"], instance_uuid=a["uuid"])
    assert env.query("SELECT status, device FROM volumes WHERE id=?", vol["id"])[0] == {"status": "in-use", "device": "vdb"}

    # delete_on_termination=false: the volume survives delete.yml ...
    env.play("delete.yml", "-e", "bootflow_instance_name=vol-a")
    assert env.query("SELECT status, instance_uuid FROM volumes WHERE id=?", vol["id"])[0] == \
        {"status": "available", "instance_uuid": None}
    assert vol["name"] in env.ssh("ls /var/lib/bootflow/volumes")

    # ... and another instance (without a volume of its own) gets it hot-plugged
    env.play("boot.yml", "-e", "bootflow_instance_name=vol-b", "-e", "bootflow_volume_size_gb=0")
    b = env.query("SELECT * FROM instances WHERE name='vol-b' AND deleted=0")[0]
    wait_console(env, b["uuid"], r"GUEST-HTTP: up")
    _op(env, "attach", vol["name"], instance_uuid=b["uuid"])
    wait_console(env, b["uuid"], r"GUEST-BLOCK: .*\bvdb\b")
    assert env.query("SELECT status, instance_uuid FROM volumes WHERE id=?", vol["id"])[0] == \
        {"status": "in-use", "instance_uuid": b["uuid"]}

    # finally: delete vol-b (keeps the volume: it was attached, not created with it), then the volume
    env.play("delete.yml", "-e", "bootflow_instance_name=vol-b")
    _op(env, "delete", vol["name"])
    assert env.query("SELECT status FROM volumes WHERE id=?", vol["id"])[0]["status"] == "deleted"
    snap = env.host_snapshot()
    assert snap["domains"] == [] and snap["volumes"] == [] and snap["instances"] == [], snap
