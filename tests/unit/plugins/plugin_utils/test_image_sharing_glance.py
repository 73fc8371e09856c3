# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared images, visibility updates and deactivate/reactivate with the ``glance`` image backend against
REAL Glance 33 servers (tests/openstack/glance.sh), nothing mocked:

- a noauth Glance with bootflow's local identity (SQLite DB): bootflow decides who sees what, with the
  members it reads from Glance (GET /v2/images/<id>/members) and copies into image_members, members
  added or removed in Glance directly included;
- a Glance behind a real Keystone 30 (tests/openstack/keystone.sh) with Keystone tokens: Glance enforces
  membership itself; bootflow adds/removes/accepts through openstacksdk with the caller's token.

The servers are stopped by their PIDs at the end of the module.
"""

from __future__ import annotations

import os
import secrets
import sys

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import members as _members
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import glance_server  # noqa: E402  # tests/openstack/glance_server.py
import keystone_server  # noqa: E402  # tests/openstack/keystone_server.py

GUEST_QCOW2 = os.path.join(os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest"), "disk.qcow2")


class Ctx:
    """What the action plugins hand to _images (StepContext's shape) for the glance backend."""

    def __init__(self, db, auth, state_dir, glance_url, auth_backend="local", token="local-token-not-sent",
                 auth_url=None):
        self.db, self.auth, self.state_dir, self.auth_backend = db, auth, state_dir, auth_backend
        self.args = {"auth_token": token, "glance_url": glance_url, "image_backend": "glance", "auth_url": auth_url}

    def keystone(self):
        return _keystone.Keystone(self.args["auth_url"], self.state_dir)


def _start(server, what):
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        pytest.fail("cannot start %s (scripts/setup.sh installs it into the OpenStack venv): %s" % (what, exc))
    return server


def dump(db):
    with db.tx() as conn:
        return {t.name: sorted(repr(tuple(r)) for r in conn.execute(t.select())) for t in _db.METADATA.sorted_tables}


def members_of(db, image_id):
    with db.tx() as conn:
        table = _db.table("image_members")
        return {r.member_id: r.status for r in conn.execute(table.select().where(table.c.image_id == image_id))}


def glance_members(client, image_id):
    return {m["member_id"]: m["status"] for m in client.members(image_id)}


# --- noauth Glance, local identity -------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _operator_uses_glance(monkeypatch):
    """The operator's controller: Glance is its image backend (a task can only repeat that)."""
    monkeypatch.setenv("BOOTFLOW_IMAGE_BACKEND", "glance")


@pytest.fixture(scope="module")
def noauth(tmp_path_factory):
    server = _start(glance_server.GlanceServer(tmp_path_factory.mktemp("glance-sharing")), "Glance")
    yield server
    server.stop()
    assert server.stopped()


@pytest.fixture()
def local(tmp_path, noauth):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(None, state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {"admin": _identity.issue_token(db, keys, "admin", "pw", "admin")[1]}
    tag = secrets.token_hex(3)   # one Glance for the module: names of this test's own
    for project, user in (("pa", "alice"), ("pb", "bob"), ("pc", "carol")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, "member", "present", False)
        auth[user] = _identity.issue_token(db, keys, user, "pw", project)[1]
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    c = {"db": db, "auth": auth, "state_dir": state_dir, "glance": noauth, "client": _glance.Glance(noauth.url),
         "name": "shared-%s" % tag}
    c["ctx"] = lambda who: Ctx(db, auth[who], state_dir, noauth.url)
    changed, image, _d = register(c, "alice", c["name"], visibility="shared")
    assert changed and image["visibility"] == "shared"
    c["image"] = image
    yield c
    db.dispose()


def register(c, who, name, filename=GUEST_QCOW2, **kw):
    args = dict(visibility=None, state="present", check_mode=False)
    args.update(kw)
    return _images.apply_image(c["db"], c["auth"][who], c["state_dir"], name, filename, "qcow2", "bare",
                               args["visibility"], 0, 0, {}, args["state"], args["check_mode"],
                               glance=_glance.Glance(c["glance"].url))


def member(c, who, image, project=None, **kw):
    return _members.ensure_member(c["ctx"](who), image, project, None, kw.get("state", "present"),
                                  kw.get("member_status"), kw.get("check_mode", False))


def boot_ref(c, who, ref):
    return _images.boot_image_ref(c["ctx"](who), ref)


def test_noauth_sharing_follows_glances_members(local):
    c, image, client = local, local["image"], local["client"]
    pb, pc = c["auth"]["bob"].project_id, c["auth"]["carol"].project_id
    with pytest.raises(NotFound, match="could not be found in Glance"):
        boot_ref(c, "bob", image["id"])                                  # not a member yet
    changed, got, _row, diff = member(c, "alice", c["name"], project="pb")
    assert changed and got["status"] == "pending" and diff["after"]["status"] == "pending"
    assert glance_members(client, image["id"]) == {pb: "pending"}          # in Glance, through openstacksdk
    assert members_of(c["db"], image["id"]) == {pb: "pending"}
    assert not member(c, "alice", c["name"], project="pb")[0]
    # pending: by ID yes, by name no (Glance's rule, decided by bootflow for a noauth Glance)
    assert boot_ref(c, "bob", image["id"]) == image["id"]
    with pytest.raises(NotFound, match="Image %s could not be found in Glance" % c["name"]):
        boot_ref(c, "bob", c["name"])
    changed, inst = _compute_api.create(c["db"], c["auth"]["bob"], "vm-pending", "m1.tiny", image["id"], ["net"], 0, None, True)
    assert changed and inst is None
    assert member(c, "bob", c["name"], member_status="accepted")[1]["status"] == "accepted"
    assert glance_members(client, image["id"]) == {pb: "accepted"}
    assert boot_ref(c, "bob", c["name"]) == image["id"]
    changed, inst = _compute_api.create(c["db"], c["auth"]["bob"], "vm-b", "m1.tiny", boot_ref(c, "bob", c["name"]), ["net"],
                                        0, None, False)
    assert changed and inst.image_id == image["id"]
    # a member added and accepted in Glance directly (another tool): seen at the next lookup, and copied
    client.add_member(image["id"], pc)
    client.update_member(image["id"], pc, "accepted")
    assert boot_ref(c, "carol", c["name"]) == image["id"]
    assert members_of(c["db"], image["id"]) == {pb: "accepted", pc: "accepted"}
    # ... and removed in Glance directly: refused at the next lookup, the copy follows
    client.remove_member(image["id"], pc)
    with c["db"].tx() as conn:
        row = _images.find_image(conn, image["id"], c["auth"]["carol"])      # (the copy still says member)
    with pytest.raises(NotFound, match="could not be found in Glance"):
        _images.refresh(c["ctx"]("carol"), row)
    assert members_of(c["db"], image["id"]) == {pb: "accepted"}
    # the owner removes bob through bootflow
    assert member(c, "alice", image["id"], project=pb, state="absent")[0]
    assert glance_members(client, image["id"]) == {} and members_of(c["db"], image["id"]) == {}
    with pytest.raises(NotFound):
        boot_ref(c, "bob", image["id"])


@pytest.mark.parametrize("who,kw,error,message", [
    ("bob", {"project": "pc"}, AuthError, "Only the owner of image .* or an admin can add or remove its members"),
    ("alice", {"project": "pb", "member_status": "accepted"}, AuthError, "Only the member project can accept"),
    ("carol", {"member_status": "accepted"}, NotFound, "could not be found in Glance"),
    ("alice", {"project": "nobody"}, NotFound, "Project nobody could not be found"),
])
def test_noauth_refusals_change_nothing_here_or_in_glance(local, who, kw, error, message):
    c, image = local, local["image"]
    member(c, "alice", c["name"], project="pb")
    boot_ref(c, "bob", image["id"])                        # the copy is current before the snapshot
    before = (dump(c["db"]), glance_members(c["client"], image["id"]), c["client"].image(image["id"]))
    with pytest.raises(error, match=message):
        member(c, who, image["id"], **kw)
    assert (dump(c["db"]), glance_members(c["client"], image["id"]), c["client"].image(image["id"])) == before


def test_noauth_visibility_update_deactivate_and_reactivate_in_glance(local):
    c, client = local, local["client"]
    name = c["name"] + "-v"
    _ch, image, _d = register(c, "alice", name)
    assert image["visibility"] == "private" and client.image(image["id"])["visibility"] == "private"
    with pytest.raises(NotFound):
        boot_ref(c, "bob", name)
    # members only for shared images: refused before Glance is asked, nothing changes
    before = (dump(c["db"]), client.image(image["id"]))
    with pytest.raises(Conflict, match="is private: only a shared image has members"):
        member(c, "alice", name, project="pb")
    assert (dump(c["db"]), client.image(image["id"])) == before
    # community: every project boots it by ID; by name only its owner finds it (Glance lists another
    # project's community image only when asked, and a name lookup does not ask: finding 5 of issue 16)
    changed, got, diff = register(c, "alice", name, filename=None, visibility="community")
    assert changed and got["visibility"] == "community" and diff["before"]["visibility"] == "private"
    assert client.image(image["id"])["visibility"] == "community"
    assert not register(c, "alice", name, filename=None, visibility="community")[0]
    assert boot_ref(c, "bob", image["id"]) == image["id"] and boot_ref(c, "alice", name) == image["id"]
    with pytest.raises(NotFound):
        boot_ref(c, "bob", name)
    with pytest.raises(AuthError, match="belongs to another project: only its owner or an admin"):
        register(c, "bob", image["id"], filename=None, visibility="private")
    assert client.image(image["id"])["visibility"] == "community"
    # deactivate: Glance's status, the copy's status, boots refused; check mode first
    assert register(c, "alice", name, filename=None, state="deactivated", check_mode=True)[0]
    assert client.image(image["id"])["status"] == "active"
    changed, got, diff = register(c, "alice", name, filename=None, state="deactivated")
    assert changed and got["status"] == "deactivated" and client.image(image["id"])["status"] == "deactivated"
    assert not register(c, "alice", name, filename=None, state="deactivated")[0]
    with pytest.raises(InvalidRequest, match=r"is not active \(status deactivated\)"):
        _compute_api.create(c["db"], c["auth"]["bob"], "vm-d", "m1.tiny", boot_ref(c, "bob", image["id"]), ["net"], 0, None, False)
    with c["db"].tx() as conn:
        row = _images.find_image(conn, image["id"], c["auth"]["bob"])
    with pytest.raises(InvalidRequest, match="is not active"):          # image_fetch's check after its refresh
        _images.check_bootable(_images.refresh(c["ctx"]("bob"), row)[2])
    changed, got, diff = register(c, "alice", name)                     # present reactivates
    assert changed and got["status"] == "active" and client.image(image["id"])["status"] == "active"
    assert diff["before"]["status"] == "deactivated"


def test_attack_community_image_squatting_a_name_in_glance(local):
    """Finding 5 of issue 16, replayed against a real (noauth) Glance: bob's community image "<tag>-cirros" is
    not what alice finds by that name, and does not keep the admin from registering a public image of it, which
    then everybody but bob finds by name (bob has two of that name: his own and the public one)."""
    c, client = local, local["client"]
    name = c["name"] + "-cirros"
    _ch, squat, _d = register(c, "bob", name, visibility="community")
    before = (dump(c["db"]), client.images_named(name, project_id=c["auth"]["admin"].project_id))
    with pytest.raises(NotFound):
        boot_ref(c, "alice", name)
    with pytest.raises(NotFound):
        register(c, "alice", name, filename=None, state="deactivated")
    assert (dump(c["db"]), client.images_named(name, project_id=c["auth"]["admin"].project_id)) == before
    assert boot_ref(c, "alice", squat["id"]) == squat["id"]       # still bootable by ID
    changed, public, _d = register(c, "admin", name, visibility="public")
    assert changed and public["id"] != squat["id"] and public["visibility"] == "public"
    for who in ("alice", "carol", "admin"):
        assert boot_ref(c, who, name) == public["id"]
    with pytest.raises(Conflict, match="Multiple images are named"):
        boot_ref(c, "bob", name)
    assert client.image(squat["id"])["visibility"] == "community"
    for image in (squat, public):
        client.delete(image["id"])


def test_glance_keeps_members_while_an_image_is_not_shared(local):
    c, image, client = local, local["image"], local["client"]
    pb = c["auth"]["bob"].project_id
    member(c, "alice", c["name"], project="pb")
    member(c, "bob", image["id"], member_status="accepted")
    register(c, "alice", c["name"], filename=None, visibility="private")
    with pytest.raises(NotFound):
        boot_ref(c, "bob", image["id"])
    register(c, "alice", c["name"], filename=None, visibility="shared")
    assert glance_members(client, image["id"]) == {pb: "accepted"}     # Glance kept them, as the docs say
    assert boot_ref(c, "bob", c["name"]) == image["id"]


# --- Glance behind Keystone, Keystone tokens ---------------------------------------------------------

@pytest.fixture(scope="module")
def keystone_cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("glance-sharing-keystone")
    keystone = keystone_server.KeystoneServer(base)
    glance = glance_server.GlanceServer(base, keystone=keystone)
    try:
        _start(keystone, "Keystone")
        _start(glance, "Glance")
        users = {}
        member_role = keystone.role_id("member")
        for project, user in (("share-a", "ua"), ("share-b", "ub")):
            pid = keystone.admin("POST", "/projects", {"project": {"name": project, "domain_id": "default"}})["project"]["id"]
            password = secrets.token_urlsafe(12)
            uid = keystone.admin("POST", "/users", {"user": {"name": user, "password": password, "domain_id": "default",
                                                             "default_project_id": pid}})["user"]["id"]
            keystone.admin("PUT", "/projects/%s/users/%s/roles/%s" % (pid, uid, member_role))
            users[user] = {"project": project, "project_id": pid, "password": password}
        yield {"keystone": keystone, "glance": glance, "users": users}
    finally:
        glance.stop()
        keystone.stop()
        assert glance.stopped() and keystone.all_stopped()


def test_keystone_glance_enforces_sharing_and_bootflow_follows(keystone_cloud, tmp_path, monkeypatch):
    for name in ("OS_AUTH_URL", "OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "BOOTFLOW_AUTH_BACKEND", "BOOTFLOW_GLANCE_URL"):
        monkeypatch.delenv(name, raising=False)
    ks, gl, users = keystone_cloud["keystone"], keystone_cloud["glance"], keystone_cloud["users"]
    state_dir = str(tmp_path / "state")
    db = _db.open_db(None, state_dir=state_dir)
    ctxs = {}
    for user, info in users.items():
        token, auth = _keystone.Keystone(ks.url, state_dir).issue(user, info["password"], info["project"])
        ctxs[user] = Ctx(db, auth, state_dir, gl.url, auth_backend="keystone", token=token, auth_url=ks.url)
    a, b = ctxs["ua"], ctxs["ub"]
    pb = users["ub"]["project_id"]
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    changed, image, _d = _images.apply_image(db, a.auth, state_dir, "ks-shared", GUEST_QCOW2, "qcow2", "bare", "shared",
                                             0, 0, {}, "present", False, glance=_images.glance_for(a))
    assert changed and image["owner"] == users["ua"]["project_id"] and image["visibility"] == "shared"
    # a member cannot read another project in Keystone: a name is refused, the ID is taken as given
    with pytest.raises(NotFound, match="Project share-b could not be found in Keystone .* give the project's ID"):
        _members.ensure_member(a, "ks-shared", "share-b", None, "present", None, False)
    changed, got, _row, _diff = _members.ensure_member(a, "ks-shared", pb, None, "present", None, False)
    assert changed and got["status"] == "pending" and got["member_id"] == pb
    # Glance itself (with ub's token): pending -> the image by ID, not by name
    as_b = _images.glance_for(b)
    assert as_b.image(image["id"])["id"] == image["id"]
    assert [i["id"] for i in as_b.images_named("ks-shared")] == []
    assert _images.boot_image_ref(b, image["id"]) == image["id"]
    with pytest.raises(NotFound, match="could not be found in Glance"):
        _images.boot_image_ref(b, "ks-shared")
    # the owner's token cannot accept (bootflow refuses before Glance; Glance would answer 403 too)
    with pytest.raises(AuthError, match="Only the member project can accept"):
        _members.ensure_member(a, "ks-shared", pb, None, "present", "accepted", False)
    with pytest.raises(AuthError, match="403"):
        _images.glance_for(a).update_member(image["id"], pb, "accepted")
    changed, got, _row, _diff = _members.ensure_member(b, "ks-shared", None, None, "present", "accepted", False)
    assert changed and got["status"] == "accepted"
    assert [i["id"] for i in as_b.images_named("ks-shared")] == [image["id"]]
    changed, inst = _compute_api.create(db, b.auth, "vm-ks", "m1.tiny", _images.boot_image_ref(b, "ks-shared"), ["net"], 0,
                                        None, False)
    assert changed and inst.image_id == image["id"]
    # Glance 33's default policy lets the owner project's member deactivate and reactivate its image
    changed, got, _d = _images.apply_image(db, a.auth, state_dir, "ks-shared", None, "qcow2", "bare", None, 0, 0, {},
                                           "deactivated", False, glance=_images.glance_for(a))
    assert changed and got["status"] == "deactivated" and as_b.image(image["id"])["status"] == "deactivated"
    with pytest.raises(InvalidRequest, match="is not active"):
        _compute_api.create(db, b.auth, "vm-ks2", "m1.tiny", _images.boot_image_ref(b, "ks-shared"), ["net"], 0, None, False)
    _images.apply_image(db, a.auth, state_dir, "ks-shared", None, "qcow2", "bare", None, 0, 0, {}, "present", False,
                        glance=_images.glance_for(a))
    assert as_b.image(image["id"])["status"] == "active"
    # removed: Glance hides the image from ub (404); bootflow's refresh refuses and forgets ub's membership
    assert _members.ensure_member(a, image["id"], pb, None, "absent", None, False)[0]
    assert as_b.image(image["id"]) is None
    with db.tx() as conn:
        row = _images.find_image(conn, image["id"], a.auth)
    with pytest.raises(NotFound, match="could not be found in Glance"):
        _images.refresh(b, row)
    assert members_of(db, image["id"]) == {}
    with db.tx() as conn:
        assert instances.get_instance(conn, inst.uuid, b.auth).image_id == image["id"]   # it keeps its instance
    db.dispose()
