# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Scheduler and placement: what a compute node reports beyond its capacity (availability zone,
aggregates, traits) and which placement backend holds an allocation (``local`` or ``placement``).

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

Plain ADD COLUMN with server defaults (SQLite and PostgreSQL alike): existing compute nodes are in
zone ``nova`` with no aggregates or traits, existing allocations are the local backend's.
"""

from __future__ import annotations

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.add_column("compute_nodes", sa.Column("availability_zone", sa.String(length=255), nullable=False,
                                             server_default="nova"))
    op.add_column("compute_nodes", sa.Column("aggregates", sa.JSON(), nullable=True))
    op.add_column("compute_nodes", sa.Column("traits", sa.JSON(), nullable=True))
    op.add_column("allocations", sa.Column("backend", sa.String(length=16), nullable=False, server_default="local"))


def downgrade():
    """Drops the columns: allocations made in Placement are then indistinguishable from local ones."""
    from alembic import op

    with op.batch_alter_table("allocations") as batch:
        batch.drop_column("backend")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("traits")
        batch.drop_column("aggregates")
        batch.drop_column("availability_zone")
