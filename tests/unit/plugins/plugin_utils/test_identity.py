# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Embedded identity on a real SQLite DB: bootstrap, password check, Fernet tokens."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest, NotFound


@pytest.fixture()
def state(tmp_path):
    db = _db.open_db(state_dir=str(tmp_path))
    keys = _identity.key_repository(str(tmp_path))
    assert _identity.bootstrap(db, "admin", "s3cret", "admin") is True
    return db, keys, tmp_path


def test_db_file_and_keys_are_private(state):
    _db_, keys, path = state
    keys.ensure()
    assert stat.S_IMODE(os.stat(path / "bootflow.db").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path / "fernet-keys").st_mode) == 0o700
    for name in os.listdir(path / "fernet-keys"):
        assert stat.S_IMODE(os.stat(path / "fernet-keys" / name).st_mode) == 0o600
    # the keys and the lock file rotation takes (readers only take it shared, never create it)
    assert sorted(os.listdir(path / "fernet-keys")) == [".lock", "0", "1"]


def test_bootstrap_is_idempotent_and_never_stores_the_password(state):
    db, _keys, _path = state
    assert _identity.bootstrap(db, "admin", "s3cret", "admin") is False
    with db.tx() as conn:
        (hashed,) = conn.execute(_db.table("users").select().with_only_columns(_db.table("users").c.password_hash)).one()
    assert "s3cret" not in hashed and hashed.startswith("scrypt$")
    # an existing identity: a reset needs an admin's token (may_change), then it is keystone-manage's reset
    with pytest.raises(AuthError, match="already bootstrapped.*reset the password of user admin"):
        _identity.bootstrap(db, "admin", "other", "admin")
    _identity.issue_token(db, _identity.key_repository(str(_path)), "admin", "s3cret", "admin")
    assert _identity.bootstrap(db, "admin", "other", "admin", may_change=True) is True
    with pytest.raises(AuthError):
        _identity.issue_token(db, _identity.key_repository(str(_path)), "admin", "s3cret", "admin")


def test_token_round_trip(state):
    db, keys, _path = state
    token, ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin", ttl=60)
    got = _identity.validate_token(keys, token)
    assert (got.user_id, got.project_id, got.roles, got.expires_at, got.audit_id) == \
        (ctx.user_id, ctx.project_id, ("admin",), ctx.expires_at, ctx.audit_id)
    assert ctx.project_name == "admin"
    assert len(token) < 255


@pytest.mark.parametrize("user,password,project,why", [
    ("admin", "wrong", "admin", "wrong user name or password"),
    ("nobody", "s3cret", "admin", "wrong user name or password"),
    ("admin", "s3cret", "no-such-project", "unknown or disabled project"),
])
def test_bad_credentials_are_refused(state, user, password, project, why):
    db, keys, _path = state
    with pytest.raises(AuthError, match=why):
        _identity.issue_token(db, keys, user, password, project)


def test_expired_token_is_refused(state):
    db, keys, _path = state
    token, ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin", ttl=60)
    with pytest.raises(AuthError, match="expired"):
        _identity.validate_token(keys, token, now=ctx.expires_at + 1)


def test_tampered_token_is_refused(state):
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    flipped = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
    with pytest.raises(AuthError, match="not valid"):
        _identity.validate_token(keys, flipped)


def test_token_from_another_key_repository_is_refused(state, tmp_path_factory):
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    other = _identity.KeyRepository(str(tmp_path_factory.mktemp("other") / "keys"))
    with pytest.raises(AuthError, match="not valid"):
        _identity.validate_token(other, token)


def test_missing_token_says_how_to_get_one(state):
    _db_, keys, _path = state
    with pytest.raises(AuthError, match="bootflow.cloud.token"):
        _identity.validate_token(keys, None)


def test_bootstrap_refuses_unknown_role_and_empty_password(state):
    db, _keys, _path = state
    with pytest.raises(InvalidRequest):
        _identity.bootstrap(db, "x", "pw", "admin", role="superuser")
    with pytest.raises(InvalidRequest):
        _identity.bootstrap(db, "x", "", "admin")


# --- Keystone-grade behaviour: rotation, revocation, validation against the DB ------------------

def test_rotation_keeps_old_tokens_valid_until_their_key_leaves_the_active_set(state):
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")   # made with primary key 1
    assert keys.rotate(max_active_keys=3)["keys"] == [0, 1, 2]
    assert _identity.authenticate(db, keys, token).user_name == "admin"     # key 1 is a secondary now
    newer, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")  # made with key 2
    rotated = keys.rotate(max_active_keys=3)
    assert rotated["keys"] == [0, 2, 3] and rotated["removed"] == [1]
    with pytest.raises(AuthError, match="not valid"):
        _identity.authenticate(db, keys, token)      # its key left the repository
    assert _identity.authenticate(db, keys, newer).project_name == "admin"


def test_rotation_refuses_fewer_than_two_keys(state):
    _db_, keys, _path = state
    with pytest.raises(InvalidRequest, match="at least 2"):
        keys.rotate(max_active_keys=1)


def test_revoked_token_is_refused_and_others_are_not(state):
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    other, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    assert _identity.revoke(db, _identity.authenticate(db, keys, token)) is True
    with pytest.raises(AuthError, match="revoked"):
        _identity.authenticate(db, keys, token)
    assert _identity.authenticate(db, keys, other).user_name == "admin"


def test_roles_are_those_of_now_and_disabled_users_are_refused(state):
    db, keys, _path = state
    _identity.ensure_project(db, "p1", "", True, "present", False)
    _identity.ensure_user(db, "alice", "pw", "p1", True, "on_create", "present", False)
    _identity.ensure_role_assignment(db, "alice", "p1", "member", "present", False)
    token, ctx = _identity.issue_token(db, keys, "alice", "pw", "p1")
    assert ctx.roles == ("member",)
    _identity.ensure_role_assignment(db, "alice", "p1", "reader", "present", False)
    assert _identity.authenticate(db, keys, token).roles == ("member", "reader")   # not what the token said
    _identity.ensure_role_assignment(db, "alice", "p1", "reader", "absent", False)
    # Keystone: removing a role revokes the user's tokens on the project (also when a role is left)
    with pytest.raises(AuthError, match="revoked"):
        _identity.authenticate(db, keys, token)
    token, _ctx = _identity.issue_token(db, keys, "alice", "pw", "p1")
    assert _identity.authenticate(db, keys, token).roles == ("member",)
    _identity.ensure_user(db, "alice", None, None, False, "on_create", "present", False)
    with pytest.raises(AuthError, match="disabled|revoked"):
        _identity.authenticate(db, keys, token)


def test_user_admin_is_idempotent_and_never_returns_the_hash(state):
    db, _keys, _path = state
    _identity.ensure_project(db, "p1", "first", True, "present", False)
    assert _identity.ensure_project(db, "p1", "first", True, "present", False)[0] is False
    changed, user = _identity.ensure_user(db, "bob", "pw", "p1", True, "on_create", "present", False)
    assert changed and "password_hash" not in user
    assert _identity.ensure_user(db, "bob", "other", "p1", True, "on_create", "present", False)[0] is False
    assert _identity.ensure_user(db, "bob", "other", "p1", True, "always", "present", False)[0] is True
    with pytest.raises(InvalidRequest, match="password is required"):
        _identity.ensure_user(db, "carol", None, "p1", True, "on_create", "present", False)
    with pytest.raises(NotFound):
        _identity.ensure_role_assignment(db, "nobody", "p1", "member", "present", False)


# --- issue 16: revocation on password change / disable / role removal, lifetime cap ----------------

def _member(db, name="alice", password="pw", project="p1", role="member"):
    _identity.ensure_project(db, project, "", True, "present", False)
    _identity.ensure_user(db, name, password, project, True, "on_create", "present", False)
    _identity.ensure_role_assignment(db, name, project, role, "present", False)


def _all_rows(db):
    with db.tx() as conn:
        return {t.name: sorted(repr(tuple(r)) for r in conn.execute(t.select())) for t in _db.METADATA.sorted_tables}


def test_password_change_revokes_the_users_tokens(state):
    """The attack: a token obtained with the old password is replayed after the password was changed."""
    db, keys, _path = state
    _member(db)
    stolen, _ctx = _identity.issue_token(db, keys, "alice", "pw", "p1")
    admins, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    assert _identity.ensure_user(db, "alice", "new-pw", None, None, "always", "present", False)[0] is True
    before = _all_rows(db)
    with pytest.raises(AuthError, match="the token has been revoked"):
        _identity.authenticate(db, keys, stolen)
    assert _all_rows(db) == before
    assert _identity.authenticate(db, keys, admins).user_name == "admin"   # other users' tokens stay valid
    fresh, _ctx = _identity.issue_token(db, keys, "alice", "new-pw", "p1")
    assert _identity.authenticate(db, keys, fresh).user_name == "alice"


def test_disabled_user_tokens_stay_revoked_when_enabled_again(state):
    db, keys, _path = state
    _member(db)
    token, _ctx = _identity.issue_token(db, keys, "alice", "pw", "p1")
    _identity.ensure_user(db, "alice", None, None, False, "on_create", "present", False)
    _identity.ensure_user(db, "alice", None, None, True, "on_create", "present", False)
    with pytest.raises(AuthError, match="revoked"):
        _identity.authenticate(db, keys, token)


def test_revocation_compares_microseconds_and_a_tie_is_revoked(state, monkeypatch):
    """Issue time and revocation time are microseconds of the same clock; a token issued in the same
    microsecond as the change counts as issued before it (revoked), one a microsecond later is valid."""
    db, keys, _path = state
    _member(db)
    t = 1_900_000_000_123_456
    monkeypatch.setattr(_identity, "_now_us", lambda: t)
    monkeypatch.setattr(_identity.time, "time", lambda: t / 1e6)
    same, _ctx = _identity.issue_token(db, keys, "alice", "pw", "p1")
    _identity.ensure_user(db, "alice", "pw2", None, None, "always", "present", False)   # event issued_before = t
    monkeypatch.setattr(_identity, "_now_us", lambda: t + 1)
    after, _ctx = _identity.issue_token(db, keys, "alice", "pw2", "p1")
    with pytest.raises(AuthError, match="revoked"):
        _identity.authenticate(db, keys, same)
    assert _identity.authenticate(db, keys, after).user_name == "alice"


@pytest.mark.parametrize("ttl,match", [(86401, r"ttl must be at most 86400 seconds"), (0, "positive")])
def test_ttl_beyond_the_cap_is_refused_for_everyone(state, ttl, match):
    db, keys, _path = state
    before = _all_rows(db)
    with pytest.raises(InvalidRequest, match=match):
        _identity.issue_token(db, keys, "admin", "s3cret", "admin", ttl=ttl)
    assert _all_rows(db) == before


def _operator_config(tmp_path, monkeypatch, **identity):
    path = tmp_path / "bootflow.yml"
    path.write_text("identity:\n" + "".join("  %s: %d\n" % kv for kv in identity.items()))
    path.chmod(0o600)
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(path))


def test_session_ttl_member_up_to_token_expiration_admin_up_to_the_cap(state, monkeypatch, tmp_path):
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session
    db, _keys, path = state
    _member(db)
    _operator_config(tmp_path, monkeypatch, token_expiration=600, max_token_expiration=7200)

    def issue(user, pw, project, ttl):
        return session.issue(lambda: db, str(path), "local", user, pw, project, ttl=ttl)
    assert issue("alice", "pw", "p1", None)[1].expires_at - issue("alice", "pw", "p1", 600)[1].expires_at < 5
    with pytest.raises(AuthError, match=r"ttl 601 is above the operator's token lifetime.*only an admin"):
        issue("alice", "pw", "p1", 601)
    assert issue("admin", "s3cret", "admin", 7200)[0]
    with pytest.raises(InvalidRequest, match=r"ttl must be at most 7200 seconds"):
        issue("admin", "s3cret", "admin", 7201)


def test_token_older_than_the_cap_is_refused_and_old_events_are_pruned(state, monkeypatch):
    db, keys, _path = state
    token, ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin", ttl=3600)
    with pytest.raises(AuthError, match="older than the maximum token lifetime, 60 seconds"):
        _identity.validate_token(keys, token, now=ctx.issued_at_us / 1e6 + 60, max_lifetime=60)
    _member(db)
    _identity.ensure_user(db, "alice", "pw2", None, None, "always", "present", False)
    with db.tx() as conn:
        assert _db.count(conn, "revocation_event") == 1
    real = _identity._now_us()
    monkeypatch.setattr(_identity, "_now_us", lambda: real + 86401 * 10 ** 6)
    _identity.ensure_user(db, "alice", "pw3", None, None, "always", "present", False)
    with db.tx() as conn:
        assert _db.count(conn, "revocation_event") == 1    # the day-old event went, the new one is there


def test_token_of_the_old_format_is_refused(state):
    import msgpack
    import uuid
    db, keys, _path = state
    _tok, ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    v1 = keys.fernet().encrypt(msgpack.packb([1, uuid.UUID(ctx.user_id).bytes, uuid.UUID(ctx.project_id).bytes,
                                              ["admin"], ctx.expires_at, uuid.uuid4().bytes])).decode()
    with pytest.raises(AuthError, match="older version"):
        _identity.validate_token(keys, v1)


# --- issue 16: login timing, scrypt strength, rehash -----------------------------------------------

@pytest.fixture()
def scrypt_calls(monkeypatch):
    calls = []
    real = _identity._scrypt

    def counting(password, salt, n, r, p):
        calls.append((n, r, p))
        return real(password, salt, n, r, p)
    monkeypatch.setattr(_identity, "_scrypt", counting)
    return calls


@pytest.mark.real_scrypt
@pytest.mark.parametrize("case", ["unknown user", "disabled user", "wrong password", "unknown domain", "right password"])
def test_every_login_attempt_runs_scrypt_once_with_the_current_parameters(state, scrypt_calls, case):
    """The attack: telling existing users from unknown ones by the login time. Structural: scrypt runs
    exactly once, with the same parameters, whatever the case; refusals say the same."""
    import time as _time
    db, keys, _path = state
    _member(db, "dora")
    _identity.ensure_user(db, "dora", None, None, False, "on_create", "present", False)
    user, password, domain = {"unknown user": ("nobody", "s3cret", None), "disabled user": ("dora", "pw", None),
                              "wrong password": ("admin", "wrong", None), "unknown domain": ("admin", "s3cret", "Nope"),
                              "right password": ("admin", "s3cret", None)}[case]
    del scrypt_calls[:]
    started = _time.monotonic()
    if case == "right password":
        _identity.issue_token(db, keys, user, password, "admin", user_domain=domain)
    else:
        with pytest.raises(AuthError, match="wrong user name or password" if case != "unknown domain" else "domain"):
            _identity.issue_token(db, keys, user, password, "admin", user_domain=domain)
    print("\nBENCH login %-15s %.0f ms" % (case, (_time.monotonic() - started) * 1000))
    assert scrypt_calls == [(2 ** 17, 8, 1)]


@pytest.mark.real_scrypt
def test_old_hash_still_logs_in_and_is_rehashed(state, scrypt_calls):
    import secrets
    db, keys, _path = state
    salt = secrets.token_bytes(16)
    old = _identity._encode(2 ** 14, 8, 1, salt, _identity._scrypt("s3cret", salt, 2 ** 14, 8, 1))
    users = _db.table("users")
    with db.tx() as conn:
        conn.execute(users.update().where(users.c.name == "admin").values(password_hash=old))
    del scrypt_calls[:]
    _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    assert scrypt_calls == [(2 ** 14, 8, 1), (2 ** 17, 8, 1)]          # verified the old way, rehashed
    with db.tx() as conn:
        stored = conn.execute(users.select().where(users.c.name == "admin")).one().password_hash
    assert stored.startswith("scrypt$131072$8$1$") and not _identity.needs_rehash(stored)
    del scrypt_calls[:]
    _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    assert scrypt_calls == [(2 ** 17, 8, 1)]                           # once rehashed, once per login
    with pytest.raises(AuthError, match="wrong user name or password"):   # a failed login rehashes nothing
        _identity.issue_token(db, keys, "admin", "wrong", "admin")


# --- issue 16: validation reads the key repository only; rotation is locked -------------------------

def _repo_files(path):
    out = {"<dir>": os.stat(path).st_mtime_ns}
    for name in sorted(os.listdir(path)):
        st = os.stat(os.path.join(path, name))
        with open(os.path.join(path, name), "rb") as f:
            out[name] = (st.st_mtime_ns, stat.S_IMODE(st.st_mode), f.read())
    return out


def test_validation_changes_nothing_in_the_key_repository(state, tmp_path_factory):
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    before = _repo_files(keys.path)
    _identity.authenticate(db, keys, token)
    for bad in (token[:-3] + "AAA", "garbage", None):
        with pytest.raises(AuthError):
            _identity.validate_token(keys, bad)
    assert _repo_files(keys.path) == before
    # a missing repository is not created by validation (it only says the token is not valid)
    empty = _identity.KeyRepository(str(tmp_path_factory.mktemp("nokeys") / "fernet-keys"))
    with pytest.raises(AuthError, match="not valid"):
        _identity.validate_token(empty, token)
    assert not os.path.exists(empty.path)


def test_validation_during_300_rotations_has_no_error(state):
    """The replay of the race: a thread validates in a loop while 300 rotations run (the old code raised
    FileNotFoundError about 25 times). No key leaves the repository here, so every validation must succeed."""
    import threading
    db, keys, _path = state
    token, _ctx = _identity.issue_token(db, keys, "admin", "s3cret", "admin")
    errors, done, validations = [], threading.Event(), [0]

    def validate():
        while not done.is_set():
            try:
                _identity.validate_token(keys, token)
                validations[0] += 1
            except Exception as exc:  # pylint: disable=broad-except
                errors.append(repr(exc))
    thread = threading.Thread(target=validate)
    thread.start()
    try:
        for _i in range(300):
            keys.rotate(max_active_keys=400)
    finally:
        done.set()
        thread.join()
    print("\nBENCH %d validations during 300 rotations, %d errors" % (validations[0], len(errors)))
    assert errors == [] and validations[0] > 0
    assert keys.state()["primary"] == 301 and len(keys.state()["keys"]) == 302
    assert sorted(n for n in os.listdir(keys.path) if not n.isdigit()) == [".lock"]   # no temp file left


# --- issue 16: a tokenless bootstrap never changes an existing identity ----------------------------

@pytest.mark.parametrize("args,would", [
    (("admin", "mine", "admin", "admin"), "reset the password of user admin"),
    (("eve", "mine", "admin", "admin"), "create user eve"),
    (("eve", "mine", "evil", "admin"), "create project evil; create user eve"),
    (("alice", "pw", "admin", "admin"), "assign role admin to user alice on project admin"),
])
def test_tokenless_bootstrap_of_an_existing_identity_is_refused_and_changes_nothing(state, args, would):
    db, keys, _path = state
    _member(db)
    before = _all_rows(db)
    with pytest.raises(AuthError, match=r"already bootstrapped.*%s.*Pass an admin's auth_token" % would):
        _identity.bootstrap(db, *args)
    with pytest.raises(AuthError, match="already bootstrapped"):
        _identity.bootstrap(db, *args, check_mode=True)
    assert _all_rows(db) == before
    assert _identity.bootstrap(db, "admin", "s3cret", "admin") is False   # a run that changes nothing is fine
    assert _all_rows(db) == before
