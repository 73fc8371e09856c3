# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The integration suite's residue check (tests/integration/conftest.py) can fail: every kind of leftover
it looks for - live rows in a controller DB on SQLite and on PostgreSQL (found just before the server
stops), a real Placement's allocations and consumers, what the Molecule scenario's destroy must remove,
and a stopping test host's domains and files - is planted here in a DB/file/dir of the test's own and
must be reported; the same places without the plant are reported clean.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import sqlite3
import sys
import uuid

import pytest
import sqlalchemy as sa

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _load_it_conftest():
    spec = importlib.util.spec_from_file_location("bootflow_it_conftest",
                                                  os.path.join(REPO, "tests", "integration", "conftest.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


it = _load_it_conftest()


def _dummy(column):
    if isinstance(column.type, (sa.Integer, sa.BigInteger, sa.Float, sa.Numeric)):
        return 1
    if isinstance(column.type, sa.Boolean):
        return False
    if isinstance(column.type, sa.DateTime):
        return datetime.datetime(2026, 1, 1)
    if isinstance(column.type, sa.JSON):
        return {}
    return "x-" + uuid.uuid4().hex[:8]


def plant(db, table, **values):
    """One row in the product's own schema: the given values, a dummy in every other required column
    (foreign keys not checked: a plain engine on SQLite, replica mode on PostgreSQL)."""
    t = _db.METADATA.tables[table]
    row = dict(values)
    for column in t.columns:
        if column.name in row or column.nullable or column.default is not None or column.server_default is not None:
            continue
        if column.primary_key and isinstance(column.type, (sa.Integer, sa.BigInteger)):
            continue   # autoincrement
        row[column.name] = _dummy(column)
    engine = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            if db.is_postgresql:
                conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
            conn.execute(t.insert().values(**row))
    finally:
        engine.dispose()


def test_a_fresh_controller_db_is_clean_and_every_check_query_runs(tmp_path):
    db = _db.open_db(state_dir=str(tmp_path))
    db.engine.dispose()
    path = str(tmp_path / "bootflow.db")
    assert it.db_residue(path) == []
    conn = sqlite3.connect(path)
    try:
        for _what, sql in it.DB_RESIDUE_CHECKS:   # no check is skipped as "no such table/column"
            conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_planted_rows_in_a_sqlite_db_are_reported(tmp_path):
    db = _db.open_db(state_dir=str(tmp_path))
    inst = str(uuid.uuid4())
    plant(db, "instances", uuid=inst, name="left-vm", vm_state="active", deleted=0)
    plant(db, "instances", uuid=str(uuid.uuid4()), name="gone-vm", vm_state="deleted", deleted=7)
    plant(db, "ports", ip="10.97.0.9", mac="fa:16:3e:00:00:09", instance_uuid=inst)
    plant(db, "allocations", consumer_id=inst)
    plant(db, "volumes", name="left-vol", status="in-use")
    plant(db, "images", name="half-image", status="saving")
    db.engine.dispose()
    found = it.db_residue(str(tmp_path / "bootflow.db"))
    text = "\n".join(found)
    assert "live instance left-vm %s active" % inst in text, found
    assert "gone-vm" not in text
    assert "port (IP) 10.97.0.9 fa:16:3e:00:00:09 instance %s" % inst in text, found
    assert "claim %s" % inst in text and "volume left-vol in-use" in text, found
    assert "half-made image half-image saving" in text, found
    assert len(found) == 5, found
    # found by the session check too: the DB under the suite's basetemp
    residue, _hosts = it.find_residue(str(tmp_path / "residue.log"), tmp_path)
    assert sorted(residue) == sorted(found)


def test_placement_allocations_and_consumers_are_reported(tmp_path):
    pdir = tmp_path / "osp" / "placement"
    pdir.mkdir(parents=True)
    path = str(pdir / "placement.db")
    conn = sqlite3.connect(path)
    # Placement's own columns (placement/db/sqlalchemy/models.py)
    conn.execute("CREATE TABLE allocations (id INTEGER PRIMARY KEY, resource_provider_id INTEGER, consumer_id VARCHAR(36), "
                 "resource_class_id INTEGER, used INTEGER)")
    conn.execute("CREATE TABLE consumers (id INTEGER PRIMARY KEY, uuid VARCHAR(36), project_id INTEGER, user_id INTEGER)")
    conn.commit()
    assert it.placement_residue(path) == []
    consumer = str(uuid.uuid4())
    conn.execute("INSERT INTO allocations (resource_provider_id, consumer_id, resource_class_id, used) VALUES (1, ?, 1, 128)",
                 (consumer,))
    conn.execute("INSERT INTO consumers (uuid, project_id, user_id) VALUES (?, 1, 1)", (consumer,))
    conn.commit()
    conn.close()
    assert it.placement_residue(path) == ["%s: Placement allocation %s 128" % (path, consumer),
                                          "%s: Placement consumer %s" % (path, consumer)]
    assert it.suite_placement_dbs(tmp_path) == [os.path.realpath(path)]
    residue, _hosts = it.find_residue(str(tmp_path / "residue.log"), tmp_path)
    assert len(residue) == 2 and all("Placement" in r for r in residue), residue


def test_molecule_leftovers_are_reported(tmp_path):
    roots, states, eph = tmp_path / "hosts", tmp_path / "molecule", tmp_path / "eph"
    kwargs = dict(scenarios={"default": [31], "multihost": [32, 33]}, state_root=str(states),
                  hosts_root=str(roots), ephemeral_dirs={"default": str(eph), "multihost": str(tmp_path / "eph2")})
    mine = [r for r in it.molecule_residue(**kwargs) if str(tmp_path) in r]
    assert mine == []
    inst = str(uuid.uuid4())
    (roots / "host33" / "etc" / "qemu").mkdir(parents=True)
    (roots / "host33" / "etc" / "qemu" / ("bootflow-%s.xml" % inst)).write_text("<domain/>")
    (roots / "host33" / "bootflow" / "instances" / inst).mkdir(parents=True)
    (roots / "host33" / "bootflow" / "dhcp" / "net1").mkdir(parents=True)
    (roots / "host33" / "bootflow" / "dhcp" / "net1" / "host").write_text("fa:16:3e:00:00:01,host-x,10.97.0.3\n")
    db = _db.open_db(state_dir=str(states / "multihost"))
    plant(db, "instances", uuid=inst, name="molecule-vm", vm_state="active", deleted=0)
    db.engine.dispose()
    eph.mkdir()
    (eph / "state.yml").write_text("converged: true\ncreated: true\ndriver: default\n")
    found = it.molecule_residue(**kwargs)
    text = "\n".join(found)
    assert "test host dir %s not purged" % (roots / "host33") in text, found
    assert "libvirt domain bootflow-%s" % inst in text, found
    assert "instance directory instances/%s" % inst in text, found
    assert "DHCP reservation in dhcp/net1/host: fa:16:3e:00:00:01,host-x,10.97.0.3" in text, found
    assert "multihost: controller state dir %s not removed" % (states / "multihost") in text, found
    assert any(r.startswith("molecule: multihost: ") and r.endswith("live instance molecule-vm %s active" % inst)
               for r in found), found
    assert "state dirs' parent %s not removed" % states in text, found
    assert "default: %s says the instances are still created" % (eph / "state.yml") in text, found
    assert not any("host31" in r or "host32" in r for r in found), found


def test_molecule_scenarios_are_read_from_their_inventories():
    scenarios = it.molecule_scenarios()
    assert scenarios["default"] == [31], scenarios
    assert len(scenarios["multihost"]) == 3, scenarios
    assert all(31 <= n <= 36 for hosts in scenarios.values() for n in hosts), scenarios


def test_a_stopping_hosts_leftovers_in_the_residue_log_are_reported(tmp_path):
    log = tmp_path / "residue.log"
    log.write_text("@@ bfhv999 start 1\n@@ bfhv999 purge 2\ndomain bootflow-abc\npath volumes/volume-1\n"
                   "path instances/_base/0123.part\nline dhcp/n/leases 1 fa:16:3e:00:00:02 10.97.0.4 * *\n")
    residue, hosts = it.find_residue(str(log), tmp_path)
    assert hosts == {"bfhv999"}
    assert [r for r in residue if r.startswith("bfhv999:") and "namespace" not in r and "veth" not in r] == [
        "bfhv999: libvirt domain bootflow-abc", "bfhv999: pool volume volumes/volume-1",
        "bfhv999: half-made image cache file instances/_base/0123.part", "bfhv999: DHCP lease in dhcp/n/leases: 1 fa:16:3e:00:00:02 10.97.0.4 * *"]


@pytest.fixture()
def private_pg():
    server = it.pgserver.PgServer(fast=True).start()
    yield server
    server.stop()


def test_live_rows_on_postgresql_are_reported_before_the_server_stops(private_pg):
    clean = private_pg.create_database("it_clean")
    _db.open_db(db_url=clean).engine.dispose()
    url = private_pg.create_database("it_left")
    db = _db.open_db(db_url=url)
    inst = str(uuid.uuid4())
    plant(db, "instances", uuid=inst, name="pg-left-vm", vm_state="building", deleted=0)
    plant(db, "volumes", name="pg-left-vol", status="available")
    db.engine.dispose()
    assert it.db_residue(clean) == []
    expected = ["%s: live instance pg-left-vm %s building" % (url, inst), "%s: volume pg-left-vol available" % url]
    assert it.pg_server_residue(private_pg) == expected
    # the session's way: the hook the residue check installs runs just before the server stops
    it.PG_RESIDUE.clear()
    it.pgserver.PgServer.before_stop.append(it._pg_before_stop)  # pylint: disable=protected-access
    try:
        private_pg.stop()
    finally:
        it.pgserver.PgServer.before_stop.remove(it._pg_before_stop)  # pylint: disable=protected-access
    assert it.PG_RESIDUE == expected
    assert private_pg.proc.returncode is not None and private_pg.base is None
