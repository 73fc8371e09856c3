# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, findings 5-7, replayed as a member through bootflow.cloud.image's controller code
(``registry.image_request``, what the action plugin calls): each attack is refused with a clear error and
leaves the whole database and the image store as they were.

- 5: another project's community image is not found by name (tests of the Glance backend:
  test_image_sharing_glance.py, test_image_members.py);
- 6: ``filename`` only from the operator's upload directory, never from bootflow's state;
- 7: ``url`` only to what the operator's import filters allow (no connection is made otherwise), at most
  image_size_cap bytes, within the project's image quota.
"""

from __future__ import annotations

import http.server
import os
import socket
import threading

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import intake as _intake
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
)

MIB = 1024 * 1024


@pytest.fixture()
def cloud(tmp_path, monkeypatch):
    state = tmp_path / "state"
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(state))
    config = tmp_path / "operator.yml"
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(config))
    db = _db.open_db(None, state_dir=str(state))
    keys = _identity.key_repository(str(state))
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {"admin": _identity.issue_token(db, keys, "admin", "pw", "admin")[1]}
    for project, user in (("pa", "alice"), ("pb", "bob")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, "member", "present", False)
        auth[user] = _identity.issue_token(db, keys, user, "pw", project)[1]
    (state / "admin-password").write_text("s3cret-admin\n")
    (state / "admin-password").chmod(0o600)
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    disk = uploads / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    other = uploads / "other.raw"
    other.write_bytes(b"\1" * 4096)
    c = {"db": db, "auth": auth, "state": state, "uploads": uploads, "disk": str(disk), "other": str(other),
         "config": config, "tmp": tmp_path}
    operator(c, upload_dir=str(uploads))
    yield c
    db.dispose()


def operator(c, **image):
    """The operator's configuration file (section image)."""
    lines = ["image:"] + ["  %s: %s" % (k, _yaml(v)) for k, v in image.items()]
    c["config"].write_text("\n".join(lines) + "\n" if image else "{}\n")
    c["config"].chmod(0o600)


def _yaml(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[%s]" % ", ".join(str(v) for v in value)
    return str(value)


def request(c, who, name, **kw):
    req = dict(name=name, filename=None, url=None, url_timeout=5, validate_certs=True, disk_format="raw",
               container_format="bare", visibility=None, min_disk=0, min_ram=0, properties={}, state="present")
    req.update(kw)
    return _images.image_request(c["db"], c["auth"][who], str(c["state"]), req, False)


def everything(c):
    """The whole database and every file of the state dir (the image store included), with contents' sizes."""
    with c["db"].tx() as conn:
        rows = {t.name: sorted(repr(tuple(r)) for r in conn.execute(t.select())) for t in _db.METADATA.sorted_tables}
    files = sorted((os.path.relpath(os.path.join(top, f), c["state"]), os.path.getsize(os.path.join(top, f)))
                   for top, _dirs, names in os.walk(c["state"]) for f in names if not f.startswith("bootflow.db"))
    return rows, files


def find(c, who, ref):
    with c["db"].tx() as conn:
        return _images.find_image(conn, ref, c["auth"][who])


# --- finding 5: community images do not squat names ---------------------------------------------------------

def test_attack_community_image_squatting(cloud):
    c = cloud
    _ch, squat, _d = request(c, "bob", "cirros", filename=c["other"], visibility="community")
    before = everything(c)
    with pytest.raises(NotFound, match="Image cirros could not be found"):
        find(c, "alice", "cirros")
    with pytest.raises(NotFound, match="Image cirros could not be found"):
        request(c, "alice", "cirros", state="deactivated")
    with pytest.raises(NotFound):
        find(c, "admin", "cirros")                      # not even an admin's lookup by name sees it
    assert everything(c) == before
    assert find(c, "alice", squat["id"]).id == squat["id"]   # bootable by ID
    # the admin registers the public cirros: not blocked by bob's image
    changed, public, _d = request(c, "admin", "cirros", filename=c["disk"], visibility="public")
    assert changed and public["visibility"] == "public" and public["id"] != squat["id"]
    assert find(c, "alice", "cirros").id == public["id"] and find(c, "admin", "cirros").id == public["id"]
    # alice's own image of that name is hers, not a conflict with bob's
    changed, own, _d = request(c, "alice", "mine", filename=c["other"])
    assert changed and own["owner"] == c["auth"]["alice"].project_id


# --- finding 6: filename ---------------------------------------------------------------------------------

def _filename_attacks(c):
    state, uploads = c["state"], c["uploads"]
    fernet = sorted((state / "fernet-keys").iterdir())[0]
    link = uploads / "innocent.raw"
    os.symlink(state / "admin-password", link)
    dirlink = uploads / "state"
    os.symlink(state, dirlink)
    os.makedirs(uploads / "sub", exist_ok=True)
    return {
        "admin-password": (str(state / "admin-password"), "in bootflow's state"),
        "fernet key": (str(fernet), "in bootflow's state"),
        "database": (str(state / "bootflow.db"), "in bootflow's state"),
        "symlink in upload_dir": (str(link), "in bootflow's state"),
        "symlinked dir": (str(dirlink / "fernet-keys" / fernet.name), "in bootflow's state"),
        "dot-dot escape": (str(uploads / "sub" / ".." / ".." / "state" / "admin-password"), "in bootflow's state"),
        "outside upload_dir": ("/etc/passwd", "not in the upload directory"),
        "dot-dot to /etc": (str(uploads / ".." / ".." / ".." / ".." / ".." / "etc" / "passwd"), "not in the upload directory"),
    }


@pytest.mark.parametrize("case", ["admin-password", "fernet key", "database", "symlink in upload_dir", "symlinked dir",
                                  "dot-dot escape", "outside upload_dir", "dot-dot to /etc"])
def test_attack_member_filename_outside_the_upload_dir(cloud, case):
    c = cloud
    filename, message = _filename_attacks(c)[case]
    before = everything(c)
    with pytest.raises(AuthError, match=message):
        request(c, "alice", "loot", filename=filename)
    assert everything(c) == before


def test_a_hard_link_of_a_state_file_in_the_upload_dir_is_refused(cloud):
    c = cloud
    os.link(c["state"] / "admin-password", c["uploads"] / "hard.raw")
    before = everything(c)
    with pytest.raises(AuthError, match="hard link of a file in bootflow's state"):
        request(c, "alice", "loot", filename=str(c["uploads"] / "hard.raw"))
    assert everything(c) == before


@pytest.mark.parametrize("case", ["admin-password", "fernet key", "database", "symlink in upload_dir"])
def test_not_even_an_admin_registers_bootflows_state(cloud, case):
    c = cloud
    filename, message = _filename_attacks(c)[case]
    before = everything(c)
    with pytest.raises(AuthError, match=message):
        request(c, "admin", "loot", filename=filename)
    assert everything(c) == before


def test_without_an_upload_dir_only_admins_use_filename(cloud):
    c = cloud
    operator(c)
    before = everything(c)
    with pytest.raises(AuthError, match="filename is for admins only"):
        request(c, "alice", "img", filename=c["disk"])
    assert everything(c) == before
    assert request(c, "admin", "img", filename=c["disk"])[0] is True


def test_a_member_registers_a_file_of_the_upload_dir(cloud):
    changed, image, _d = request(cloud, "alice", "img", filename=cloud["disk"])
    assert changed and image["size"] == 4096 and image["status"] == "active"


# --- finding 7: url ----------------------------------------------------------------------------------------

@pytest.fixture()
def listener():
    """A TCP listener on 127.0.0.1 that records every connection it gets (an attack must make none)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    seen, stop = [], threading.Event()

    def run():
        while not stop.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                continue
            seen.append(addr)
            conn.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    stop.set()
    thread.join()
    sock.close()


def _url_attacks(port):
    return {
        "loopback": ("http://127.0.0.1:%d/x.raw" % port, "port %d is not allowed" % port),
        "loopback port 80": ("http://127.0.0.1/x.raw", "a loopback address"),
        "localhost name": ("http://localhost/x.raw", "a loopback address"),
        "metadata service": ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        "private 10/8": ("http://10.1.2.3/x.raw", "a private address"),
        "ipv4-mapped ipv6": ("http://[::ffff:127.0.0.1]/x.raw", "a loopback address"),
        "decimal loopback": ("http://2130706433/x.raw", "a loopback address"),
        "port not allowed": ("http://93.184.216.34:8080/x.raw", "port 8080 is not allowed"),
        "file": ("file:///etc/passwd", "url must be an http:// or https:// URL"),
        "gopher": ("gopher://127.0.0.1:%d/x" % port, "url must be an http:// or https:// URL"),
    }


@pytest.mark.parametrize("case", ["loopback", "loopback port 80", "localhost name", "metadata service", "private 10/8",
                                  "ipv4-mapped ipv6", "decimal loopback", "port not allowed", "file", "gopher"])
def test_attack_member_url_to_internal_targets(cloud, listener, case):
    c = cloud
    port, seen = listener
    url, message = _url_attacks(port)[case]
    before = everything(c)
    with pytest.raises(InvalidRequest, match=message):
        request(c, "alice", "stolen", url=url)
    assert everything(c) == before and seen == []


def test_the_allowed_ports_alone_do_not_open_loopback(cloud, listener):
    c = cloud
    port, seen = listener
    operator(c, upload_dir=str(c["uploads"]), url_allowed_ports=[port])
    before = everything(c)
    with pytest.raises(InvalidRequest, match="a loopback address"):
        request(c, "alice", "stolen", url="http://127.0.0.1:%d/x.raw" % port)
    assert everything(c) == before and seen == []


class _Server(http.server.BaseHTTPRequestHandler):
    """/big: 3 MiB with a Content-Length; /big-nolength: 3 MiB without one (close-delimited); /redirect-internal:
    a redirect to the metadata service; /small: 4 KiB of zeros."""

    def log_message(self, *args):
        self.server.requests.append(self.path)

    def do_GET(self):
        if self.path == "/redirect-internal":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        if self.path == "/redirect-loopback-port":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/x")
            self.end_headers()
            return
        size = 4096 if self.path == "/small" else 3 * MIB
        self.send_response(200)
        if self.path != "/big-nolength":
            self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for _block in range(size // 4096):
                self.wfile.write(b"\0" * 4096)
        except OSError:
            pass   # the client stopped reading: what a cap does
        self.close_connection = True


@pytest.fixture()
def server(cloud):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    httpd.requests = []
    httpd.protocol_version = "HTTP/1.0"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    # the operator opts in to this loopback server, with a cap of 1 MiB
    operator(cloud, upload_dir=str(cloud["uploads"]), url_allowed_ports=[80, 443, port],
             url_allowed_hosts=["127.0.0.1"], image_size_cap=MIB)
    yield "http://127.0.0.1:%d" % port, httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.mark.parametrize("path", ["/big", "/big-nolength"])
def test_attack_image_over_the_size_cap(cloud, server, path):
    """Refused while streaming (or at once from an honest Content-Length); the staging file is removed and
    no image row is made (the download happens before any row exists)."""
    c = cloud
    base, httpd = server
    before = everything(c)
    with pytest.raises(InvalidRequest, match=r"larger than the image size cap \(image.image_size_cap\)"):
        request(c, "alice", "huge", url=base + path)
    assert everything(c) == before and httpd.requests == [path]


def test_a_lying_content_length_reads_no_more_than_it_says(cloud, server, tmp_path):
    """A server that sends more than its Content-Length: only Content-Length bytes are read (http.client), so
    the cap holds; one that sends less fails the download."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    operator(cloud, url_allowed_ports=[port], url_allowed_hosts=["127.0.0.1"], image_size_cap=MIB)

    def serve(claim, send):
        conn, _a = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % claim)
        try:
            conn.sendall(b"\0" * send)
        except OSError:
            pass
        conn.close()
    for claim, send in ((4096, 2 * MIB), (8192, 100)):
        thread = threading.Thread(target=serve, args=(claim, send), daemon=True)
        thread.start()
        out = tmp_path / ("out-%d" % claim)
        with open(out, "wb") as f:
            try:
                n = _intake.download("http://127.0.0.1:%d/x" % port, f, 5, True, MIB, str)
            except InvalidRequest as exc:
                n = exc
        thread.join()
        if claim == 4096:
            assert n == 4096 and out.stat().st_size == 4096
        else:
            assert isinstance(n, InvalidRequest) and "failed" in str(n)
    srv.close()


def test_a_redirect_to_an_internal_address_is_refused_before_it_is_followed(cloud, server):
    c = cloud
    base, httpd = server
    before = everything(c)
    with pytest.raises(InvalidRequest, match="host 169.254.169.254 is not one the operator allows"):
        request(c, "alice", "hop", url=base + "/redirect-internal")
    with pytest.raises(InvalidRequest, match="port 9 is not allowed"):
        request(c, "alice", "hop", url=base + "/redirect-loopback-port")
    assert everything(c) == before


def test_dns_rebinding_every_resolved_address_is_checked_and_the_checked_one_is_used(cloud, server, monkeypatch):
    """A name that resolves to a public and a private address is refused; the connection goes to the address
    checked (never to a second lookup's answer)."""
    c = cloud
    base, httpd = server
    port = int(base.rsplit(":", 1)[1])
    operator(c, url_allowed_ports=[port], image_size_cap=MIB)
    real = socket.getaddrinfo

    def fake(host, *args, **kwargs):
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    before = everything(c)
    with pytest.raises(InvalidRequest, match="resolves to 127.0.0.1, a loopback address"):
        request(c, "alice", "rebind", url="http://rebind.example:%d/small" % port)
    assert everything(c) == before and httpd.requests == []
    # the connection goes to the checked address: allowed by name, fetched from 127.0.0.1 with Host: rebind.example
    operator(c, url_allowed_ports=[port], url_allowed_hosts=["rebind.example"], image_size_cap=MIB)
    calls = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: calls.append(host) or
                        [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))])
    changed, image, _d = request(c, "admin", "rebind", url="http://rebind.example:%d/small" % port)
    assert changed and image["size"] == 4096 and calls.count("rebind.example") == 2   # check_url: request, then hop
    assert httpd.requests == ["/small"]


def test_attack_image_quota_exceeded(cloud, server):
    c = cloud
    base, httpd = server
    _quota.set_limits(c["db"], c["auth"]["alice"].project_id, {"image_count_total": 1}, False)
    assert request(c, "alice", "first", filename=c["disk"])[0] is True
    before = everything(c)
    with pytest.raises(QuotaExceeded, match="Quota exceeded for image_count_total"):
        request(c, "alice", "second", filename=c["other"])
    with pytest.raises(QuotaExceeded, match="Quota exceeded for image_count_total"):
        request(c, "alice", "second", url=base + "/small")
    assert everything(c) == before and httpd.requests == []       # refused before the download
    # the same image again is no new image: no quota needed
    assert request(c, "alice", "first", filename=c["disk"])[0] is False
    # image_size_total (MiB) counts the image being added
    _quota.set_limits(c["db"], c["auth"]["alice"].project_id, {"image_count_total": 10, "image_size_total": 1}, False)
    big = c["uploads"] / "big.raw"
    big.write_bytes(b"\0" * (MIB - 4096 + 1))
    before = everything(c)
    with pytest.raises(QuotaExceeded, match="Quota exceeded for image_size_total"):
        request(c, "alice", "big", filename=str(big))
    operator(c, upload_dir=str(c["uploads"]), url_allowed_ports=[int(base.rsplit(":", 1)[1])],
             url_allowed_hosts=["127.0.0.1"])
    with pytest.raises(InvalidRequest, match="image_size_total quota"):
        request(c, "alice", "big", url=base + "/big")
    assert everything(c) == before
    with c["db"].tx() as conn:
        assert _quota.usage(conn, c["auth"]["alice"].project_id)["image_count_total"] == 1


def test_settings_must_be_sane(cloud):
    operator(cloud, image_size_cap="lots")
    with pytest.raises(InvalidRequest, match="image.image_size_cap must be a positive number of bytes"):
        request(cloud, "admin", "img", filename=cloud["disk"])
    operator(cloud, url_allowed_schemes=["ftp"])
    with pytest.raises(InvalidRequest, match="url_allowed_schemes must be a list of http and https"):
        request(cloud, "admin", "img", url="ftp://example.com/x")


def test_nothing_is_left_by_a_killed_copy(cloud, monkeypatch):
    """(Glance kills an upload that fails half-way; so does the local store, removing the partial file.)"""
    c = cloud
    monkeypatch.setattr(_images, "HashingReader", _Exploding)
    with pytest.raises(OSError):
        request(c, "alice", "boom", filename=c["disk"])
    with c["db"].tx() as conn:
        status = conn.execute(_db.sa.text("SELECT status FROM images WHERE name='boom'")).scalar()
    assert status == "killed" and not [f for f in os.listdir(c["state"] / "images") if not f.startswith(".")]


class _Exploding(_images.HashingReader):
    def read(self, n=-1):
        raise OSError("disk on fire")


def test_a_path_swapped_after_the_check_is_not_read(cloud, tmp_path):
    """The upload reads the real path check_filename allowed; when the kernel's name of the opened file is
    another one (a directory swapped for a symlink after the check), nothing is copied into the store and
    the image is killed, as Glance kills an upload it stops."""
    c = cloud
    moved = tmp_path / "swapped"
    moved.mkdir()
    target = moved / "disk.raw"
    target.write_bytes(b"\0" * 4096)
    with pytest.raises(AuthError, match="changed after it was checked"):
        _images.apply_image(c["db"], c["auth"]["alice"], str(c["state"]), "swap", str(target), "raw", "bare", None, 0,
                            0, {}, "present", False, checked=c["disk"])
    with c["db"].tx() as conn:
        status = conn.execute(_db.sa.text("SELECT status FROM images WHERE name='swap'")).scalar()
    assert status == "killed" and not os.listdir(c["state"] / "images")


def test_image_store_outside_the_state_dir(cloud, monkeypatch):
    """BOOTFLOW_IMAGE_STORE (a persistent volume under AWX) holds the images; its files are still never image data
    for an upload, even when the operator put it inside the upload directory."""
    c = cloud
    store = c["uploads"] / "store"
    monkeypatch.setenv("BOOTFLOW_IMAGE_STORE", str(store))
    _changed, image, _d = request(c, "admin", "private-one", filename=c["disk"], visibility="private")
    stored = store / image["id"]
    assert stored.is_file() and image["id"] not in os.listdir(c["state"] / "images" if (c["state"] / "images").exists()
                                                              else c["state"])
    assert oct(store.stat().st_mode & 0o777) == "0o700"
    before = everything(c)
    for who in ("alice", "admin"):
        with pytest.raises(AuthError, match="is in bootflow's state"):
            request(c, who, "stolen", filename=str(stored))
    assert everything(c) == before


def test_a_failed_snapshot_upload_leaves_no_record_that_blocks_its_name(cloud, tmp_path):
    """A snapshot whose upload is killed (here: the file swapped after its check) is deleted afterwards, as Nova
    deletes the image of a failed snapshot, so that the next run may use the name; other images stay."""
    c = cloud
    moved = tmp_path / "swapped-snap"
    moved.mkdir()
    target = moved / "disk.raw"
    target.write_bytes(b"\0" * 4096)
    request(c, "alice", "keep-me", filename=c["disk"])
    with pytest.raises(AuthError, match="changed after it was checked"):
        _images.apply_image(c["db"], c["auth"]["alice"], str(c["state"]), "snap", str(target), "raw", "bare", None, 0,
                            0, {"instance_uuid": "u-1", "image_type": "snapshot"}, "present", False, checked=c["disk"])
    with c["db"].tx() as conn:
        project = conn.execute(_db.sa.text("SELECT owner FROM images WHERE name='snap'")).scalar()
    assert _images.discard_failed_snapshot(c["db"], str(c["state"]), project, "snap", "u-2") == 0   # another's: kept
    assert [i.status for i in _images.images_named(c["db"], c["auth"]["alice"], "snap")] == ["killed"]
    assert _images.discard_failed_snapshot(c["db"], str(c["state"]), project, "snap", "u-1") == 1
    assert _images.images_named(c["db"], c["auth"]["alice"], "snap") == []
    assert [i.status for i in _images.images_named(c["db"], c["auth"]["alice"], "keep-me")] == ["active"]


def test_a_snapshot_upload_a_dead_controller_left_saving_is_discarded_on_the_re_run(cloud):
    """A controller killed mid-upload leaves its snapshot's record saving and a partial file in the store: the re-run
    of the snapshot finds it among the images of that name, deletes the record and the file, and keeps the rest."""
    c = cloud
    _changed, snap, _d = _images.apply_image(c["db"], c["auth"]["alice"], str(c["state"]), "snap", c["disk"], "raw",
                                             "bare", None, 0, 0, {"instance_uuid": "u-1", "image_type": "snapshot"},
                                             "present", False)
    request(c, "alice", "keep-me", filename=c["disk"])
    with c["db"].tx() as conn:      # the state a killed upload leaves: saving, its partial file beside the store
        conn.execute(_db.sa.text("UPDATE images SET status='saving', location=NULL WHERE id=:i"), {"i": snap["id"]})
    part = os.path.join(_images.store_dir(str(c["state"])), snap["id"] + ".part")
    os.rename(os.path.join(_images.store_dir(str(c["state"])), snap["id"]), part)
    named = _images.images_named(c["db"], c["auth"]["alice"], "snap")
    assert _images.unfinished_snapshots(named, "u-2") == []
    unfinished = _images.unfinished_snapshots(named, "u-1")
    assert [i.id for i in unfinished] == [snap["id"]]
    _images.discard_unfinished(c["db"], str(c["state"]), unfinished)
    assert _images.images_named(c["db"], c["auth"]["alice"], "snap") == []
    assert not os.path.exists(part)
    assert [i.status for i in _images.images_named(c["db"], c["auth"]["alice"], "keep-me")] == ["active"]
