# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``glance`` image backend (plugin_utils/_glance.py, _images.py) against a REAL Glance 33.

Glance (tests/openstack/glance.sh) runs for this module on SQLite + its file store under uwsgi on
127.0.0.1 and a free port, WITHOUT authentication: that is how the glance backend works with
bootflow's local identity (the controller calls Glance without a token, Glance sees an admin,
bootflow's policy and project scoping decide). The Keystone-token flavour runs in
tests/integration/test_glance.py. Glance is stopped by its PID at the end.

The bootflow DB is SQLite here (the images table logic is the same on PostgreSQL; the mirror's
insert race is serialised by _db.lock, exercised by the parallel boots of test_glance.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import glance_server  # noqa: E402  # tests/openstack/glance_server.py

GUEST_DIR = os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest")


@pytest.fixture(autouse=True)
def _operator_uses_glance(monkeypatch):
    """The operator's controller: Glance is its image backend (a task can only repeat that)."""
    monkeypatch.setenv("BOOTFLOW_IMAGE_BACKEND", "glance")


@pytest.fixture(scope="module")
def glance(tmp_path_factory):
    server = glance_server.GlanceServer(tmp_path_factory.mktemp("glance-noauth"))
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail("cannot start Glance (scripts/setup.sh installs it into the OpenStack venv): %s" % exc)
    yield server
    server.stop()
    assert server.stopped()


class Ctx:
    """What the action plugins hand to _images (StepContext's shape): args, caller, DB, identity backend."""

    def __init__(self, db, auth, state_dir, glance_url, token="local-token-not-sent"):
        self.db, self.auth, self.state_dir = db, auth, state_dir
        self.args = {"auth_token": token, "glance_url": glance_url, "image_backend": "glance"}
        self.auth_backend = "local"


@pytest.fixture()
def cloud(tmp_path, glance):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(None, state_dir=state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    keys = _identity.key_repository(state_dir)
    _tok, admin = _identity.issue_token(db, keys, "admin", "pw", "admin")
    _identity.ensure_project(db, "demo", None, True, "present", False)
    _identity.ensure_user(db, "alice", "pw2", "demo", True, False, "present", False)
    _identity.ensure_role_assignment(db, "alice", "demo", "member", "present", False)
    _tok, alice = _identity.issue_token(db, keys, "alice", "pw2", "demo")
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    yield {"db": db, "admin": admin, "alice": alice, "state_dir": state_dir, "tmp": tmp_path,
           "ctx": lambda auth: Ctx(db, auth, state_dir, glance.url), "glance": glance}
    db.dispose()


def _client(cloud):
    return _glance.Glance(cloud["glance"].url)


def _rows(db):
    with db.tx() as conn:
        return [dict(r._mapping) for r in conn.execute(_db.table("images").select().order_by(_db.table("images").c.id))]


def _sha512(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha512").hexdigest()


def _register(cloud, name, auth=None, filename=None, **kw):
    auth = auth or cloud["admin"]
    args = dict(disk_format="qcow2", container_format="bare", visibility="public", min_disk=0, min_ram=0,
                properties={}, state="present", check_mode=False)
    args.update(kw)
    changed, image, _diff = _images.apply_image(cloud["db"], auth, cloud["state_dir"], name,
                                                filename or os.path.join(GUEST_DIR, "disk.qcow2"), glance=_client(cloud),
                                                **args)
    return changed, image


def test_upload_maps_every_field_to_glance_and_mirrors_the_record(cloud):
    changed, image = _register(cloud, "g-up", min_disk=1, min_ram=64, visibility="private",
                               properties={"hw_disk_bus": "virtio", "os_distro": "busybox", "hw_video_ram": 8})
    assert changed
    got = _client(cloud).image(image["id"])
    assert (got["name"], got["disk_format"], got["container_format"], got["visibility"], got["min_disk"],
            got["min_ram"], got["status"]) == ("g-up", "qcow2", "bare", "private", 1, 64, "active")
    assert (got["hw_disk_bus"], got["os_distro"], got["hw_video_ram"]) == ("virtio", "busybox", "8")
    assert got["owner"] == cloud["admin"].project_id          # noauth Glance: bootflow's project is the owner
    assert got["os_hash_algo"] == "sha512" and got["os_hash_value"] == _sha512(os.path.join(GUEST_DIR, "disk.qcow2"))
    # the bootflow record is Glance's, under Glance's id, pointing at it
    assert image["id"] == got["id"] and image["checksum"] == got["checksum"] and image["os_hash_value"] == got["os_hash_value"]
    assert image["location"] == "glance+%s/v2/images/%s" % (cloud["glance"].url, got["id"])
    assert image["properties"] == {"hw_disk_bus": "virtio", "os_distro": "busybox", "hw_video_ram": "8"}
    assert image["virtual_size"] == got["virtual_size"] == 64 * 1024 * 1024
    # the file went into Glance's store, not ours
    assert os.listdir(_images.store_dir(cloud["state_dir"])) == []
    assert os.path.getsize(os.path.join(cloud["glance"].store_dir, got["id"])) == got["size"]


def test_upload_is_idempotent_and_images_are_immutable(cloud):
    _changed, first = _register(cloud, "g-idem")
    changed, again = _register(cloud, "g-idem")
    assert not changed and again["id"] == first["id"]
    with pytest.raises(Conflict, match="already exists in Glance .* with different content"):
        _register(cloud, "g-idem", filename=os.path.join(GUEST_DIR, "disk.raw"), disk_format="raw")
    assert [i["id"] for i in _client(cloud).images_named("g-idem")] == [first["id"]]


@pytest.mark.parametrize("case", ["lying raw", "lying qcow2", "backing file", "reserved property", "missing file"])
def test_bad_uploads_are_refused_before_glance_is_asked(cloud, case):
    tmp = cloud["tmp"]
    qemu_img = shutil.which("qemu-img")
    assert qemu_img, "qemu-img is missing (scripts/setup.sh installs qemu-utils)"
    kw, filename, msg = {}, None, None
    if case == "lying raw":
        kw, msg = {"disk_format": "raw"}, "is qcow2 but disk_format says raw"
    elif case == "lying qcow2":
        filename, msg = os.path.join(GUEST_DIR, "disk.raw"), "is raw but disk_format says qcow2"
    elif case == "backing file":
        filename = str(tmp / "backed.qcow2")
        subprocess.run([qemu_img, "create", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", filename],
                       check=True, stdout=subprocess.DEVNULL)
        msg = r"is a qcow2 with a backing file \(/etc/hostname\)"
    elif case == "reserved property":
        kw, msg = {"properties": {"owner": "someone-else"}}, r"must not set Glance's own image attributes \(owner\)"
    else:
        filename, msg = str(tmp / "nope.qcow2"), "does not exist on the controller"
    requests_before = cloud["glance"].requests()
    with pytest.raises(InvalidRequest, match=msg):
        _register(cloud, "g-bad", filename=filename, **kw)
    assert _client(cloud).images_named("g-bad") == []
    assert _rows(cloud["db"]) == []
    # (the only requests were the name lookups of _register and this test)
    assert all(method == "GET" for method, _p, _s in cloud["glance"].requests()[len(requests_before):])


def test_absent_deletes_in_glance_unless_in_use(cloud):
    db, admin = cloud["db"], cloud["admin"]
    _changed, image = _register(cloud, "g-del")
    _compute_api.create(db, admin, "vm-del", "m1.tiny", image["id"], ["net"], 0, None, False)
    with pytest.raises(Conflict, match="is used by 1 instance"):
        _register(cloud, "g-del", state="absent")
    assert _client(cloud).image(image["id"])["status"] == "active"
    with db.tx() as conn:
        conn.execute(_db.table("instances").update().values(deleted=1, vm_state="deleted"))
    changed, _none = _register(cloud, "g-del", state="absent")
    assert changed and _client(cloud).image(image["id"]) is None
    assert [r["status"] for r in _rows(db) if r["id"] == image["id"]] == ["deleted"]
    assert _register(cloud, "g-del", state="absent") == (False, None)


def test_check_mode_asks_glance_but_changes_nothing(cloud):
    changed, predicted = _register(cloud, "g-check", check_mode=True)
    assert changed and predicted["name"] == "g-check" and predicted["size"] == os.path.getsize(os.path.join(GUEST_DIR, "disk.qcow2"))
    assert _client(cloud).images_named("g-check") == [] and _rows(cloud["db"]) == []


def test_boot_lookup_finds_glance_images_by_name_and_scopes_them(cloud):
    db, admin, alice = cloud["db"], cloud["admin"], cloud["alice"]
    _changed, public = _register(cloud, "g-public")
    _changed, private = _register(cloud, "g-private", visibility="private")
    # an image someone registered in Glance directly (not through bootflow): found by name, mirrored
    direct = _client(cloud).create({"name": "g-direct", "disk_format": "raw", "container_format": "bare",
                                    "visibility": "public", "min_ram": 64})
    raw = os.path.join(GUEST_DIR, "disk.raw")
    with open(raw, "rb") as f:
        _client(cloud).upload(direct["id"], _images.HashingReader(f, os.path.getsize(raw)))
    with db.tx() as conn:
        conn.execute(_db.table("images").delete().where(_db.table("images").c.id == public["id"]))
    ctx = cloud["ctx"](alice)
    assert _images.boot_image_ref(ctx, "g-public") == public["id"]       # re-mirrored after the row was gone
    assert _images.boot_image_ref(ctx, "g-direct") == direct["id"]
    assert _images.boot_image_ref(ctx, direct["id"]) == direct["id"]
    with pytest.raises(NotFound, match="Image g-private could not be found"):
        _images.boot_image_ref(ctx, "g-private")                          # admin's private image: not alice's
    assert _images.boot_image_ref(cloud["ctx"](admin), "g-private") == private["id"]
    with pytest.raises(NotFound, match="could not be found in Glance"):
        _images.boot_image_ref(ctx, "g-nothing")
    rows = {r["id"]: r for r in _rows(db)}
    assert rows[direct["id"]]["min_ram"] == 64 and rows[direct["id"]]["owner"] is None
    # nova-api's create takes the id and checks the mirrored min_ram against the flavor (128 MB >= 64)
    changed, inst = _compute_api.create(db, alice, "vm-g", "m1.tiny", _images.boot_image_ref(ctx, "g-direct"), ["net"], 0, None, False)
    assert changed and inst.image_id == direct["id"]
    # the local backend ignores Glance
    ctx.args["image_backend"] = "local"
    os.environ["BOOTFLOW_IMAGE_BACKEND"] = "local"   # (the autouse fixture restores it)
    assert _images.boot_image_ref(ctx, "g-direct") == "g-direct"


def test_refresh_follows_glance_and_notices_a_deleted_image(cloud):
    db, admin = cloud["db"], cloud["admin"]
    _changed, image = _register(cloud, "g-refresh", min_ram=32)
    with db.tx() as conn:
        row = _images.find_image(conn, image["id"], admin)
    client = _client(cloud)
    client._call("PATCH", "/images/%s" % image["id"], json=[{"op": "replace", "path": "/min_ram", "value": 96}],
                 headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    glance, record, row = _images.refresh(cloud["ctx"](admin), row)
    assert glance.url == cloud["glance"].url and record["min_ram"] == 96 and row.min_ram == 96
    client.delete(image["id"])
    with pytest.raises(NotFound, match="could not be found in Glance"):
        _images.refresh(cloud["ctx"](admin), row)
    assert [r["status"] for r in _rows(db) if r["id"] == image["id"]] == ["deleted"]


def test_download_verifies_glance_hash_while_streaming(cloud, tmp_path):
    _changed, image = _register(cloud, "g-dl")
    client = _client(cloud)
    record = client.image(image["id"])
    with open(tmp_path / "ok", "wb") as out:
        assert client.download(record, out, _glance.expected_hashes(record)) == record["size"]
    assert _sha512(tmp_path / "ok") == record["os_hash_value"]
    # corrupt Glance's stored file (same size): Glance serves it, the controller refuses it
    stored = os.path.join(cloud["glance"].store_dir, image["id"])
    with open(stored, "r+b") as f:
        f.seek(1 << 20)
        f.write(b"\xde\xad\xbe\xef")
    with open(tmp_path / "bad", "wb") as out, pytest.raises(InvalidRequest, match=r"checksum mismatch \(sha512\)"):
        client.download(record, out, _glance.expected_hashes(record))


def test_glance_errors_are_clear(cloud):
    dead = glance_server.free_port()
    with pytest.raises(InvalidRequest, match=r"cannot reach Glance at http://127.0.0.1:%d \(connection refused\)" % dead):
        _glance.Glance("http://127.0.0.1:%d/v2/" % dead).images_named("x")
    with pytest.raises(InvalidRequest, match="glance_url must be an http"):
        _glance.Glance("ftp://x")
    with pytest.raises(InvalidRequest, match="image_backend must be one of local, glance, got 'swift'"):
        _images.resolve_backend("swift")
    assert _glance.parse_location("glance+http://h:9292/v2/images/abc") == ("http://h:9292", "abc")
    assert _glance.parse_location("/root/.bootflow/images/abc") is None
