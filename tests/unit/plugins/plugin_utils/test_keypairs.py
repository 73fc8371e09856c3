# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key pairs (Nova's os-keypairs) and key injection.

- The OpenSSH public key parser against keys made by ssh-keygen and by cryptography, every supported
  type, and the lines it must refuse; the fingerprints against ``ssh-keygen -l``; a generated private
  key read back by ``ssh-keygen -y``.
- The service on a real SQLite file and a real PostgreSQL server (the ``backend`` fixture): import,
  generate, idempotence, conflict, delete, names per user, another user's key pairs (member refused,
  admin allowed), nova-api's create with ``key_name`` (unknown or another user's key refused with
  nothing written, the key copied into the request, kept after the key pair is deleted), the
  conductor's spec, revision 0006 on a DB with data at 0005.
- The modules through real ansible-playbook runs (SQLite): a generation's result censored in the
  output but registered, and config_drive filling ``public_keys`` from the instance record.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
import os
import struct
import subprocess
import sys

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.host import config_drive as _config_drive
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor, instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import keypairs as _keypairs
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking

sa = _db.sa
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))


# --- keys made by the real tools ------------------------------------------------------------------

def ssh_keygen(tmp_path, kind, bits=None, comment="me@host"):
    """(public key line, path of the .pub file) of a new key made by ssh-keygen."""
    path = tmp_path / ("k-%s-%s" % (kind, bits))
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)]
    if bits:
        argv[4:4] = ["-b", str(bits)]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    pub = str(path) + ".pub"
    with open(pub) as f:
        return f.read(), pub


def keygen_fingerprint(pub, algo):
    """ssh-keygen -l's fingerprint of a .pub file: ``MD5:aa:bb...`` or ``SHA256:...``, and the size."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", algo, "-f", pub], check=True, stdout=subprocess.PIPE,
                         text=True).stdout.split()
    return out[1], int(out[0])


def openssh_line(public_key, comment=""):
    line = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return line + (" " + comment if comment else "")


def blob_of(line):
    return base64.b64decode(line.split()[1])


def ssh_string(data):
    return struct.pack(">I", len(data)) + data


def line_of(declared, blob, comment=""):
    return "%s %s%s" % (declared, base64.b64encode(blob).decode(), " " + comment if comment else "")


@pytest.fixture(scope="module")
def ed_line():
    return openssh_line(ed25519.Ed25519PrivateKey.generate().public_key(), "ed@test")


# --- parsing and fingerprints ----------------------------------------------------------------------

@pytest.mark.parametrize("kind, bits, algorithm", [
    ("ed25519", None, "ssh-ed25519"),
    ("rsa", 2048, "ssh-rsa"),
    ("rsa", 3072, "ssh-rsa"),
    ("ecdsa", 256, "ecdsa-sha2-nistp256"),
    ("ecdsa", 384, "ecdsa-sha2-nistp384"),
    ("ecdsa", 521, "ecdsa-sha2-nistp521"),
])
def test_ssh_keygen_keys_parse_with_ssh_keygens_fingerprints(tmp_path, kind, bits, algorithm):
    text, pub = ssh_keygen(tmp_path, kind, bits, comment="me@host two words")
    key = _keypairs.parse_public_key(text)   # as read from the file: with its newline
    md5, size = keygen_fingerprint(pub, "md5")
    sha256, _size = keygen_fingerprint(pub, "sha256")
    assert (key.algorithm, key.bits, key.comment) == (algorithm, size, "me@host two words")
    assert "MD5:" + key.fingerprint == md5 and key.fingerprint_sha256 == sha256
    assert key.line == text.strip()


def test_cryptography_keys_parse_and_the_line_is_normalised():
    for private, algorithm, bits in ((rsa.generate_private_key(65537, 4096), "ssh-rsa", 4096),
                                     (ec.generate_private_key(ec.SECP384R1()), "ecdsa-sha2-nistp384", 384),
                                     (ed25519.Ed25519PrivateKey.generate(), "ssh-ed25519", 256)):
        line = openssh_line(private.public_key())
        key = _keypairs.parse_public_key("  %s\t  a  comment \n" % line.replace(" ", "   ", 1))
        assert (key.algorithm, key.bits, key.comment) == (algorithm, bits, "a  comment")
        assert key.line == line + " a  comment"
        assert key.fingerprint == _keypairs.fingerprint_md5(blob_of(line))


def test_nova_fingerprint_format(ed_line):
    fp = _keypairs.parse_public_key(ed_line).fingerprint
    assert len(fp) == 47 and fp.count(":") == 15 and fp == fp.lower()


def _refusals():
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    good = openssh_line(ed)
    blob = blob_of(good)
    p256 = blob_of(openssh_line(ec.generate_private_key(ec.SECP256R1()).public_key()))
    rsa1024 = openssh_line(rsa.generate_private_key(65537, 1024).public_key())
    point = p256[-65:]
    off_curve = bytes([4]) + bytes(64)   # (0, 0) is on no NIST curve
    return [
        ("", "it is empty"),
        ("   \n", "it is empty"),
        (good + "\n" + good, "more than one line"),
        (good + "\r\nssh-ed25519 AAAA", "more than one line"),
        ("ssh-ed25519", "base64 key data after ssh-ed25519 is missing"),
        ("ssh-ed25519 AAAA$$$$", "not valid base64"),
        ("ssh-ed25519 " + base64.b64encode(blob).decode().rstrip("=")[:-1], "not valid base64"),
        ('command="ls" ' + good, "type 'command=\"ls\"' is not supported"),
        ("ssh-dss " + base64.b64encode(ssh_string(b"ssh-dss")).decode(), "type 'ssh-dss' is not supported"),
        ("sk-ssh-ed25519@openssh.com AAAA", "is not supported"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "is not supported"),
        ("ssh-rsa " + good.split()[1], "it says ssh-rsa but its key data is of type 'ssh-ed25519'"),
        (line_of("ecdsa-sha2-nistp384", p256), "it says ecdsa-sha2-nistp384 but its key data is of type "
                                               "'ecdsa-sha2-nistp256'"),
        (line_of("ecdsa-sha2-nistp256", ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp384")
                 + ssh_string(point)), "names curve 'nistp384'"),
        (line_of("ecdsa-sha2-nistp256", ssh_string(b"ecdsa-sha2-nistp256") + ssh_string(b"nistp256")
                 + ssh_string(off_curve)), "does not make a valid key"),
        (rsa1024, "the RSA key has 1024 bits; at least 2048 are required"),
        (line_of("ssh-ed25519", blob[:-1]), "ends inside a field"),
        (line_of("ssh-ed25519", blob + b"\0\0"), "ends inside a length field"),
        (line_of("ssh-ed25519", blob + ssh_string(b"x")), "one 32-byte value"),
        (line_of("ssh-ed25519", ssh_string(b"ssh-ed25519") + ssh_string(bytes(31))), "one 32-byte value"),
        (good + " bell\x07", "control characters"),
        ("x" * 9000, "at most 8192"),
    ]


@pytest.mark.parametrize("index", range(len(_refusals())))
def test_bad_public_keys_are_refused_with_a_clear_message(index):
    text, message = _refusals()[index]
    with pytest.raises(InvalidRequest) as err:
        _keypairs.parse_public_key(text)
    assert message in str(err.value)
    assert str(err.value).startswith("Invalid public key")


def test_ssh_keygen_refuses_what_we_refuse_for_the_type_mismatch(tmp_path, ed_line):
    """The type mismatch is a real defect, not our strictness: ssh-keygen refuses the same line."""
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-rsa %s x\n" % ed_line.split()[1])
    proc = subprocess.run(["ssh-keygen", "-l", "-f", str(bad)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          check=False)
    assert proc.returncode != 0


def test_generate_makes_an_ed25519_pair_ssh_keygen_reads(tmp_path):
    key, private = _keypairs.generate()
    assert key.algorithm == "ssh-ed25519" and key.comment == "Generated-by-bootflow"
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    path = tmp_path / "id"
    path.write_text(private)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], check=True, stdout=subprocess.PIPE,
                             text=True).stdout.split()
    assert derived[:2] == key.line.split()[:2]
    assert _keypairs.generate()[0].blob != key.blob


@pytest.mark.parametrize("name", ["default", "my key", "a@b.c", "x-y_z.1", "k" * 255])
def test_good_names(name):
    _keypairs.validate_keypair_name(name)


@pytest.mark.parametrize("name", ["", "k" * 256, "semi;colon", "tab\tname", "new\nline", "ünï", " lead", "trail ",
                                  "key\n", None])
def test_bad_names(name):
    with pytest.raises(InvalidRequest, match="Invalid key pair name"):
        _keypairs.validate_keypair_name(name)


# --- the service on SQLite and PostgreSQL ------------------------------------------------------------

@pytest.fixture()
def world(tmp_path, backend):
    """admin; alice member and rita reader of pa; bob member of pb; a flavor, an image, a network."""
    state_dir = str(tmp_path / "state")
    db = _db.open_db(backend.new_db_url(), state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {}
    for project, user, role in (("pa", "alice", "member"), ("pb", "bob", "member"), ("pa", "rita", "reader")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, role, "present", False)
        auth[user] = _identity.issue_token(db, keys, user, "pw", project)[1]
    auth["admin"] = _identity.issue_token(db, keys, "admin", "pw", "admin")[1]
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["admin"], state_dir, "img", str(image), "raw", "bare", "public", 0, 0, {}, "present",
                        False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    yield {"db": db, "auth": auth, "state_dir": state_dir}
    db.dispose()


def counts(db):
    with db.tx() as conn:
        return {t: _db.count(conn, t) for t in ("key_pairs", "instances", "volumes", "instance_steps")}


def rows(db):
    with db.tx() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT name, user_id, project_id, type, public_key, fingerprint FROM key_pairs ORDER BY name, user_id"))]


def kp(world, name, public_key=None, who="alice", state="present", check_mode=False, user=None):
    return _keypairs.ensure(world["db"], world["auth"][who], name, public_key, state, check_mode, user=user)


def test_import_is_idempotent_and_another_key_is_a_conflict(world, ed_line):
    db, alice = world["db"], world["auth"]["alice"]
    changed, before, after, private = kp(world, "laptop", ed_line, check_mode=True)
    assert changed and before is None and private is None and after["id"] is None
    assert after["fingerprint"] == _keypairs.parse_public_key(ed_line).fingerprint
    assert counts(db)["key_pairs"] == 0
    changed, before, key, private = kp(world, "laptop", ed_line)
    assert changed and before is None and private is None
    assert (key["name"], key["user_id"], key["project_id"], key["type"], key["public_key"], key["algorithm"],
            key["bits"]) == ("laptop", alice.user_id, alice.project_id, "ssh", ed_line, "ssh-ed25519", 256)
    assert key["fingerprint"] == _keypairs.fingerprint_md5(blob_of(ed_line))
    assert key["fingerprint_sha256"].startswith("SHA256:") and isinstance(key["id"], int) and key["created_at"]
    stored = rows(db)
    # the same key again, also with another comment or blanks: no change, the stored line stays
    for again in (ed_line, ed_line.rsplit(" ", 1)[0] + " other comment", "  %s  \n" % ed_line):
        changed, before, after, private = kp(world, "laptop", again)
        assert not changed and before == after == key and private is None
    # another key under that name: Nova's 409, nothing changed
    other = openssh_line(ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(Conflict, match="Key pair 'laptop' already exists for user .* with another key"):
        kp(world, "laptop", other)
    with pytest.raises(Conflict):
        kp(world, "laptop", other, check_mode=True)
    assert rows(db) == stored
    assert _keypairs.get(db, alice, "laptop") == key
    assert _keypairs.list_keypairs(db, alice) == [key]


def test_generate_returns_the_private_key_once(world, tmp_path):
    db = world["db"]
    changed, _before, after, private = kp(world, "deploy", check_mode=True)
    assert changed and private is None and after["public_key"] is None and counts(db)["key_pairs"] == 0
    changed, before, key, private = kp(world, "deploy")
    assert changed and before is None and private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert key["public_key"].endswith(" Generated-by-bootflow") and key["algorithm"] == "ssh-ed25519"
    # the private key is nowhere in the DB
    with db.tx() as conn:
        dump = json.dumps([list(map(str, r)) for r in conn.execute(sa.text("SELECT * FROM key_pairs"))])
    assert "PRIVATE" not in dump and private.splitlines()[1] not in dump
    path = tmp_path / "deploy"
    path.write_text(private)
    path.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], check=True, stdout=subprocess.PIPE, text=True)
    assert derived.stdout.split()[:2] == key["public_key"].split()[:2]
    # generating again under that name: the existing key pair, without a private key
    changed, before, again, private = kp(world, "deploy")
    assert not changed and private is None and again == before == key
    assert counts(db)["key_pairs"] == 1


def test_delete(world, ed_line):
    db = world["db"]
    kp(world, "laptop", ed_line)
    changed, before, after, _private = kp(world, "laptop", state="absent", check_mode=True)
    assert changed and before["name"] == "laptop" and after is None and counts(db)["key_pairs"] == 1
    changed, before, after, _private = kp(world, "laptop", state="absent")
    assert changed and before["public_key"] == ed_line and counts(db)["key_pairs"] == 0
    assert kp(world, "laptop", state="absent")[:3] == (False, None, None)
    with pytest.raises(NotFound, match="Keypair laptop not found for user"):
        _keypairs.get(db, world["auth"]["alice"], "laptop")
    # the name is free again, for another key
    assert kp(world, "laptop", openssh_line(ed25519.Ed25519PrivateKey.generate().public_key()))[0]


def test_names_are_per_user_and_the_db_keeps_them_unique(world, ed_line):
    db = world["db"]
    assert kp(world, "default", ed_line, who="alice")[0]
    assert kp(world, "default", ed_line, who="bob")[0]   # the same name and key, another user
    assert [k["name"] for k in _keypairs.list_keypairs(db, world["auth"]["bob"])] == ["default"]
    with pytest.raises(NotFound):
        _keypairs.get(db, world["auth"]["rita"], "default")   # rita has none (same project as alice)
    alice = world["auth"]["alice"]
    with pytest.raises(sa.exc.IntegrityError):
        with db.tx() as conn:
            conn.execute(_db.table("key_pairs").insert().values(
                name="default", user_id=alice.user_id, project_id=alice.project_id, type="ssh", public_key=ed_line,
                fingerprint="x", created_at=_db.now()))


def test_bad_input_is_refused_before_anything_is_written(world, ed_line):
    with pytest.raises(InvalidRequest, match="Invalid key pair name"):
        kp(world, "bad;name", ed_line)
    with pytest.raises(InvalidRequest, match="Invalid public key"):
        kp(world, "ok", ed_line + "\n" + ed_line)
    with pytest.raises(InvalidRequest, match="state must be present or absent"):
        kp(world, "ok", ed_line, state="gone")
    assert counts(world["db"])["key_pairs"] == 0


def test_another_users_key_pairs_need_admin(world, ed_line):
    db, auth = world["db"], world["auth"]
    alice = auth["alice"]
    kp(world, "laptop", ed_line, who="alice")
    # a member naming another user (by name or ID, existing or not) is refused, and learns nothing
    calls = []
    for ref in ("bob", auth["bob"].user_id, "nobody"):
        calls += [lambda ref=ref: kp(world, "k", ed_line, user=ref), lambda ref=ref: kp(world, "k", user=ref),
                  lambda ref=ref: kp(world, "k", user=ref, state="absent"),
                  lambda ref=ref: _keypairs.get(db, alice, "k", user=ref),
                  lambda ref=ref: _keypairs.list_keypairs(db, alice, user=ref)]
    calls += [lambda: kp(world, "laptop", who="bob", user="alice", state="absent"),
              lambda: kp(world, "laptop", ed_line, who="bob", user=alice.user_id),
              lambda: _keypairs.get(db, auth["bob"], "laptop", user="alice"),
              lambda: _keypairs.list_keypairs(db, auth["rita"], user="alice")]
    for call in calls:
        with pytest.raises(AuthError, match="os_compute_api:os-keypairs:other_user"):
            call()
    assert rows(db)[0][0:2] == ("laptop", alice.user_id) and counts(db)["key_pairs"] == 1
    # naming oneself is fine
    assert not kp(world, "laptop", ed_line, user="alice")[0]
    assert not kp(world, "laptop", ed_line, user=alice.user_id)[0]
    # a reader may look at its own key pairs, not create or delete any
    with pytest.raises(AuthError, match="os_compute_api:os-keypairs:create"):
        kp(world, "r", ed_line, who="rita")
    with pytest.raises(AuthError, match="os_compute_api:os-keypairs:delete"):
        kp(world, "r", who="rita", state="absent")
    assert _keypairs.list_keypairs(db, auth["rita"]) == []
    # the admin reaches alice's key pairs by her name or ID
    assert _keypairs.get(db, auth["admin"], "laptop", user="alice")["user_id"] == alice.user_id
    changed, _b, made, _p = kp(world, "from-admin", ed_line, who="admin", user=alice.user_id)
    assert changed and made["user_id"] == alice.user_id and made["project_id"] is None
    assert [k["name"] for k in _keypairs.list_keypairs(db, alice)] == ["from-admin", "laptop"]
    assert _keypairs.list_keypairs(db, auth["admin"]) == []   # the admin's own: none
    assert kp(world, "laptop", who="admin", user="alice", state="absent")[0]
    with pytest.raises(NotFound, match="User nobody could not be found"):
        kp(world, "x", ed_line, who="admin", user="nobody")
    # with Keystone the ID is taken as it is (Nova does not check it either)
    with db.tx() as conn:
        assert _keypairs.owner(conn, auth["admin"], "0123456789abcdef0123456789abcdef", local_identity=False) \
            == "0123456789abcdef0123456789abcdef"


def _import_racer(db_url, state_dir, auth, line, barrier, queue):
    db = _db.open_db(db_url, state_dir=state_dir)
    try:
        barrier.wait(60)
        changed = _keypairs.ensure(db, auth, "raced", line, "present", False)[0]
        queue.put(("created" if changed else "same", line))
    except Conflict:
        queue.put(("conflict", line))
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(("error: %r" % exc, line))
    finally:
        db.dispose()


def test_simultaneous_imports_of_one_name_one_wins_the_others_conflict(world):
    """Six processes import six keys under one name at once: one key pair, five Conflicts, no database error
    (on PostgreSQL the per-user lock makes the losers see the winner's row instead of hitting the unique key)."""
    ctx = multiprocessing.get_context("fork")
    lines = [openssh_line(ed25519.Ed25519PrivateKey.generate().public_key()) for _i in range(6)]
    barrier, queue = ctx.Barrier(len(lines)), ctx.Queue()
    procs = [ctx.Process(target=_import_racer, args=(world["db"].url, world["state_dir"], world["auth"]["alice"], line,
                                                     barrier, queue)) for line in lines]
    for proc in procs:
        proc.start()
    got = sorted(queue.get(timeout=120) for _p in procs)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    assert [outcome for outcome, _line in got] == ["conflict"] * 5 + ["created"], got
    winner = [line for outcome, line in got if outcome == "created"][0]
    assert [r[4] for r in rows(world["db"])] == [winner]


# --- nova-api's create with key_name, the conductor's spec ----------------------------------------------

def boot(world, name, key_name=None, who="alice", check_mode=False):
    return _compute_api.create(world["db"], world["auth"][who], name, "m1.tiny", "img", ["net"], 1, None, check_mode,
                               key_name=key_name)


def test_create_with_an_unknown_or_anothers_key_writes_nothing(world, ed_line):
    db = world["db"]
    kp(world, "bobs", ed_line, who="bob")
    kp(world, "alices", ed_line, who="alice")
    before = counts(db)
    for who, key_name in (("alice", "nope"), ("alice", "bobs"), ("admin", "alices")):
        for check_mode in (True, False):
            with pytest.raises(NotFound, match="Invalid key_name provided: key pair '%s' could not be found"
                               % key_name):
                boot(world, "vm1", key_name, who=who, check_mode=check_mode)
    assert counts(db) == before and before["instances"] == 0 and before["volumes"] == 0


def test_create_copies_the_key_into_the_request_and_the_spec(world, ed_line):
    db = world["db"]
    kp(world, "laptop", ed_line)
    changed, row = boot(world, "vm1", "laptop")
    assert changed and row.request["key_name"] == "laptop" and row.request["public_keys"] == [ed_line]
    with db.tx() as conn:
        spec = conductor.spec(conn, row)
    assert spec["key_name"] == "laptop" and spec["public_keys"] == [ed_line]
    # the same request again: no change; another key_name, or none, is another request
    changed, again = boot(world, "vm1", "laptop")
    assert not changed and again.uuid == row.uuid
    kp(world, "other", openssh_line(ed25519.Ed25519PrivateKey.generate().public_key()))
    for other in ("other", None, ""):
        with pytest.raises(Conflict, match="different .*key_name"):
            boot(world, "vm1", other)
    # the instance keeps its copy when the key pair is deleted, and a re-run still converges
    kp(world, "laptop", state="absent")
    with db.tx() as conn:
        assert conductor.spec(conn, instances.get_instance(conn, row.uuid))["public_keys"] == [ed_line]
    assert not boot(world, "vm1", "laptop")[0]
    # without a key: no key_name in the request, no keys in the spec
    changed, plain = boot(world, "vm2")
    assert changed and "key_name" not in plain.request and "public_keys" not in plain.request
    with db.tx() as conn:
        assert conductor.spec(conn, plain)["public_keys"] == [] and conductor.spec(conn, plain)["key_name"] is None
    assert not boot(world, "vm2", "")[0]   # "" is no key (the api role's default)


# --- revision 0006 ------------------------------------------------------------------------------------

def test_0005_to_head_adds_key_pairs(tmp_path, backend, migrate):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path), migrate=False)
    with db.engine.connect() as conn:
        migrate(db, conn, "0005")
    t = "2025-01-01 00:00:00"
    with db.tx() as conn:
        conn.execute(sa.text("INSERT INTO server_groups (id, name, project_id, user_id, policy, rules, created_at) "
                             "VALUES ('g-1', 'web', 'p-1', 'u-1', 'anti-affinity', '{}', :t)"), {"t": t})
    assert db.upgrade() is True
    assert db.schema_revision() == _db.SCHEMA_HEAD and int(_db.SCHEMA_HEAD) >= 6
    insert = ("INSERT INTO key_pairs (name, user_id, project_id, public_key, fingerprint, created_at) "
              "VALUES (:n, :u, 'p-1', 'ssh-ed25519 AAAA', 'aa', :t)")
    with db.tx() as conn:
        assert conn.execute(sa.text("SELECT name FROM server_groups")).scalar() == "web"
        conn.execute(sa.text(insert), {"n": "k", "u": "u-1", "t": t})
        conn.execute(sa.text(insert), {"n": "k", "u": "u-2", "t": t})   # the same name, another user
        assert conn.execute(sa.text("SELECT type FROM key_pairs WHERE user_id = 'u-1'")).scalar() == "ssh"
        ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM key_pairs ORDER BY id"))]
        assert len(ids) == 2 and all(isinstance(i, int) for i in ids)
        assert compare_metadata(MigrationContext.configure(conn), _db.METADATA) == []
    with pytest.raises(sa.exc.IntegrityError):
        with db.tx() as conn:
            conn.execute(sa.text(insert), {"n": "k", "u": "u-1", "t": t})
    with db.engine.connect() as conn:
        migrate(db, conn, "0005", down=True)
    assert db.schema_revision() == "0005"
    with db.tx() as conn:
        assert "key_pairs" not in set(sa.inspect(conn).get_table_names())
        assert conn.execute(sa.text("SELECT name FROM server_groups")).scalar() == "web"
    db.dispose()


# --- the modules, through ansible-playbook (SQLite) -------------------------------------------------------

PLAY = """
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/bootflow.cloud.bootflow:
      auth_token: "{{ token }}"
  tasks:
    - name: generate
      bootflow.cloud.keypair:
        name: deploy
      register: generated
    - name: generate again
      bootflow.cloud.keypair:
        name: deploy
      register: again
    - name: import
      bootflow.cloud.keypair:
        name: laptop
        public_key: "{{ public_key }}"
      register: imported
      diff: true
    - name: boot
      bootflow.cloud.instance:
        name: vm1
        flavor: m1.tiny
        image: img
        networks: [net]
        key_name: laptop
      register: vm
    - name: drive
      bootflow.cloud.config_drive:
        instance_uuid: "{{ vm.instance.uuid }}"
        instances_path: "{{ instances_path }}"
      register: drive
    - name: results
      ansible.builtin.copy:
        content: "{{ {'generated': generated, 'again': again, 'imported': imported, 'vm': vm,
                      'drive': drive} | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
      no_log: true
"""


def test_the_modules_generation_is_censored_and_the_drive_gets_the_key(tmp_path, ed_line):
    state = tmp_path / "state"
    db = _db.open_db(None, str(state))
    _identity.bootstrap(db, "admin", "pw", "admin")
    token = _identity.issue_token(db, _identity.key_repository(str(state)), "admin", "pw", "admin")[0]
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    admin = _identity.authenticate(db, _identity.key_repository(str(state)), token)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, admin, str(state), "img", str(image), "raw", "bare", "public", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    db.dispose()
    instances_path = tmp_path / "instances"
    instances_path.mkdir()
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "result.json"
    env = dict(os.environ, BOOTFLOW_STATE_DIR=str(state), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local", "-v", str(play),
         "-e", json.dumps({"token": token, "public_key": ed_line, "out": str(out),
                          "instances_path": str(instances_path), "ansible_python_interpreter": sys.executable})],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    result = json.loads(out.read_text())
    private = result["generated"]["private_key"]
    assert result["generated"]["changed"] and private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    # the registered result has it, the output (-v prints every result) does not
    assert private.splitlines()[1] not in proc.stdout and "BEGIN OPENSSH PRIVATE KEY" not in proc.stdout
    generate_task = proc.stdout.split("TASK [generate]", 1)[1].split("TASK [generate again]", 1)[0]
    assert "censored" in generate_task and "Generated-by-bootflow" not in generate_task
    assert "Generated-by-bootflow" in proc.stdout.split("TASK [generate again]", 1)[1]   # -v shows the others
    assert not result["again"]["changed"] and "private_key" not in result["again"]
    assert result["again"]["keypair"]["public_key"] == result["generated"]["keypair"]["public_key"]
    assert result["imported"]["changed"] and result["imported"]["keypair"]["public_key"] == ed_line
    assert result["imported"]["diff"]["after"]["public_key"] == ed_line and result["imported"]["diff"]["before"] == {}
    assert result["vm"]["instance"]["request"]["public_keys"] == [ed_line]
    drive = result["drive"]
    assert drive["changed"] and drive["meta_data"].endswith("public-keys:\n  - \"%s\"\n" % ed_line)
    label, files = _config_drive.read_iso(drive["path"])
    assert label == "cidata" and yaml.safe_load(files["meta-data"])["public-keys"] == [ed_line]
