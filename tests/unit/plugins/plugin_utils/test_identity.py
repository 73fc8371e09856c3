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
