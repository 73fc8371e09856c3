# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Fernet key repository in the database, encrypted (used when BOOTFLOW_KEY_SECRET is set).

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

``fernet_keys`` holds one row per key (index 0 is the staged key, the highest the primary), each key
encrypted with a key derived from the operator's secret. ``fernet_key_wrap`` is the one row saying how
that key is derived (scrypt parameters and salt) and a verifier, so that a wrong secret is told apart
from a damaged key. Two new tables: nothing else changes.
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    op.create_table(
        "fernet_key_wrap",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kdf", sa.String(length=64), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "fernet_keys",
        sa.Column("key_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key_index"),
    )


def downgrade():
    """The keys are lost with the tables: move them to the file repository first (docs/awx.md)."""
    from alembic import op

    op.drop_table("fernet_keys")
    op.drop_table("fernet_key_wrap")
