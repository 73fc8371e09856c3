# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks, unchanged, with ``auth_backend: keystone`` against a REAL Keystone.

Keystone (from PyPI, tests/openstack/keystone.sh) runs on SQLite under uwsgi on 127.0.0.1 for this
module; the collection finds it only through the controller's environment: BOOTFLOW_AUTH_BACKEND=
keystone and OS_CLOUD naming a cloud of a 0600 clouds.yaml (OS_CLIENT_CONFIG_FILE). Its own test
host (bfhv61) and state dir: the local SQLite DB still holds flavors, images, networks,
instances, ports, volumes; users, projects, roles and tokens are Keystone's.

In file order: bootstrap.yml + hypervisors.yml, boot.yml (guest gets its lease; Keystone's ids on
the records; few validations thanks to the cache), delete.yml as another project's member (sees
nothing, changes nothing), the token module's states and Keystone's errors, then delete.yml as
admin leaves nothing. Keystone is stopped by its PID at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import INVENTORY_SH, REPO, TESTHOST, Env, wait_console

sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import keystone_server  # noqa: E402  # tests/openstack/keystone_server.py

HOST_N = int(os.environ.get("BOOTFLOW_IT_KEYSTONE_HOST", "61"))
NAME = "ks-vm"
CLOUD = "bootflow-it"
OPENRC = ("OS_AUTH_URL", "OS_CLOUD", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
          "OS_PROJECT_DOMAIN_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE", "OS_CACERT", "OS_PROJECT_ID")


def write_secret(path, text):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return str(path)


def token_calls(server):
    """(validations, issues) Keystone has answered so far, from uwsgi's request log."""
    requests = [line.split("] ", 2)[-1].split(" => ")[0] for line in server.request_log()]   # "GET /v3/... "
    return (sum(r.split("?")[0] == "GET /v3/auth/tokens" for r in requests),
            sum(r.split("?")[0] == "POST /v3/auth/tokens" for r in requests))


@pytest.fixture(scope="module")
def ks_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("bootflow-ks-it")
    keystone = keystone_server.KeystoneServer(base)
    subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
    try:
        t0 = time.monotonic()
        keystone.start()
        print("\nkeystone up in %.1f s (%s)" % (time.monotonic() - t0,
                                                ", ".join("%s %.1f s" % kv for kv in keystone.timings.items())))
        clouds = write_secret(base / "clouds.yaml", json.dumps({"clouds": {CLOUD: {"auth": {
            "auth_url": keystone.url, "username": "admin", "password": keystone.admin_password,
            "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
        subprocess.run([TESTHOST, "start", str(HOST_N)], check=True, timeout=120)
        inventory = base / "inventory.ini"
        inventory.write_text(subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE,
                                            text=True).stdout)
        env = Env(base / "state", inventory, HOST_N)
        for name in OPENRC:
            env.env.pop(name, None)
        env.env.update(BOOTFLOW_AUTH_BACKEND="keystone", OS_CLOUD=CLOUD, OS_CLIENT_CONFIG_FILE=clouds)
        env.keystone = keystone
        env.base = base
        env.play("bootstrap.yml")
        env.play("hypervisors.yml")
        yield env
    finally:
        subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
        keystone.stop()
        assert keystone.all_stopped()


@pytest.fixture(scope="module")
def booted(ks_env):
    before = ks_env.host_snapshot()
    calls_before = token_calls(ks_env.keystone.servers[0])
    t0 = time.monotonic()
    res = ks_env.play("boot.yml", "-e", "bootflow_instance_name=%s" % NAME)
    took = time.monotonic() - t0
    calls_after = token_calls(ks_env.keystone.servers[0])
    rows = ks_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME)
    assert len(rows) == 1, rows
    return {"env": ks_env, "first": res, "instance": rows[0], "before": before, "took": took,
            "validations": calls_after[0] - calls_before[0], "issues": calls_after[1] - calls_before[1]}


def extra_vars_file(env, user):
    """The credentials of a Keystone test user as an extra-vars file (0600), for the identity role."""
    info = env.keystone.users[user]
    return "@" + write_secret(env.base / ("%s-vars.json" % user), json.dumps({
        "bootflow_username": user, "bootflow_password": info["password"], "bootflow_project": info["project"]}))


def test_bootstrap_registered_the_catalog_as_keystones_admin(ks_env):
    admin_project = ks_env.keystone.project_id("admin")
    images = ks_env.query("SELECT name, owner, visibility, status FROM images")
    assert images == [{"name": "bootflow-guest", "owner": admin_project, "visibility": "public", "status": "active"}]
    assert {f["name"] for f in ks_env.query("SELECT name FROM flavors")} == {"m1.tiny", "m1.small"}
    assert [n["name"] for n in ks_env.query("SELECT name FROM networks")] == ["private"]
    assert [n["hostname"] for n in ks_env.query("SELECT hostname FROM compute_nodes")] == [ks_env.host]


def test_boot_runs_with_keystones_identity(booted):
    env, inst = booted["env"], booted["instance"]
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == ("active", None, "RUNNING")
    assert inst["host"] == env.host
    assert inst["project_id"] == env.keystone.project_id("admin")
    assert inst["user_id"] == env.keystone.user_id("admin")
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    assert wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)").group(1) == port["ip"]
    assert "REQUEST FLOW [%s]" % NAME in booted["first"].out


def test_boot_validates_through_the_cache(booted):
    env, inst = booted["env"], booted["instance"]
    steps = env.query("SELECT COUNT(*) AS n FROM instance_steps WHERE instance_uuid=?", inst["uuid"])[0]["n"]
    assert steps >= 6
    assert booted["issues"] == 1                                  # the identity role's one token
    # every step validates its token, but through the cache: issuing put the token in it, and
    # Keystone is asked again only when an entry is older than 30 s (without the cache: one per step)
    assert booted["validations"] <= booted["took"] / 30 + 1, booted
    print("\nboot.yml %.1f s: %d steps recorded, Keystone asked %d time(s) to validate"
          % (booted["took"], steps, booted["validations"]))


def test_other_projects_member_sees_nothing_and_deletes_nothing(booted):
    env, inst = booted["env"], booted["instance"]
    host_before, db_before = env.host_snapshot(), env.db_snapshot()
    res = env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME, "-e", extra_vars_file(env, "member"))
    assert all(v["failed"] == 0 for v in res.recap().values()), res.out[-3000:]
    assert env.host not in res.recap()
    assert env.host_snapshot() == host_before
    assert env.db_snapshot() == db_before
    assert env.query("SELECT vm_state FROM instances WHERE uuid=?", inst["uuid"])[0]["vm_state"] == "active"


def test_token_states_and_keystones_errors(booted, tmp_path):
    env, inst = booted["env"], booted["instance"]
    dead_port = keystone_server.free_port()
    playbook = tmp_path / "token.yml"
    playbook.write_text("""---
- name: Token module against Keystone
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Issue (credentials from the clouds.yaml cloud)
      bootflow.cloud.token:
      register: issued
      no_log: true
    - name: Validate
      bootflow.cloud.token:
        auth_token: "{{ issued.token }}"
        state: validated
      register: validated
    - name: Instance visible with it
      bootflow.cloud.instance_info:
        auth_token: "{{ issued.token }}"
        instance: %(uuid)s
      register: seen
    - name: A Keystone the task names (not the operator's) is refused before anything is sent to it
      bootflow.cloud.instance_info:
        auth_token: "{{ issued.token }}"
        auth_url: http://127.0.0.1:%(dead)d/v3
        instance: %(uuid)s
      register: unreachable
      failed_when: false
    - name: Revoke
      bootflow.cloud.token:
        auth_token: "{{ issued.token }}"
        state: revoked
      register: revoked
    - name: Use the revoked token
      bootflow.cloud.instance_info:
        auth_token: "{{ issued.token }}"
        instance: %(uuid)s
      register: after_revoke
      failed_when: false
    - name: Use a tampered token
      bootflow.cloud.instance_info:
        auth_token: "{{ issued.token[:-6] }}AAAAAA"
        instance: %(uuid)s
      register: tampered
      failed_when: false
    - name: Report
      ansible.builtin.copy:
        content: "{{ {'validated': validated.auth, 'seen': seen.instance.name, 'revoked': revoked.revoked,
                      'unreachable': unreachable, 'after_revoke': after_revoke, 'tampered': tampered} | to_json }}"
        dest: %(out)s
        mode: "0600"
""" % {"uuid": inst["uuid"], "dead": dead_port, "out": tmp_path / "out.json"})
    env.play(str(playbook))
    out = json.loads((tmp_path / "out.json").read_text())
    ks = env.keystone
    assert out["validated"]["user_id"] == ks.user_id("admin") and out["validated"]["project"] == "admin"
    assert "admin" in out["validated"]["roles"]
    assert out["seen"] == NAME and out["revoked"] is True
    # (failed_when: false kept the play going; the step's own verdict is in failed_when_result)
    assert out["unreachable"]["failed_when_result"] is False and out["unreachable"]["error"] == "auth"
    assert out["unreachable"]["msg"].startswith("auth_url http://127.0.0.1:%d/v3 is not the operator's Keystone (%s"
                                                % (dead_port, ks.url.rstrip("/"))), out["unreachable"]["msg"]
    refused = ("The request you have made requires authentication. (Keystone at %s refused the token: it is "
               "expired, revoked or not a valid token)" % ks.url)
    for case in ("after_revoke", "tampered"):
        assert out[case]["error"] == "auth" and out[case]["msg"] == refused, out[case]


def test_delete_leaves_nothing(booted):
    env, inst = booted["env"], booted["instance"]
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME)
    assert env.host_snapshot() == booted["before"]
    assert env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"]) == []
    assert env.query("SELECT * FROM allocations") == []
    assert [v["status"] for v in env.query("SELECT status FROM volumes WHERE project_id=?", inst["project_id"])] == ["deleted"]
    row = env.query("SELECT vm_state, deleted FROM instances WHERE uuid=?", inst["uuid"])[0]
    assert row["vm_state"] == "deleted" and row["deleted"] != 0
    leases = env.ssh("cat /var/lib/bootflow/dhcp/%s/leases 2>/dev/null || true" % port["network_id"])
    assert port["mac"] not in leases, leases
