# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad tokens at every step: expired, tampered, signed by another key repository, revoked, and a
valid token of another project. Each step refuses before it changes anything: the whole state
(conftest ``Env.everything``: every DB row, the host, the controller's state dir) is the same afterwards.

Issue 16's identity attacks, replayed through the real modules and playbooks: a token replayed after its
user's password changed or its role was removed, a token lifetime beyond the operator's cap, and a
tokenless identity_bootstrap taking over an existing identity."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from conftest import REPO, host_session, snapshot_diff

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
        extra = tmp_path / ("%s.json" % kind)
        extra.write_text(json.dumps({"bad_token": token, "expected": expected, "target": TARGET, "target_spec": target,
                                     "guest_image": guest, "other_project": kind == "other_project"}))
        before = auth_env.everything()
        res = auth_env.play(PLAYBOOK, "-e", "@%s" % extra, check=False)
        assert res.rc == 0, "%s:\n%s" % (kind, res.out[-4000:])
        assert snapshot_diff(before, auth_env.everything()) == [], kind
        assert auth_env.ssh("virsh -c qemu:///system domstate %s" % target["domain_name"]).strip() == "running", kind


# --- issue 16 --------------------------------------------------------------------------------------------

def _admin_token(env):
    admin_password = open(os.path.join(str(env.state_dir), "admin-password")).read().strip()
    return _token(env, username="admin", password=admin_password)


def _refused(res, pattern):
    # ansible -o drops "failed" from a FAILED! result; the action's "error" (its kind) is only set on failure
    assert res.get("failed") or res.get("error") in ("auth", "invalid"), res
    assert re.search(pattern, res.get("msg", ""), re.S), res
    print("\nOBSERVED %s" % res["msg"][:300])


def _member(env, admin, user, password, project):
    for module, args in (("bootflow.cloud.project", {"name": project}),
                         ("bootflow.cloud.user", {"name": user, "password": password, "default_project": project}),
                         ("bootflow.cloud.role_assignment", {"user": user, "project": project, "role": "member"})):
        assert not _adhoc(env, module, dict(args, auth_token=admin)).get("failed"), module


def test_token_replayed_after_password_change_or_role_removal_is_refused(auth_env, tmp_path):
    """Issue 16 finding 4: a member's token, stolen before the password change, replayed afterwards through
    the token module and a real boot.yml run: refused (revoked), nothing changes. Same after a role removal."""
    env = auth_env
    admin = _admin_token(env)
    _member(env, admin, "it-carol", "carol-pw1", "it-rev")
    stolen = _token(env, username="it-carol", password="carol-pw1", project="it-rev")
    res = _adhoc(env, "bootflow.cloud.user",
                 {"name": "it-carol", "password": "carol-pw2", "update_password": "always", "auth_token": admin})
    assert res.get("changed") is True, res
    before = env.everything()
    _refused(_adhoc(env, "bootflow.cloud.token", {"auth_token": stolen, "state": "validated"}), UNAUTH + r".*revoked")
    vars_file = tmp_path / "replay.json"
    vars_file.write_text(json.dumps({"bootflow_token": stolen, "bootflow_instance_name": "it-auth-replay",
                                     "bootflow_wait_for_lease": False}))
    play = env.play("boot.yml", "-e", "@%s" % vars_file, check=False)
    assert play.rc != 0 and re.search(UNAUTH + r".*the token has been revoked", play.out), play.out[-3000:]
    assert snapshot_diff(before, env.everything()) == []
    # the new password works; removing the member role revokes that token too
    fresh = _token(env, username="it-carol", password="carol-pw2", project="it-rev")
    assert _adhoc(env, "bootflow.cloud.token", {"auth_token": fresh, "state": "validated"})["valid"] is True
    assert _adhoc(env, "bootflow.cloud.role_assignment", {"user": "it-carol", "project": "it-rev", "role": "member",
                                                          "state": "absent", "auth_token": admin})["changed"] is True
    assert _adhoc(env, "bootflow.cloud.role_assignment", {"user": "it-carol", "project": "it-rev", "role": "member",
                                                          "auth_token": admin})["changed"] is True
    before = env.everything()
    _refused(_adhoc(env, "bootflow.cloud.token", {"auth_token": fresh, "state": "validated"}), UNAUTH + r".*revoked")
    assert snapshot_diff(before, env.everything()) == []


def test_token_lifetime_beyond_the_operators_cap_is_refused(auth_env):
    """Issue 16 finding 4: a member asks for a year-long token, or for more than identity.token_expiration;
    an admin asks for more than identity.max_token_expiration (the operator's file): all refused, nothing changes."""
    env = auth_env
    admin_password = open(os.path.join(str(env.state_dir), "admin-password")).read().strip()
    _member(env, _admin_token(env), "it-dave", "dave-pw", "it-cap")
    config = os.path.join(str(env.state_dir), "bootflow.yml")
    cases = [
        ({"username": "it-dave", "password": "dave-pw", "project": "it-cap", "ttl": 365 * 86400},
         r"ttl must be at most 86400 seconds \(identity.max_token_expiration"),
        ({"username": "admin", "password": admin_password, "ttl": 86401}, r"ttl must be at most 86400 seconds"),
        ({"username": "it-dave", "password": "dave-pw", "project": "it-cap", "ttl": 7200},
         r"ttl 7200 is above the operator's token lifetime \(identity.token_expiration, 3600 seconds\): only an admin"),
    ]
    before = env.everything()
    for args, pattern in cases:
        _refused(_adhoc(env, "bootflow.cloud.token", args), pattern)
    assert snapshot_diff(before, env.everything()) == []
    assert "token" in _adhoc(env, "bootflow.cloud.token", {"username": "admin", "password": admin_password, "ttl": 7200})
    try:
        with open(config, "w") as f:
            f.write("identity:\n  token_expiration: 300\n  max_token_expiration: 900\n")
        os.chmod(config, 0o600)
        before = env.everything()
        _refused(_adhoc(env, "bootflow.cloud.token", {"username": "admin", "password": admin_password, "ttl": 901}),
                 r"ttl must be at most 900 seconds")
        member_args = {"username": "it-dave", "password": "dave-pw", "project": "it-cap", "ttl": 301}
        _refused(_adhoc(env, "bootflow.cloud.token", member_args), r"ttl 301 is above .*300 seconds")
        assert snapshot_diff(before, env.everything()) == []
        res = _adhoc(env, "bootflow.cloud.token", {"username": "it-dave", "password": "dave-pw", "project": "it-cap"})
        expires = time.mktime(time.strptime(res["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime())
        assert 240 < expires <= 301, res["expires_at"]   # the operator's 300 seconds
    finally:
        os.unlink(config)


def test_tokenless_bootstrap_cannot_take_over_an_existing_identity(auth_env):
    """Issue 16 finding 13: anyone runs identity_bootstrap without a token (or with a member's) to reset the
    admin's password, to add an admin user or to give themselves the admin role: refused, nothing changes.
    bootstrap.yml run again changes nothing (the host session already ran it on a fresh state dir)."""
    env = auth_env
    _member(env, _admin_token(env), "it-erin", "erin-pw", "it-boot")
    member = _token(env, username="it-erin", password="erin-pw", project="it-boot")
    cases = [
        ({"username": "admin", "password": "attacker-pw"}, r"already bootstrapped.*reset the password of user admin"),
        ({"username": "it-mallory", "password": "m-pw", "role": "admin"}, r"already bootstrapped.*create user it-mallory"),
        ({"username": "it-erin", "password": "erin-pw", "project": "admin", "role": "admin"},
         r"already bootstrapped.*assign role admin to user it-erin on project admin"),
        ({"username": "admin", "password": "attacker-pw", "auth_token": member},
         r"Policy doesn't allow identity:user to be performed"),
    ]
    before = env.everything()
    for args, pattern in cases:
        _refused(_adhoc(env, "bootflow.cloud.identity_bootstrap", args), pattern)
    assert snapshot_diff(before, env.everything()) == []
    res = env.play("bootstrap.yml")
    assert res.recap()["localhost"]["changed"] == 0, res.out[-3000:]
    assert snapshot_diff(before, env.everything()) == []
