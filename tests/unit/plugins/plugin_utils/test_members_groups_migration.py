# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revision 0005 (image members, server groups) on a DB holding data at revision 0004, on SQLite and
PostgreSQL: rows kept, the new tables usable and keyed, metadata matches, downgrade back to 0004."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db

sa = _db.sa


def test_0004_to_head_adds_members_and_groups(tmp_path, backend, migrate):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path), migrate=False)
    with db.engine.connect() as conn:
        migrate(db, conn, "0004")
    t = "2025-01-01 00:00:00"
    with db.tx() as conn:
        conn.execute(sa.text(
            "INSERT INTO images (id, name, owner, visibility, status, disk_format, container_format, properties, "
            "min_disk, min_ram, created_at) VALUES ('i-1', 'img', 'p-1', 'private', 'active', 'raw', 'bare', '{}', "
            "0, 0, :t)"), {"t": t})
    assert db.upgrade() is True
    assert db.schema_revision() == _db.SCHEMA_HEAD and int(_db.SCHEMA_HEAD) >= 5
    with db.tx() as conn:
        assert conn.execute(sa.text("SELECT name, visibility FROM images")).one() == ("img", "private")
        conn.execute(sa.text("INSERT INTO image_members (image_id, member_id, created_at) VALUES ('i-1', 'p-2', :t)"),
                     {"t": t})
        assert conn.execute(sa.text("SELECT status FROM image_members")).scalar() == "pending"
        conn.execute(sa.text("INSERT INTO server_groups (id, name, project_id, user_id, policy, rules, created_at) "
                             "VALUES ('g-1', 'web', 'p-1', 'u-1', 'anti-affinity', '{}', :t)"), {"t": t})
        conn.execute(sa.text("INSERT INTO server_group_members (instance_uuid, group_id, created_at) "
                             "VALUES ('vm-1', 'g-1', :t)"), {"t": t})
        assert compare_metadata(MigrationContext.configure(conn), _db.METADATA) == []
    # an instance is in one group at most; a member row names an existing image and group
    for stmt in ("INSERT INTO server_group_members (instance_uuid, group_id, created_at) VALUES ('vm-1', 'g-1', :t)",
                 "INSERT INTO server_groups (id, name, project_id, user_id, policy, rules, created_at) "
                 "VALUES ('g-2', 'web', 'p-1', 'u-1', 'affinity', '{}', :t)",
                 "INSERT INTO image_members (image_id, member_id, created_at) VALUES ('nope', 'p-2', :t)"):
        with pytest.raises(sa.exc.IntegrityError):
            with db.tx() as conn:
                conn.execute(sa.text(stmt), {"t": t})
    with db.engine.connect() as conn:
        migrate(db, conn, "0004", down=True)
    assert db.schema_revision() == "0004"
    with db.tx() as conn:
        names = set(sa.inspect(conn).get_table_names())
        assert not names & {"image_members", "server_groups", "server_group_members"}
        assert conn.execute(sa.text("SELECT name FROM images")).scalar() == "img"
