# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instances inventory plugin, run by ``ansible-inventory`` itself on a real database (SQLite and
PostgreSQL): what a member and an admin see, the host variables, the default, keyed and composed
groups, and a clear failure for bad credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
ANSIBLE_INVENTORY = os.path.join(os.path.dirname(sys.executable), "ansible-inventory")


@pytest.fixture()
def cloud(tmp_path, backend):
    state_dir = str(tmp_path / "state")
    db_url = backend.new_db_url()
    db = _db.open_db(db_url, state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {}
    for project, user in (("pa", "alice"), ("pb", "bob")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, "member", "present", False)
        token, _ctx = _identity.issue_token(db, keys, user, "pw", project)
        auth[user] = _identity.authenticate(db, keys, token)
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["alice"], state_dir, "img", str(image), "raw", "bare", "private", 0, 0, {}, "present",
                        False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    # alice: web (ACTIVE on hv1 with a port) and db (still building); bob: another "web"
    _c, web = _compute_api.create(db, auth["alice"], "web", "m1.tiny", "img", ["net"], 0, None, False)
    _compute_api.create(db, auth["alice"], "db", "m1.tiny", "img", ["net"], 0, None, False)
    with db.tx() as conn:
        instances.move_state(conn, web.uuid, instances.ACTIVE, None, host="hv1")
    _changed, port = _networking.allocate_port(db, web.uuid, "net", "hv1")
    _images.apply_image(db, auth["bob"], state_dir, "img-b", str(image), "raw", "bare", "private", 0, 0, {}, "present",
                        False)
    _c, web_b = _compute_api.create(db, auth["bob"], "web", "m1.tiny", "img-b", ["net"], 0, None, False)
    db.dispose()
    return {"tmp": tmp_path, "state_dir": state_dir, "db_url": db_url, "web": web, "web_b": web_b, "port": port}


def _inventory(cloud, config, name="my.bootflow.yml", check=True):
    path = cloud["tmp"] / name
    config = dict({"plugin": "bootflow.cloud.instances", "state_dir": cloud["state_dir"]}, **config)
    if cloud["db_url"]:
        config["db_url"] = cloud["db_url"]
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
               ANSIBLE_INVENTORY_ENABLED="auto")
    proc = subprocess.run([ANSIBLE_INVENTORY, "-i", str(path), "--list", "--export"], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120, check=False)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr[-3000:]
    # (values from an inventory source come tagged as not trusted for templating)
    return json.loads(proc.stdout, object_hook=lambda d: d["__ansible_unsafe"] if set(d) == {"__ansible_unsafe"} else d)


def _hosts(inv, group):
    return sorted(inv.get(group, {}).get("hosts", []))


def test_a_member_sees_its_projects_instances_with_their_variables_and_groups(cloud):
    inv = _inventory(cloud, {"username": "alice", "password": "pw", "project": "pa"})
    assert _hosts(inv, "bootflow_instances") == ["db", "web"]
    web = inv["_meta"]["hostvars"]["web"]
    assert web["ansible_host"] == cloud["port"]["ip"]
    assert web["bootflow_uuid"] == cloud["web"].uuid
    assert (web["bootflow_status"], web["bootflow_hypervisor"], web["bootflow_flavor"], web["bootflow_image"]) == (
        "ACTIVE", "hv1", "m1.tiny", "img")
    assert web["bootflow_networks"] == {"net": cloud["port"]["ip"]} and web["bootflow_ips"] == [cloud["port"]["ip"]]
    assert "ansible_host" not in inv["_meta"]["hostvars"]["db"]   # no port yet
    assert _hosts(inv, "bootflow_status_active") == ["web"]
    assert _hosts(inv, "bootflow_status_build") == ["db"]
    assert _hosts(inv, "bootflow_host_hv1") == ["web"]
    assert _hosts(inv, "bootflow_flavor_m1_tiny") == ["db", "web"]


def test_statuses_keyed_groups_and_compose(cloud):
    inv = _inventory(cloud, {"username": "alice", "password": "pw", "project": "pa", "statuses": ["active"],
                             "keyed_groups": [{"key": "bootflow_flavor", "prefix": "flavor"}],
                             "compose": {"ansible_ssh_common_args": "'-o ProxyJump=root@' ~ bootflow_hypervisor"}})
    assert _hosts(inv, "bootflow_instances") == ["web"]
    assert _hosts(inv, "flavor_m1_tiny") == ["web"]
    assert inv["_meta"]["hostvars"]["web"]["ansible_ssh_common_args"] == "-o ProxyJump=root@hv1"


def test_an_admin_sees_every_project_only_when_asked_and_same_names_stay_apart(cloud):
    own = _inventory(cloud, {"username": "admin", "password": "pw", "project": "admin"})
    assert _hosts(own, "bootflow_instances") == []
    every = _inventory(cloud, {"username": "admin", "password": "pw", "project": "admin", "all_projects": True})
    assert _hosts(every, "bootflow_instances") == sorted(
        ["db", "web-" + cloud["web"].uuid[:8], "web-" + cloud["web_b"].uuid[:8]])


def test_a_member_may_not_list_every_project_and_bad_credentials_say_why(cloud):
    proc = _inventory(cloud, {"username": "alice", "password": "pw", "project": "pa", "all_projects": True}, check=False)
    assert proc.returncode != 0 and "compute:get_all_tenants" in proc.stderr, proc.stderr[-2000:]
    proc = _inventory(cloud, {"username": "alice", "password": "wrong", "project": "pa"}, check=False)
    assert proc.returncode != 0 and "bootflow.cloud.instances" in proc.stderr, proc.stderr[-2000:]
    proc = _inventory(cloud, {"auth_token": "gAAAAABnot-a-token"}, check=False)
    assert proc.returncode != 0 and "token" in proc.stderr, proc.stderr[-2000:]


def test_a_file_not_named_bootflow_yml_is_not_this_plugins(cloud):
    proc = _inventory(cloud, {"username": "alice", "password": "pw", "project": "pa"}, name="my.yml", check=False)
    assert proc.returncode != 0
