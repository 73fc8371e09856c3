# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image members (Glance's ``shared`` visibility) and server groups (Nova's affinity policies).

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

- ``image_members``: one row per (image, project) an image is shared with, with Glance's member
  status (``pending`` until the member project accepts, ``accepted``, ``rejected``).
- ``server_groups`` + ``server_group_members``: Nova's instance groups (policy and rules such as
  ``max_server_per_host``); an instance is a member of at most one group (its primary key).

New tables only: nothing existing is rebuilt, on SQLite or PostgreSQL.
"""

from __future__ import annotations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.create_table(
        "image_members",
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False, server_default="pending"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], name="fk_image_members0image_id"),
        sa.PrimaryKeyConstraint("image_id", "member_id"),
    )
    op.create_index("ix_image_members_member_id", "image_members", ["member_id"])
    op.create_table(
        "server_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("project_id", "name", name="uniq_server_groups0project_id0name"),
    )
    op.create_table(
        "server_group_members",
        sa.Column("instance_uuid", sa.String(length=36), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["server_groups.id"], name="fk_server_group_members0group_id"),
        sa.PrimaryKeyConstraint("instance_uuid"),
    )
    op.create_index("ix_server_group_members_group_id", "server_group_members", ["group_id"])


def downgrade():
    """Drops the tables: shares and group memberships are lost (images and instances stay)."""
    from alembic import op

    op.drop_index("ix_server_group_members_group_id", table_name="server_group_members")
    op.drop_table("server_group_members")
    op.drop_table("server_groups")
    op.drop_index("ix_image_members_member_id", table_name="image_members")
    op.drop_table("image_members")
