# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad tokens at every step: expired, tampered, signed by another key repository, revoked, and a
valid token of another project. Each step refuses before it changes anything: the DB, the host's
domains, volumes, instance dirs and DHCP files are the same afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import REPO, host_session

HOST_N = int(os.environ.get("BOOTFLOW_IT_AUTH_HOST", "22"))

PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "every_step.yml")
TARGET = "it-auth"
UNAUTH = "requires authentication"


def _adhoc(env, module, args, extra_env=None):
    """Run one bootflow module on localhost; return its JSON result."""
    proc = subprocess.run(["ansible", "localhost", "-i", str(env.inventory), "-m", module, "-a", json.dumps(args), "-o"],
                          cwd=REPO, env=dict(env.env, ANSIBLE_LOAD_CALLBACK_PLUGINS="0", **(extra_env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False)
    out = proc.stdout
    assert " => " in out, out
    return json.loads(out.split(" => ", 1)[1])


def _token(env, **args):
    res = _adhoc(env, "bootflow.cloud.token", args)
    assert "token" in res, res
    return res["token"]


@pytest.fixture(scope="module")
def auth_env(tmp_path_factory):
    """Test host 22, this file's own (so that it can run beside test_boot_flow.py, which uses bfhv21)."""
    with host_session(tmp_path_factory, HOST_N, "bootflow-auth") as env:
        yield env


@pytest.fixture(scope="module")
def target(auth_env):
    """A real instance of the admin project that every bad token is aimed at."""
    auth_env.play("boot.yml", "-e", "bootflow_instance_name=%s" % TARGET, "-e", "bootflow_wait_for_lease=false")
    inst = auth_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", TARGET)[0]
    port = auth_env.query("SELECT id FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    vol = auth_env.query("SELECT name FROM volumes WHERE instance_uuid=?", inst["uuid"])[0]
    image = auth_env.query("SELECT id FROM images WHERE id=?", inst["image_id"])[0]
    spec = {"uuid": inst["uuid"], "domain_name": "bootflow-%s" % inst["uuid"], "image": {"id": image["id"]},
            "ports": [port], "volumes": [vol]}
    yield spec
    auth_env.play("delete.yml", "-e", "bootflow_instance_name=%s" % TARGET)


def _bad_tokens(env, tmp_path):
    admin_password = open(os.path.join(str(env.state_dir), "admin-password")).read().strip()
    expired = _token(env, username="admin", password=admin_password, ttl=1)
    good = _token(env, username="admin", password=admin_password)
    tampered = good[:60] + ("A" if good[60] != "A" else "B") + good[61:]
    revoked = _token(env, username="admin", password=admin_password)
    assert _adhoc(env, "bootflow.cloud.token", {"auth_token": revoked, "state": "revoked"})["revoked"] is True
    other_state = tmp_path / "other-keys"
    _adhoc(env, "bootflow.cloud.identity_bootstrap", {"password": "x"}, {"BOOTFLOW_STATE_DIR": str(other_state)})
    wrong_key = _adhoc(env, "bootflow.cloud.token", {"password": "x"}, {"BOOTFLOW_STATE_DIR": str(other_state)})["token"]
    # a valid member token of another project
    for module, args in (("bootflow.cloud.project", {"name": "it-other"}),
                         ("bootflow.cloud.user", {"name": "it-bob", "password": "bobpw", "default_project": "it-other"}),
                         ("bootflow.cloud.role_assignment", {"user": "it-bob", "project": "it-other", "role": "member"})):
        assert not _adhoc(env, module, dict(args, auth_token=good)).get("failed"), module
    other_project = _token(env, username="it-bob", password="bobpw", project="it-other")
    time.sleep(1.5)  # let the 1-second token expire
    return {
        "expired": (expired, UNAUTH + r".*expired"),
        "tampered": (tampered, UNAUTH + r".*not valid"),
        "wrong_key": (wrong_key, UNAUTH + r".*not valid"),
        "revoked": (revoked, UNAUTH + r".*revoked"),
        "other_project": (other_project, r"could not be found|Policy doesn't allow"),
    }


def test_every_step_refuses_bad_tokens_and_changes_nothing(auth_env, target, tmp_path):
    tokens = _bad_tokens(auth_env, tmp_path)
    guest = os.path.join(os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest"), "disk.qcow2")
    for kind, (token, expected) in tokens.items():
        db_before, host_before = auth_env.db_snapshot(), auth_env.host_snapshot()
        extra = tmp_path / ("%s.json" % kind)
        extra.write_text(json.dumps({"bad_token": token, "expected": expected, "target": TARGET, "target_spec": target,
                                     "guest_image": guest, "other_project": kind == "other_project"}))
        res = auth_env.play(PLAYBOOK, "-e", "@%s" % extra, check=False)
        assert res.rc == 0, "%s:\n%s" % (kind, res.out[-4000:])
        assert auth_env.db_snapshot() == db_before, kind
        assert auth_env.host_snapshot() == host_before, kind
        assert auth_env.ssh("virsh -c qemu:///system domstate %s" % target["domain_name"]).strip() == "running", kind
