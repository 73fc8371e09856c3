"""${message}"""

from __future__ import annotations

revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa
    ${upgrades if upgrades else "pass"}


def downgrade():
    from alembic import op
    import sqlalchemy as sa
    ${downgrades if downgrades else "pass"}
