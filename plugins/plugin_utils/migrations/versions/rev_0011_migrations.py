# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nova's migrations table: one row per resize of an instance (its source and destination host, its old and new
flavor, the vm_state to go back to, and its status: pre-migrating, migrating, post-migrating, finished, then
confirmed, reverted or error).

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

A new table: no row of another table changes.
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.create_table(
        "migrations",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("migration_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source_compute", sa.String(length=255), nullable=False),
        sa.Column("dest_compute", sa.String(length=255), nullable=False),
        sa.Column("old_flavor_id", sa.String(length=36), nullable=False),
        sa.Column("new_flavor_id", sa.String(length=36), nullable=False),
        sa.Column("old_vm_state", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_migrations_instance_uuid", "migrations", ["instance_uuid"])


def downgrade():
    """Drops the table: an open resize is forgotten (its source claim stays with the migration's id)."""
    from alembic import op

    op.drop_index("ix_migrations_instance_uuid", table_name="migrations")
    op.drop_table("migrations")
