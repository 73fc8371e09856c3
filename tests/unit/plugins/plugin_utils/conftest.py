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
