# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The database backends the controller services are tested on: SQLite and PostgreSQL.

``backend`` is parametrized: a test that uses it runs once on a SQLite file in its state dir (the
embedded default) and once on a fresh database of a real PostgreSQL server. The server is this
session's own (bench/pgserver.py): initdb into a temp dir, ``postgres`` started on 127.0.0.1 and a
free port with its socket in that dir, stopped by its pid when the session ends. It is started
only when a PostgreSQL test runs. No mocks, and no skip: without the server binaries the
PostgreSQL tests fail and say what to install.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench"))

import pgserver  # noqa: E402  # bench/pgserver.py


@pytest.fixture(scope="session")
def pg_server():
    server = pgserver.PgServer(fast=True)
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail("cannot start a private PostgreSQL server (scripts/setup.sh installs the postgresql "
                    "package): %s" % exc)
    yield server
    server.stop()
    assert server.proc.returncode is not None


class Backend:
    def __init__(self, name, server=None):
        self.name = name
        self.server = server

    def new_db_url(self):
        """A fresh, empty database: None for SQLite (the state dir's file), else a new PG database's URL."""
        if self.server is None:
            return None
        return self.server.create_database("t_" + uuid.uuid4().hex[:16])


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request):
    if request.param == "sqlite":
        return Backend("sqlite")
    return Backend("postgresql", request.getfixturevalue("pg_server"))


def alembic_to(db, conn, rev, down=False):
    """Move the schema on ``conn`` to revision ``rev`` with Alembic (upgrade, or ``down``grade), the way
    the migration tests need it: one revision at a time, data inserted in between by the test."""
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db

    cfg = Config()
    cfg.set_main_option("script_location", _db.MIGRATIONS_DIR)
    script = ScriptDirectory.from_config(cfg)

    def fn(current, _context):
        if down:
            return script._downgrade_revs(rev, current)  # pylint: disable=protected-access
        return script._upgrade_revs(rev, current)  # pylint: disable=protected-access

    if db.is_sqlite:
        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")
    with EnvironmentContext(cfg, script, fn=fn, destination_rev=rev) as env:
        env.configure(connection=conn, target_metadata=_db.METADATA, render_as_batch=db.is_sqlite)
        with env.begin_transaction():
            env.run_migrations()
    conn.commit()
    if db.is_sqlite:   # the pooled connection goes back with its keys on, as the connect hook leaves them
        conn.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")


@pytest.fixture()
def migrate():
    """:func:`alembic_to` as a fixture: ``migrate(db, conn, "0003")``, ``migrate(db, conn, "0002", down=True)``."""
    return alembic_to
