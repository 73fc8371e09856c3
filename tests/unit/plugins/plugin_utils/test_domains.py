# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keystone domains in the embedded identity: revision 0003 on a DB with data (SQLite and
PostgreSQL), names unique per domain, tokens scoped by domain, disabled domains refused."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)

sa = _db.sa


def _fill_0001(conn):
    """Rows at revision 0001 in the tables that point at projects or users."""
    t = "2025-01-01 00:00:00"
    conn.execute(sa.text("INSERT INTO projects (id, name, created_at) VALUES "
                         "('p-1', 'admin', :t), ('p-2', 'demo', :t)"), {"t": t})
    conn.execute(sa.text("INSERT INTO users (id, name, password_hash, default_project_id, enabled, created_at) "
                         "VALUES ('u-1', 'admin', 'x', 'p-1', true, :t), ('u-2', 'alice', 'y', 'p-2', false, :t)"),
                 {"t": t})
    conn.execute(sa.text("INSERT INTO role_assignments (user_id, project_id, role) VALUES "
                         "('u-1', 'p-1', 'admin'), ('u-2', 'p-2', 'member')"))


def test_migration_0001_to_head_keeps_data_and_matches_the_metadata(tmp_path, backend, migrate):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path), migrate=False)
    with db.engine.connect() as conn:
        migrate(db, conn, "0001")
    with db.tx() as conn:
        _fill_0001(conn)
    with db.engine.connect() as conn:
        migrate(db, conn, "0002")
    assert db.schema_revision() == "0002"
    with db.tx() as conn:
        conn.execute(sa.text("INSERT INTO quotas (project_id, resource, hard_limit) VALUES ('p-2', 'instances', 3)"))

    assert db.upgrade() is True
    assert db.schema_revision() == _db.SCHEMA_HEAD and int(_db.SCHEMA_HEAD) >= 3
    with db.tx() as conn:
        domains = conn.execute(sa.text("SELECT id, name, enabled FROM domains")).all()
        assert [tuple(d) for d in domains] == [("default", "Default", True)]
        assert conn.execute(sa.text("SELECT id, name, domain_id, description, enabled FROM projects ORDER BY id")).all() \
            == [("p-1", "admin", "default", "", True), ("p-2", "demo", "default", "", True)]
        assert conn.execute(sa.text("SELECT id, default_project_id, domain_id, enabled FROM users ORDER BY id")).all() \
            == [("u-1", "p-1", "default", True), ("u-2", "p-2", "default", False)]
        assert _db.count(conn, "role_assignments") == 2 and _db.count(conn, "quotas") == 1
        diff = compare_metadata(MigrationContext.configure(conn), _db.METADATA)
    assert diff == []
    if db.is_sqlite:
        with db.engine.connect() as conn:   # the connect hook turned the keys back on
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    # names are unique per domain now, and the keys to domains hold
    with db.tx() as conn:
        conn.execute(sa.text("INSERT INTO domains (id, name, created_at) VALUES ('d2', 'Other', :t)"),
                     {"t": "2025-01-02 00:00:00"})
        conn.execute(sa.text("INSERT INTO projects (id, name, created_at, domain_id) VALUES ('p-3', 'demo', :t, 'd2')"),
                     {"t": "2025-01-02 00:00:00"})
    with pytest.raises(sa.exc.IntegrityError):
        with db.tx() as conn:
            conn.execute(sa.text("INSERT INTO projects (id, name, created_at) VALUES ('p-4', 'demo', :t)"),
                         {"t": "2025-01-02 00:00:00"})
    with pytest.raises(sa.exc.IntegrityError):
        with db.tx() as conn:
            conn.execute(sa.text("INSERT INTO users (id, name, password_hash, enabled, created_at, domain_id) "
                                 "VALUES ('u-9', 'bob', 'z', true, :t, 'nope')"), {"t": "2025-01-02 00:00:00"})
    db.dispose()


def test_migration_downgrade_and_upgrade_again(tmp_path, backend, migrate):
    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path))
    _identity.bootstrap(db, "admin", "pw", "admin")
    with db.engine.connect() as conn:
        migrate(db, conn, "0002", down=True)
    assert db.schema_revision() == "0002"
    assert db.upgrade() is True
    keys = _identity.key_repository(str(tmp_path))
    assert _identity.issue_token(db, keys, "admin", "pw", "admin")[1].roles == ("admin",)
    db.dispose()


# --- domain scoping -----------------------------------------------------------------------------

@pytest.fixture()
def ident(tmp_path, backend):
    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path))
    keys = _identity.key_repository(str(tmp_path))
    _identity.bootstrap(db, "admin", "pw", "admin")
    assert _identity.ensure_domain(db, "Other", "second domain", True, "present", False)[0] is True
    for domain, password in (("Default", "pw-default"), ("Other", "pw-other")):
        _identity.ensure_project(db, "web", None, True, "present", False, domain=domain)
        _identity.ensure_user(db, "alice", password, "web", True, "on_create", "present", False, domain=domain)
        _identity.ensure_role_assignment(db, "alice", "web", "member", "present", False,
                                         user_domain=domain, project_domain=domain)
    yield db, keys
    db.dispose()


def test_default_domain_exists_and_cannot_be_disabled_or_deleted(ident):
    db, _keys = ident
    with db.tx() as conn:
        assert _identity.find_domain(conn, "default").name == "Default"
        assert _identity.find_domain(conn, "Default").id == "default"
    with pytest.raises(InvalidRequest, match="default domain"):
        _identity.ensure_domain(db, "Default", None, False, "present", False)
    with pytest.raises(InvalidRequest, match="default domain"):
        _identity.ensure_domain(db, "Default", None, None, "absent", False)


def test_same_names_in_two_domains_are_different_users_and_projects(ident):
    db, keys = ident
    with db.tx() as conn:
        other = _identity.find_domain(conn, "Other")
        u_def, u_oth = _identity.find_user(conn, "alice"), _identity.find_user(conn, "alice", "Other")
        p_def, p_oth = _identity.find_project(conn, "web"), _identity.find_project(conn, "web", "Other")
    assert u_def.id != u_oth.id and p_def.id != p_oth.id
    assert (u_def.domain_id, u_oth.domain_id, p_oth.domain_id) == ("default", other.id, other.id)
    assert u_oth.default_project_id == p_oth.id
    _tok, ctx = _identity.issue_token(db, keys, "alice", "pw-other", "web", user_domain="Other", project_domain="Other")
    assert (ctx.user_id, ctx.project_id, ctx.roles) == (u_oth.id, p_oth.id, ("member",))
    assert (ctx.user_domain_id, ctx.project_domain_id) == (other.id, other.id)
    _tok, ctx = _identity.issue_token(db, keys, "alice", "pw-default", "web")
    assert (ctx.user_id, ctx.project_id, ctx.user_domain_id) == (u_def.id, p_def.id, "default")
    with pytest.raises(AuthError, match="wrong user name or password"):   # the other alice's password
        _identity.issue_token(db, keys, "alice", "pw-other", "web")
    # a user of Other has no role on Default's web
    with pytest.raises(AuthError, match="no role"):
        _identity.issue_token(db, keys, "alice", "pw-other", "web", user_domain="Other")
    with pytest.raises(AuthError, match="unknown or disabled domain"):
        _identity.issue_token(db, keys, "alice", "pw-other", "web", user_domain="Nope")
    # idempotent per domain, deleting one leaves the other
    assert _identity.ensure_user(db, "alice", None, None, True, "on_create", "present", False, domain="Other")[0] is False
    _identity.ensure_role_assignment(db, "alice", "web", "member", "absent", False, user_domain="Other", project_domain="Other")
    assert _identity.ensure_user(db, "alice", None, None, None, "on_create", "absent", False, domain="Other")[0] is True
    with db.tx() as conn:
        assert _identity.find_user(conn, "alice", "Other") is None
        assert _identity.find_user(conn, "alice").id == u_def.id


def test_disabled_domain_refuses_new_and_existing_tokens(ident):
    db, keys = ident
    token, _ctx = _identity.issue_token(db, keys, "alice", "pw-other", "web", user_domain="Other", project_domain="Other")
    assert _identity.authenticate(db, keys, token).user_name == "alice"
    assert _identity.ensure_domain(db, "Other", None, False, "present", False)[0] is True
    with pytest.raises(AuthError, match="domain is disabled"):
        _identity.authenticate(db, keys, token)
    with pytest.raises(AuthError, match="unknown or disabled domain"):
        _identity.issue_token(db, keys, "alice", "pw-other", "web", user_domain="Other", project_domain="Other")
    # the Default alice is not affected
    _identity.issue_token(db, keys, "alice", "pw-default", "web")
    _identity.ensure_domain(db, "Other", None, True, "present", False)
    assert _identity.authenticate(db, keys, token).project_name == "web"


def test_disabled_project_domain_refuses_tokens(ident):
    db, keys = ident
    _identity.ensure_domain(db, "Third", None, True, "present", False)
    _identity.ensure_project(db, "shared", None, True, "present", False, domain="Third")
    _identity.ensure_role_assignment(db, "alice", "shared", "reader", "present", False, project_domain="Third")
    token, ctx = _identity.issue_token(db, keys, "alice", "pw-default", "shared", project_domain="Third")
    assert ctx.roles == ("reader",) and ctx.user_domain_id == "default"
    _identity.ensure_domain(db, "Third", None, False, "present", False)
    with pytest.raises(AuthError, match="project's domain is disabled"):
        _identity.authenticate(db, keys, token)
    with pytest.raises(AuthError, match="unknown or disabled"):
        _identity.issue_token(db, keys, "alice", "pw-default", "shared", project_domain="Third")


def test_domain_admin(ident):
    db, _keys = ident
    assert _identity.ensure_domain(db, "Other", "second domain", True, "present", False)[0] is False
    changed, dom = _identity.ensure_domain(db, "Other", "changed", None, "present", True)   # check mode
    assert changed and dom["description"] == "second domain"
    with pytest.raises(NotFound, match="Domain Nope could not be found"):
        _identity.ensure_project(db, "x", None, True, "present", False, domain="Nope")
    with pytest.raises(Conflict, match="disable it first"):
        _identity.ensure_domain(db, "Other", None, None, "absent", False)
    _identity.ensure_domain(db, "Other", None, False, "present", False)
    with pytest.raises(Conflict, match="still has"):
        _identity.ensure_domain(db, "Other", None, None, "absent", False)
    _identity.ensure_role_assignment(db, "alice", "web", "member", "absent", False, user_domain="Other", project_domain="Other")
    _identity.ensure_user(db, "alice", None, None, None, "on_create", "absent", False, domain="Other")
    _identity.ensure_project(db, "web", None, None, "absent", False, domain="Other")
    assert _identity.ensure_domain(db, "Other", None, None, "absent", False) == (True, None)
    assert _identity.ensure_domain(db, "Other", None, None, "absent", False) == (False, None)
