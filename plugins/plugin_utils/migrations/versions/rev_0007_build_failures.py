# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build failures per host, and what a failed build left on a host that could not clean it up.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

- ``compute_nodes.failed_builds``: consecutive failed builds on the host (Nova's compute node stat
  ``failed_builds``, which the BuildFailureWeigher reads); a successful build resets it to 0.
- ``host_cleanups``: the residue of a failed build on a host whose undo could not run (libvirtd down,
  the host unreachable) - its domain, instance directory, DHCP reservations and pool volumes. The
  controller released the claim and the ports and rescheduled the instance; the host removes the
  residue when it is back (playbooks/hypervisors.yml), as Nova's compute does at start-up.

A plain ADD COLUMN with a server default and a new table: nothing is rebuilt, on SQLite or PostgreSQL.
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.add_column("compute_nodes", sa.Column("failed_builds", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "host_cleanups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("residue", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("done_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_host_cleanups_host", "host_cleanups", ["host"])


def downgrade():
    """Drops the table and the column: residue not yet removed is forgotten."""
    from alembic import op

    op.drop_index("ix_host_cleanups_host", table_name="host_cleanups")
    op.drop_table("host_cleanups")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("failed_builds")
