# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Key pairs (Nova's ``os-keypairs``): the SSH public keys of a user, injected into an instance's
config drive at boot.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

- ``key_pairs``: one row per (user, name): the OpenSSH public key line, its type (``ssh``; Nova's
  ``x509`` is not supported) and its MD5 fingerprint (Nova's ``generate_fingerprint``). ``project_id``
  is the project the key was created from, for information only: a key pair belongs to its user, in
  every project.
- Rows are deleted, not soft-deleted, as in Nova's API database (``nova_api.key_pairs`` since Newton):
  nothing refers to a key pair row (an instance keeps its own copy of the key, taken at create), so a
  deleted row has nothing left to explain, and a plain unique (user_id, name) keeps the names unique
  on SQLite and PostgreSQL alike.

New table only: nothing existing is rebuilt, on SQLite or PostgreSQL.
"""

from __future__ import annotations

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.create_table(
        "key_pairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False, server_default="ssh"),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "name", name="uniq_key_pairs0user_id0name"),
    )


def downgrade():
    """Drops the table: the key pairs are lost (instances keep the keys they were booted with)."""
    from alembic import op

    op.drop_table("key_pairs")
