# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Identity: Keystone domains. A ``domains`` table with the Default domain (id ``default``),
``domain_id`` on projects and users, and project/user names unique per domain, not globally.

PRIVATE to the collection. Frozen: change the schema with a new revision, never here.

On SQLite the two tables are rebuilt (batch, copy + drop + rename): ``Database.upgrade`` runs the
migrations with the foreign_keys pragma off and checks the keys before commit, since other tables
(users, quotas, role assignments) point at projects and users.
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_UNIQUE = {"projects": "uniq_projects0domain_id0name", "users": "uniq_users0domain_id0name"}
_FK = {"projects": "fk_projects0domain_id", "users": "fk_users0domain_id"}


def _old_tables(sa):
    """projects and users as revision 0002 left them, without their unnamed UNIQUE(name) (the
    batch rebuild on SQLite starts from these instead of reflecting, so the constraint goes)."""
    md = sa.MetaData()
    projects = sa.Table(
        "projects", md,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.PrimaryKeyConstraint("id"),
    )
    users = sa.Table(
        "users", md,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("password_hash", sa.String(length=512), nullable=False),
        sa.Column("default_project_id", sa.String(length=36), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["default_project_id"], ["projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    return {"projects": projects, "users": users}


def upgrade():
    import datetime

    from alembic import op
    import sqlalchemy as sa

    domains = op.create_table(
        "domains",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    created = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    op.bulk_insert(domains, [{"id": "default", "name": "Default", "enabled": True,
                              "description": "The default domain", "created_at": created}])

    bind = op.get_bind()
    old = _old_tables(sa)
    for name in ("projects", "users"):
        domain_id = sa.Column("domain_id", sa.String(length=64), nullable=False, server_default="default")
        if bind.dialect.name == "sqlite":
            # rebuilt from the 0002 definition minus UNIQUE(name); existing rows get domain_id 'default'
            with op.batch_alter_table(name, recreate="always", copy_from=old[name]) as batch:
                batch.add_column(domain_id)
                batch.create_foreign_key(_FK[name], "domains", ["domain_id"], ["id"])
                batch.create_unique_constraint(_UNIQUE[name], ["domain_id", "name"])
        else:
            op.add_column(name, domain_id)
            op.create_foreign_key(_FK[name], name, "domains", ["domain_id"], ["id"])
            for uq in sa.inspect(bind).get_unique_constraints(name):
                if uq["column_names"] == ["name"]:
                    op.drop_constraint(uq["name"], name, type_="unique")
            op.create_unique_constraint(_UNIQUE[name], name, ["domain_id", "name"])


def downgrade():
    """Back to globally unique names: fails (unique violation) while two domains share a project or
    user name; projects and users of other domains are kept, without their domain."""
    from alembic import op

    bind = op.get_bind()
    for name in ("users", "projects"):
        if bind.dialect.name == "sqlite":
            with op.batch_alter_table(name, recreate="always") as batch:
                batch.drop_constraint(_UNIQUE[name], type_="unique")
                batch.drop_constraint(_FK[name], type_="foreignkey")
                batch.drop_column("domain_id")
                batch.create_unique_constraint("uq_%s_name" % name, ["name"])
        else:
            op.drop_constraint(_UNIQUE[name], name, type_="unique")
            op.drop_constraint(_FK[name], name, type_="foreignkey")
            op.drop_column(name, "domain_id")
            op.create_unique_constraint("uq_%s_name" % name, name, ["name"])
    op.drop_table("domains")
