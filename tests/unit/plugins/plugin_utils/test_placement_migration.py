# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Revision 0004 (compute node zone/aggregates/traits, allocation backend) on a DB holding data at
revision 0003, on SQLite and PostgreSQL: rows kept, defaults filled, metadata matches, downgrade."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement

sa = _db.sa


def test_0003_to_head_keeps_nodes_and_allocations(tmp_path, backend, migrate):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path), migrate=False)
    with db.engine.connect() as conn:
        migrate(db, conn, "0003")
    t = "2025-01-01 00:00:00"
    with db.tx() as conn:
        conn.execute(sa.text(
            "INSERT INTO compute_nodes (id, hostname, vcpus, memory_mb, local_gb, reserved_host_memory_mb, "
            "cpu_allocation_ratio, ram_allocation_ratio, disk_allocation_ratio, disabled, generation, updated_at) "
            "VALUES ('n-1', 'hv1', 4, 8192, 100, 512, 4.0, 1.0, 1.0, false, 3, :t)"), {"t": t})
        conn.execute(sa.text("INSERT INTO allocations (id, consumer_id, compute_node_id, vcpus, memory_mb, disk_gb, "
                             "created_at) VALUES ('a-1', 'c-1', 'n-1', 1, 512, 1, :t)"), {"t": t})
    assert db.upgrade() is True
    assert db.schema_revision() == _db.SCHEMA_HEAD and int(_db.SCHEMA_HEAD) >= 4
    with db.tx() as conn:
        node = conn.execute(sa.text("SELECT hostname, availability_zone, aggregates, traits, generation "
                                    "FROM compute_nodes")).one()
        assert tuple(node) == ("hv1", "nova", None, None, 3)
        assert conn.execute(sa.text("SELECT consumer_id, backend FROM allocations")).one() == ("c-1", "local")
        # the scheduler reads the migrated rows: zone nova, no aggregates or traits, one instance
        state = _placement.host_states(conn)[0]
        assert (state.availability_zone, state.aggregates, state.traits, state.num_instances) == \
            ("nova", frozenset(), frozenset(), 1)
        assert _placement.existing_allocation(conn, "c-1").backend == "local"
        assert compare_metadata(MigrationContext.configure(conn), _db.METADATA) == []
    with db.engine.connect() as conn:
        migrate(db, conn, "0003", down=True)
    assert db.schema_revision() == "0003"
    with db.tx() as conn:
        cols = {c["name"] for c in sa.inspect(conn).get_columns("compute_nodes")}
        assert "availability_zone" not in cols and "traits" not in cols
        assert conn.execute(sa.text("SELECT consumer_id FROM allocations")).scalar() == "c-1"
    assert db.upgrade() is True
    db.dispose()
