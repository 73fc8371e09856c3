# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keystone's revocation_event table replaces revocation_events (issue 16).

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

``revocation_events`` could only revoke one token by its audit ID. ``revocation_event`` is Keystone's
model: an event names an audit ID, a user and/or a project and an ``issued_before`` time; every token
matching all the fields it names and issued at or before that time is revoked. A password change, a
disabled or deleted user (by user) and a removed role assignment (by user and project) write one.

The old rows (one token each) are copied as audit-ID events issued before their revocation time. A new
table and a copy, not an ALTER: the primary key changes, and nothing points at either table.
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    from alembic import op
    import sqlalchemy as sa

    event = op.create_table(
        "revocation_event",
        sa.Column("id", sa.Integer(), nullable=False, autoincrement=True),
        sa.Column("audit_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=64), nullable=True),
        sa.Column("issued_before", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_revocation_event_audit_id", "revocation_event", ["audit_id"])
    op.create_index("ix_revocation_event_user_id", "revocation_event", ["user_id"])
    op.create_index("ix_revocation_event_issued_before", "revocation_event", ["issued_before"])
    old = sa.table("revocation_events", sa.column("audit_id", sa.String()), sa.column("revoked_at", sa.DateTime()),
                   sa.column("expires_at", sa.DateTime()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(old.c.audit_id, old.c.revoked_at, old.c.expires_at)).fetchall()
    if rows:
        op.bulk_insert(event, [{"audit_id": r.audit_id, "issued_before": r.revoked_at, "revoked_at": r.revoked_at,
                                "expires_at": r.expires_at} for r in rows])
    op.drop_table("revocation_events")


def downgrade():
    """Back to one row per revoked token: the audit-ID events are kept, the user and project events are lost
    (the tokens they revoked become valid again until they expire)."""
    from alembic import op
    import sqlalchemy as sa

    old = op.create_table(
        "revocation_events",
        sa.Column("audit_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("audit_id"),
    )
    event = sa.table("revocation_event", sa.column("audit_id", sa.String()), sa.column("revoked_at", sa.DateTime()),
                     sa.column("expires_at", sa.DateTime()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(event.c.audit_id, sa.func.min(event.c.revoked_at), sa.func.max(event.c.expires_at))
                        .where(event.c.audit_id.is_not(None), event.c.expires_at.is_not(None))
                        .group_by(event.c.audit_id)).fetchall()
    if rows:
        op.bulk_insert(old, [{"audit_id": r[0], "revoked_at": r[1], "expires_at": r[2]} for r in rows])
    op.drop_index("ix_revocation_event_issued_before", table_name="revocation_event")
    op.drop_index("ix_revocation_event_user_id", table_name="revocation_event")
    op.drop_index("ix_revocation_event_audit_id", table_name="revocation_event")
    op.drop_table("revocation_event")
