# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identity: project description/enabled, token revocation events, per-project quotas.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    # plain ADD COLUMN (with a server default) works on SQLite and PostgreSQL alike; a batch
    # table rebuild would trip over the foreign keys pointing at projects
    op.add_column("projects", sa.Column("description", sa.Text(), nullable=False, server_default=""))
    op.add_column("projects", sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_table(
        "revocation_events",
        sa.Column("audit_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id"),
    )
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("hard_limit", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("project_id", "resource"),
    )


def downgrade():
    from alembic import op

    op.drop_table("quotas")
    op.drop_table("revocation_events")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("enabled")
        batch.drop_column("description")
