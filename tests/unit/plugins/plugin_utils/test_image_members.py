# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image visibility, sharing (image members) and deactivation with the local image backend, on a real
SQLite file and a real PostgreSQL server (the ``backend`` fixture): Glance's four visibilities through
the one rule (_images.visible / find_image), bootflow.cloud.image_member's rules (the owner adds and
removes, the member sets its status, only shared images have members), visibility updates,
deactivate/reactivate, idempotency, check mode, --diff, and every refusal leaving the DB as it was.

Projects: pa (alice, member: owns the images), pb (bob, member; rita, reader), pc (carol, member),
admin. The glance backend runs the same rules against a real Glance: test_image_sharing_glance.py.
"""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import members as _members
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class Ctx:
    """What the action plugins hand to _images (StepContext's shape), local identity and image backend."""

    def __init__(self, db, auth, state_dir):
        self.db, self.auth, self.state_dir = db, auth, state_dir
        self.args = {"auth_token": "not-sent", "image_backend": "local"}
        self.auth_backend = "local"


@pytest.fixture()
def cloud(tmp_path, backend):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(backend.new_db_url(), state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {"admin": _identity.issue_token(db, keys, "admin", "pw", "admin")[1]}
    for project, user, role in (("pa", "alice", "member"), ("pb", "bob", "member"), ("pb", "rita", "reader"),
                                ("pc", "carol", "member")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, role, "present", False)
        auth[user] = _identity.issue_token(db, keys, user, "pw", project)[1]
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 65536)
    other = tmp_path / "other.raw"
    other.write_bytes(b"\1" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    c = {"db": db, "auth": auth, "state_dir": state_dir, "disk": str(disk), "other": str(other)}
    c["shared"] = register(c, "alice", "shared-img", visibility="shared")[1]
    c["private"] = register(c, "alice", "priv-img")[1]
    c["community"] = register(c, "carol", "comm-img", visibility="community")[1]
    c["public"] = register(c, "admin", "pub-img", visibility="public")[1]
    yield c
    db.dispose()


def register(c, who, name, filename="disk", visibility=None, state="present", check_mode=False):
    """bootflow.cloud.image's logic as ``who``: (changed, image, diff); ``filename`` None: no file."""
    filename = c["disk"] if filename == "disk" else filename
    return _images.apply_image(c["db"], c["auth"][who], c["state_dir"], name, filename, "raw", "bare",
                               visibility, 0, 0, {}, state, check_mode)


def member(c, who, image, project=None, state="present", member_status=None, check_mode=False):
    """bootflow.cloud.image_member's logic as ``who``: (changed, member, image row, diff)."""
    ctx = Ctx(c["db"], c["auth"][who], c["state_dir"])
    return _members.ensure_member(ctx, image, project, None, state, member_status, check_mode)


def find(c, who, ref, listed="accepted"):
    with c["db"].tx() as conn:
        return _images.find_image(conn, ref, c["auth"][who], listed=listed)


def sees(c, who, ref):
    try:
        return find(c, who, ref).id
    except NotFound:
        return None


def dump(db):
    """Every row of every table, order-independent: what a refused request must leave as it was."""
    with db.tx() as conn:
        return {t.name: sorted(repr(tuple(r)) for r in conn.execute(t.select())) for t in _db.METADATA.sorted_tables}


def members_of(c, image_id):
    with c["db"].tx() as conn:
        table = _db.table("image_members")
        return {r.member_id: r.status for r in conn.execute(table.select().where(table.c.image_id == image_id))}


def pid(c, who):
    return c["auth"][who].project_id


# --- the one rule ------------------------------------------------------------------------------------

@pytest.mark.parametrize("visibility,status,by_id,owner_sees,member_sees,other_sees", [
    ("private", None, True, True, False, False),
    ("private", "accepted", True, True, False, False),       # members of a non-shared image do not count
    ("public", None, False, True, True, True),
    ("community", None, True, True, True, True),             # any project by ID...
    ("community", None, False, True, False, False),          # ...but by name only its owner (finding 5)
    ("shared", None, True, True, False, False),              # not a member: not found, even by ID
    ("shared", "pending", True, True, True, False),          # Glance: a pending member uses it by ID...
    ("shared", "pending", False, True, False, False),        # ...but does not find it by name
    ("shared", "rejected", True, True, True, False),
    ("shared", "rejected", False, True, False, False),
    ("shared", "accepted", False, True, True, False),
])
def test_visibility_rule(cloud, visibility, status, by_id, owner_sees, member_sees, other_sees):
    auth = cloud["auth"]
    image = {"visibility": visibility, "owner": pid(cloud, "alice")}
    assert _images.visible(auth["alice"], image, None, by_id) is owner_sees
    assert _images.visible(auth["bob"], image, status, by_id) is member_sees
    assert _images.visible(auth["carol"], image, None, by_id) is other_sees
    # an admin sees everything, but another project's community image by ID only (Glance's default list)
    assert _images.visible(auth["admin"], image, None, by_id) is (by_id or visibility != "community")
    # an admin working on its own project's images by name (as_user) sees what its project would
    assert _images.visible(auth["admin"], image, None, False, as_user=True) is (visibility == "public")
    assert _images.visible(auth["bob"], image, status, False, listed="all") is (
        visibility == "public" or (visibility == "shared" and status is not None))


def test_community_images_are_every_projects_by_id_but_found_by_name_only_by_their_owner(cloud):
    """Finding 5 (issue 16): another project's community image is bootable by ID, but a lookup by name (Glance's
    default list) does not see it, so it can neither capture a name nor block one."""
    comm = cloud["community"]
    for who in ("alice", "bob", "carol", "admin"):
        assert sees(cloud, who, comm["id"]) == comm["id"]
        assert sees(cloud, who, "comm-img") == (comm["id"] if who == "carol" else None)
    changed, inst = _compute_api.create(cloud["db"], cloud["auth"]["bob"], "vm-comm", "m1.tiny", comm["id"], ["net"], 0,
                                        None, False)
    assert changed and inst.image_id == comm["id"]
    with pytest.raises(NotFound):
        _compute_api.create(cloud["db"], cloud["auth"]["bob"], "vm-comm2", "m1.tiny", "comm-img", ["net"], 0, None, False)
    # bob's own registration under that name is his own image, not a conflict with carol's
    changed, own, _d = register(cloud, "bob", "comm-img", filename=cloud["other"])
    assert changed and own["owner"] == pid(cloud, "bob") and sees(cloud, "bob", "comm-img") == own["id"]


def test_private_image_of_another_project_is_not_found_anywhere(cloud):
    priv = cloud["private"]
    before = dump(cloud["db"])
    for ref in ("priv-img", priv["id"]):
        assert sees(cloud, "bob", ref) is None
        with pytest.raises(NotFound, match="Image %s could not be found" % ref):
            _compute_api.create(cloud["db"], cloud["auth"]["bob"], "vm-x", "m1.tiny", ref, ["net"], 0, None, False)
        with pytest.raises(NotFound, match="Image %s could not be found" % ref):
            member(cloud, "bob", ref, member_status="accepted")       # no leak: not "not a member"
        with pytest.raises(NotFound, match="Image %s could not be found" % ref):
            member(cloud, "bob", ref, project="pc")
    assert dump(cloud["db"]) == before
    assert sees(cloud, "alice", "priv-img") == priv["id"] and sees(cloud, "admin", "priv-img") == priv["id"]


# --- sharing -------------------------------------------------------------------------------------------

def test_sharing_flow_pending_accepted_rejected_removed(cloud):
    db, bob, shared = cloud["db"], cloud["auth"]["bob"], cloud["shared"]
    assert sees(cloud, "bob", shared["id"]) is None
    changed, got, image, diff = member(cloud, "alice", "shared-img", project="pb")
    assert changed and got["status"] == "pending" and got["member_id"] == pid(cloud, "bob") and image.id == shared["id"]
    assert diff == {"before": {}, "after": {"image_id": shared["id"], "member_id": pid(cloud, "bob"), "status": "pending"}}
    assert members_of(cloud, shared["id"]) == {pid(cloud, "bob"): "pending"}
    # pending: by ID yes (Glance's rule), by name no; carol sees nothing
    assert sees(cloud, "bob", shared["id"]) == shared["id"] and sees(cloud, "bob", "shared-img") is None
    assert sees(cloud, "carol", shared["id"]) is None and sees(cloud, "carol", "shared-img") is None
    assert find(cloud, "bob", "shared-img", listed="all").id == shared["id"]      # "when asked"
    with pytest.raises(NotFound, match="Image shared-img could not be found"):
        _compute_api.create(db, bob, "vm-b", "m1.tiny", "shared-img", ["net"], 0, None, False)
    assert _compute_api.create(db, bob, "vm-b-id", "m1.tiny", shared["id"], ["net"], 0, None, True) == (True, None)
    # the member accepts (by name: image_member finds images shared with it whatever the status)
    changed, got, _image, diff = member(cloud, "bob", "shared-img", member_status="accepted")
    assert changed and got["status"] == "accepted"
    assert diff["before"]["status"] == "pending" and diff["after"]["status"] == "accepted"
    assert sees(cloud, "bob", "shared-img") == shared["id"]
    changed, inst = _compute_api.create(db, bob, "vm-b", "m1.tiny", "shared-img", ["net"], 0, None, False)
    assert changed and inst.image_id == shared["id"] and inst.project_id == pid(cloud, "bob")
    # rejected: listed no more, still usable by ID
    assert member(cloud, "bob", shared["id"], member_status="rejected")[0]
    assert sees(cloud, "bob", "shared-img") is None and sees(cloud, "bob", shared["id"]) == shared["id"]
    assert member(cloud, "bob", shared["id"], member_status="pending")[1]["status"] == "pending"
    # the owner removes the member: gone by ID and name; bob's instance is untouched
    changed, got, _image, diff = member(cloud, "alice", "shared-img", project=pid(cloud, "bob"), state="absent")
    assert changed and got is None and diff["after"] == {} and diff["before"]["status"] == "pending"
    assert members_of(cloud, shared["id"]) == {}
    assert sees(cloud, "bob", shared["id"]) is None and sees(cloud, "bob", "shared-img") is None
    with pytest.raises(NotFound):
        _compute_api.create(db, bob, "vm-b2", "m1.tiny", shared["id"], ["net"], 0, None, False)
    with db.tx() as conn:
        assert instances.get_instance(conn, inst.uuid, bob).vm_state == instances.BUILDING


def test_membership_is_idempotent_and_check_mode_writes_nothing(cloud):
    shared = cloud["shared"]
    before = dump(cloud["db"])
    changed, got, _i, diff = member(cloud, "alice", "shared-img", project="pb", check_mode=True)
    assert changed and got == {"image_id": shared["id"], "member_id": pid(cloud, "bob"), "status": "pending"}
    assert diff["before"] == {} and diff["after"] == got
    assert dump(cloud["db"]) == before
    assert member(cloud, "alice", "shared-img", project="pb")[0]
    again = member(cloud, "alice", "shared-img", project="pb")
    assert not again[0] and again[3]["before"] == again[3]["after"] and again[1]["status"] == "pending"
    after_add = dump(cloud["db"])
    changed, got, _i, diff = member(cloud, "bob", "shared-img", member_status="accepted", check_mode=True)
    assert changed and got["status"] == "accepted" and diff["after"]["status"] == "accepted"
    assert dump(cloud["db"]) == after_add
    assert member(cloud, "bob", "shared-img", member_status="accepted")[0]
    assert not member(cloud, "bob", "shared-img", member_status="accepted")[0]
    accepted = dump(cloud["db"])
    changed, got, _i, diff = member(cloud, "alice", "shared-img", project="pb", state="absent", check_mode=True)
    assert changed and got is None and diff["after"] == {}
    assert dump(cloud["db"]) == accepted
    assert member(cloud, "alice", "shared-img", project="pb", state="absent")[0]
    assert member(cloud, "alice", "shared-img", project="pb", state="absent")[:2] == (False, None)
    assert dump(cloud["db"]) == before


@pytest.mark.parametrize("who,kw,error,message", [
    ("bob", {"image": "S", "project": "pc"}, AuthError,
     "Only the owner of image shared-img or an admin can add or remove its members"),
    ("bob", {"image": "S", "project": "pb", "state": "absent"}, AuthError, "Only the owner of image shared-img"),
    ("alice", {"image": "S", "project": "pb", "member_status": "accepted"}, AuthError,
     "Only the member project can accept or reject image shared-img"),
    ("alice", {"image": "S", "member_status": "accepted"}, AuthError, "Only the member project can accept"),
    ("bob", {"image": "S", "project": "pc", "member_status": "accepted"}, AuthError,
     "A project sets only its own member status"),
    ("carol", {"image": "S", "member_status": "accepted"}, NotFound, "Image S could not be found"),
    ("rita", {"image": "S", "member_status": "accepted"}, AuthError,
     "Policy doesn't allow image:member_status to be performed"),
    ("rita", {"image": "S", "project": "pc"}, AuthError, "Policy doesn't allow image:member_manage"),
    ("alice", {"image": "priv-img", "project": "pb"}, Conflict,
     "Image priv-img is private: only a shared image has members .*set its visibility to shared first"),
    ("carol", {"image": "comm-img", "project": "pb"}, Conflict, "Image comm-img is community: only a shared image"),
    ("alice", {"image": "S", "project": "pa"}, InvalidRequest, "owns image shared-img; it cannot also be a member"),
    ("alice", {"image": "S", "project": "nobody"}, NotFound, "Project nobody could not be found"),
    ("alice", {"image": "S"}, InvalidRequest, "project is required to add or remove a member"),
    ("alice", {"image": "S", "project": "pb", "state": "absent", "member_status": "accepted"}, InvalidRequest,
     "member_status goes with state present"),
    ("alice", {"image": "S", "project": "pb", "member_status": "maybe"}, InvalidRequest, "member_status must be one of"),
    ("alice", {"image": "no-such-image", "project": "pb"}, NotFound, "Image no-such-image could not be found"),
])
def test_membership_refusals_change_nothing(cloud, who, kw, error, message):
    member(cloud, "alice", "shared-img", project="pb")        # bob is a (pending) member
    kw = dict(kw)
    image = kw.pop("image")
    image = cloud["shared"]["id"] if image == "S" and who != "carol" else ("shared-img" if image == "S" else image)
    message = message.replace("Image S", "Image %s" % image)
    before = dump(cloud["db"])
    with pytest.raises(error, match=message):
        member(cloud, who, image, **kw)
    assert dump(cloud["db"]) == before


def test_a_non_member_gets_not_found_and_an_admin_adds_with_a_status(cloud):
    # bob is no member and the image is not visible to him: "not found", never "not a member"
    with pytest.raises(NotFound, match="Image shared-img could not be found"):
        member(cloud, "bob", "shared-img", member_status="accepted")
    # an admin adds the member and sets its status in one task
    changed, got, _i, _d = member(cloud, "admin", cloud["shared"]["id"], project="pb", member_status="accepted")
    assert changed and got["status"] == "accepted"
    assert members_of(cloud, cloud["shared"]["id"]) == {pid(cloud, "bob"): "accepted"}
    assert member(cloud, "admin", cloud["shared"]["id"], project="pb", state="absent")[0]


def test_own_and_shared_image_of_one_name_conflict_once_accepted(cloud):
    _c, own = register(cloud, "bob", "twin", filename=cloud["other"])[:2]
    _c, theirs = register(cloud, "alice", "twin", visibility="shared")[:2]
    member(cloud, "alice", theirs["id"], project="pb")
    assert find(cloud, "bob", "twin").id == own["id"]                    # pending: only bob's own by name
    member(cloud, "bob", theirs["id"], member_status="accepted")
    with pytest.raises(Conflict, match=r"Multiple images are named twin; use the image ID \((%s, %s|%s, %s)\)" % (
            own["id"], theirs["id"], theirs["id"], own["id"])):
        find(cloud, "bob", "twin")
    assert find(cloud, "bob", own["id"]).id == own["id"] and find(cloud, "bob", theirs["id"]).id == theirs["id"]
    # registering the name again is refused as ambiguous; rejecting the share ends the conflict
    with pytest.raises(Conflict, match="Multiple images are named twin; remove the duplicates first"):
        register(cloud, "bob", "twin", filename=cloud["other"])
    member(cloud, "bob", theirs["id"], member_status="rejected")
    assert find(cloud, "bob", "twin").id == own["id"]
    assert find(cloud, "alice", "twin").id == theirs["id"]               # alice does not see bob's private one


# --- visibility updates ------------------------------------------------------------------------------

def test_visibility_of_an_existing_image_is_updated_with_a_diff(cloud):
    priv = cloud["private"]
    before = dump(cloud["db"])
    changed, got, diff = register(cloud, "alice", "priv-img", filename=None, visibility="shared", check_mode=True)
    assert changed and got["visibility"] == "shared"
    assert (diff["before"]["visibility"], diff["after"]["visibility"]) == ("private", "shared")
    assert dump(cloud["db"]) == before
    changed, got, diff = register(cloud, "alice", "priv-img", filename=None, visibility="shared")
    assert changed and got["visibility"] == "shared" and got["id"] == priv["id"] and diff["after"]["visibility"] == "shared"
    assert register(cloud, "alice", "priv-img", filename=None, visibility="shared")[0] is False
    # with the file (same content), and without visibility: the image keeps it
    assert register(cloud, "alice", "priv-img")[0] is False
    assert find(cloud, "alice", "priv-img").visibility == "shared"
    assert register(cloud, "alice", priv["id"], filename=None, visibility="community")[1]["visibility"] == "community"
    assert sees(cloud, "bob", "priv-img") is None and sees(cloud, "bob", priv["id"]) == priv["id"]
    assert sees(cloud, "alice", "priv-img") == priv["id"]
    assert register(cloud, "alice", "priv-img", visibility="private")[1]["visibility"] == "private"
    assert sees(cloud, "bob", "priv-img") is None


@pytest.mark.parametrize("who,ref,kw,error,message", [
    ("alice", "priv-img", {"visibility": "public"}, AuthError, "Policy doesn't allow image:publicize"),
    ("bob", "pub-img", {"visibility": "private"}, AuthError,
     r"Image pub-img \(.*\) belongs to another project: only its owner or an admin can change its visibility"),
    ("bob", "COMM", {"state": "deactivated"}, AuthError, "only its owner or an admin can deactivate it"),
    ("bob", "comm-img", {"state": "deactivated"}, NotFound, "Image comm-img could not be found"),
    ("bob", "priv-img", {"visibility": "shared"}, InvalidRequest,
     "Image priv-img does not exist: filename or url is required to register it"),
    ("bob", "priv-img", {"state": "deactivated"}, NotFound, "Image priv-img could not be found"),
    ("alice", "priv-img", {"visibility": "secret"}, InvalidRequest, "visibility must be one of public, community"),
])
def test_visibility_and_status_refusals_change_nothing(cloud, who, ref, kw, error, message):
    before = dump(cloud["db"])
    ref = cloud["community"]["id"] if ref == "COMM" else ref
    with pytest.raises(error, match=message):
        register(cloud, who, ref, filename=None, **kw)
    assert dump(cloud["db"]) == before


def test_admin_may_publicize_and_change_any_image_by_id(cloud):
    priv = cloud["private"]
    changed, got, _d = register(cloud, "admin", priv["id"], filename=None, visibility="public")
    assert changed and got["visibility"] == "public" and got["owner"] == pid(cloud, "alice")
    assert sees(cloud, "carol", "priv-img") == priv["id"]


# --- deactivate / reactivate --------------------------------------------------------------------------

def test_deactivate_refuses_boots_and_reactivate_brings_it_back(cloud):
    db, shared = cloud["db"], cloud["shared"]
    member(cloud, "alice", "shared-img", project="pb")
    member(cloud, "bob", "shared-img", member_status="accepted")
    _c, running = _compute_api.create(db, cloud["auth"]["bob"], "vm-running", "m1.tiny", "shared-img", ["net"], 0, None, False)
    before = dump(db)
    changed, got, diff = register(cloud, "alice", "shared-img", filename=None, state="deactivated", check_mode=True)
    assert changed and got["status"] == "deactivated" and diff["before"]["status"] == "active"
    assert dump(db) == before
    changed, got, diff = register(cloud, "alice", "shared-img", filename=None, state="deactivated")
    assert changed and got["status"] == "deactivated" and diff["after"]["status"] == "deactivated"
    assert register(cloud, "alice", "shared-img", filename=None, state="deactivated")[0] is False
    for who in ("alice", "bob"):
        with pytest.raises(InvalidRequest, match=r"Image shared-img is not active \(status deactivated\): its owner or "
                                                 r"an admin deactivated it"):
            _compute_api.create(db, cloud["auth"][who], "vm-new-%s" % who, "m1.tiny", "shared-img", ["net"], 0, None, False)
        with db.tx() as conn:
            with pytest.raises(InvalidRequest, match="is not active"):
                _images.check_bootable(_images.find_image(conn, shared["id"], cloud["auth"][who]))
    with db.tx() as conn:
        assert instances.get_instance(conn, running.uuid, cloud["auth"]["bob"]).image_id == shared["id"]
    # the member may not reactivate it; the owner does (state present, with or without the file)
    with pytest.raises(AuthError, match="only its owner or an admin can reactivate it"):
        register(cloud, "bob", shared["id"], filename=None)
    changed, got, diff = register(cloud, "alice", "shared-img")
    assert changed and got["status"] == "active" and (diff["before"]["status"], diff["after"]["status"]) == (
        "deactivated", "active")
    assert register(cloud, "alice", "shared-img", filename=None)[0] is False
    assert _compute_api.create(db, cloud["auth"]["bob"], "vm-again", "m1.tiny", "shared-img", ["net"], 0, None, False)[0]


def test_only_an_active_image_can_be_deactivated(cloud):
    db = cloud["db"]
    images = _db.table("images")
    with db.tx() as conn:
        conn.execute(images.update().where(images.c.id == cloud["private"]["id"]).values(status="killed"))
    before = dump(db)
    with pytest.raises(Conflict, match="Image priv-img is killed: only an active image can be deactivated"):
        register(cloud, "alice", "priv-img", filename=None, state="deactivated")
    with pytest.raises(Conflict, match="already exists .* with different content"):
        register(cloud, "alice", "priv-img")            # a killed image is not brought back by its file either
    assert dump(db) == before


def test_deleting_an_image_removes_its_members(cloud):
    shared = cloud["shared"]
    member(cloud, "alice", "shared-img", project="pb")
    member(cloud, "alice", "shared-img", project="pc")
    assert set(members_of(cloud, shared["id"])) == {pid(cloud, "bob"), pid(cloud, "carol")}
    changed, got, diff = register(cloud, "alice", "shared-img", filename=None, state="absent")
    assert changed and got is None and diff["before"]["images"][0]["id"] == shared["id"]
    assert members_of(cloud, shared["id"]) == {} and sees(cloud, "bob", shared["id"]) is None


def test_members_outlive_a_visibility_change_away_from_shared(cloud):
    shared = cloud["shared"]
    member(cloud, "alice", "shared-img", project="pb")
    member(cloud, "bob", "shared-img", member_status="accepted")
    register(cloud, "alice", "shared-img", filename=None, visibility="private")
    assert sees(cloud, "bob", shared["id"]) is None and members_of(cloud, shared["id"]) == {pid(cloud, "bob"): "accepted"}
    with pytest.raises(Conflict, match="only a shared image has members"):
        member(cloud, "alice", "shared-img", project="pb", state="absent")
    register(cloud, "alice", "shared-img", filename=None, visibility="shared")
    assert sees(cloud, "bob", "shared-img") == shared["id"]
