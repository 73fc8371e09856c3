# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What PostgreSQL changes for the state layer, tested on PostgreSQL and on SQLite alike.

SQLite serialises every transaction (BEGIN IMMEDIATE); PostgreSQL runs them concurrently under READ
COMMITTED, so the claim must hold by its compare-and-swap on the provider generation alone. The
workers are separate processes started together behind a barrier (like simultaneous AWX jobs),
each with its own engine.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import NoValidHostError

CTX = multiprocessing.get_context("fork")
SPEC = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)


@pytest.fixture()
def db_url(tmp_path, backend):
    url = backend.new_db_url() or "sqlite:///%s" % (tmp_path / "bootflow.db")
    db = _db.open_db(url)
    db.dispose()
    return url


def _report(db, name, memory_mb, vcpus=64):
    _placement.upsert_compute_node(db, name, {"vcpus": vcpus, "memory_mb": memory_mb, "local_gb": 100}, {}, False)


def _claim_many(url, barrier, worker, count, queue):
    """Claim ``count`` consumers (schedule like the action: host_states + select_hosts, then claim)."""
    db = _db.open_db(url)
    got = []
    try:
        barrier.wait(30)
        for i in range(count):
            consumer = "w%02d-%02d" % (worker, i)
            with db.tx() as conn:
                states = _placement.host_states(conn)
            try:
                sel = _scheduler.select_hosts(states, SPEC, _scheduler.SchedulerConfig(service_down_time=10 ** 9))
                host = _placement.claim(db, consumer, SPEC, [h[0] for h in sel.hosts])[0]
            except (NoValidHostError, _scheduler.NoValidHost):
                host = None
            got.append((consumer, host))
    except Exception as exc:  # pylint: disable=broad-except  # reported to the parent
        got.append(("error", "%s: %s" % (type(exc).__name__, exc)))
    finally:
        db.dispose()
        queue.put(got)


def _run_workers(target, args_of, n):
    barrier, queue = CTX.Barrier(n), CTX.Queue()
    procs = [CTX.Process(target=target, args=args_of(i, barrier, queue)) for i in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _proc in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return [r for res in results for r in res]


def test_racing_schedulers_fill_hosts_exactly_and_never_overcommit(db_url):
    db = _db.open_db(db_url)
    # room for 4 + 3 + 2 = 9 guests of 128 MB (512 MB reserved per host)
    for name, slots in (("hv1", 4), ("hv2", 3), ("hv3", 2)):
        _report(db, name, 512 + slots * 128)
    got = _run_workers(_claim_many, lambda i, b, q: (db_url, b, i, 5, q), 8)   # 40 attempts for 9 slots
    errors = [g for g in got if g[0] == "error"]
    assert not errors, errors
    placed = {c: h for c, h in got if h}
    assert sorted(placed.values()) == ["hv1"] * 4 + ["hv2"] * 3 + ["hv3"] * 2, got
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    with db.tx() as conn:
        rows = conn.execute(_db.sa.select(alloc.c.consumer_id, nodes.c.hostname, nodes.c.generation)
                            .join(nodes, nodes.c.id == alloc.c.compute_node_id)).fetchall()
        states = {h.name: h for h in _placement.host_states(conn)}
    # every claim that said "yes" holds exactly one allocation, on the host it said, and nothing else does
    assert {r.consumer_id: r.hostname for r in rows} == placed
    for name, state in states.items():
        assert state.memory_mb_used <= (state.memory_mb - state.reserved_host_memory_mb) * state.ram_allocation_ratio
        assert state.generation == state.num_instances   # one generation bump per successful claim
    db.dispose()


def _claim_one(url, barrier, consumer, queue):
    db = _db.open_db(url)
    try:
        barrier.wait(30)
        queue.put([_placement.claim(db, consumer, SPEC, ["hv1", "hv2"])[0]])
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(["%s: %s" % (type(exc).__name__, exc)])
    finally:
        db.dispose()


def test_the_same_consumer_claimed_at_once_gets_one_allocation(db_url):
    db = _db.open_db(db_url)
    _report(db, "hv1", 512 + 10 * 128)
    _report(db, "hv2", 512 + 10 * 128)
    got = _run_workers(_claim_one, lambda i, b, q: (db_url, b, "same-consumer", q), 6)
    assert len(set(got)) == 1 and got[0] in ("hv1", "hv2"), got
    with db.tx() as conn:
        held = _placement.existing_allocation(conn, "same-consumer")
        count = conn.execute(_db.sa.select(_db.sa.func.count()).select_from(_db.table("allocations"))).scalar()
    assert count == 1 and held.hostname == got[0]
    db.dispose()


def _open(url, barrier, _unused, queue):
    try:
        barrier.wait(30)
        db = _db.open_db(url)
        queue.put([db.schema_revision()])
        db.dispose()
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(["%s: %s" % (type(exc).__name__, exc)])


def test_simultaneous_first_opens_migrate_once(tmp_path, backend):
    url = backend.new_db_url() or "sqlite:///%s" % (tmp_path / "fresh.db")
    got = _run_workers(_open, lambda i, b, q: (url, b, None, q), 5)
    assert got == [_db.SCHEMA_HEAD] * 5


def test_release_and_inventory_change_bump_the_generation(db_url):
    db = _db.open_db(db_url)
    _report(db, "hv1", 512 + 2 * 128)
    assert _placement.claim(db, "c1", SPEC, ["hv1"])[0] == "hv1"
    _report(db, "hv1", 512 + 2 * 128)            # same report: no change, no bump
    _report(db, "hv1", 512 + 3 * 128)            # bigger: bump
    assert _placement.release(db, "c1") == "hv1"  # bump
    with db.tx() as conn:
        assert _placement.host_states(conn)[0].generation == 3
    db.dispose()


def test_postgresql_engine_settings(pg_server):
    db = _db.open_db(pg_server.create_database("settings"))
    with db.tx() as conn:
        assert conn.exec_driver_sql("SHOW transaction_isolation").scalar() == "read committed"
        assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "1min"
        assert conn.exec_driver_sql("SELECT current_setting('application_name')").scalar() == "bootflow"
    # a forked child never reuses the parent's pooled connection: it gets its own and both keep working
    queue = CTX.Queue()

    def child():
        try:
            with db.tx() as conn:
                queue.put(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar())
        except Exception as exc:  # pylint: disable=broad-except
            queue.put(repr(exc))

    with db.tx() as conn:
        parent_pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    proc = CTX.Process(target=child)
    proc.start()
    child_pid = queue.get(timeout=30)
    proc.join(30)
    assert isinstance(child_pid, int) and child_pid != parent_pid, child_pid
    with db.tx() as conn:
        assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() == parent_pid
    db.dispose()


def test_unreachable_postgresql_is_a_clear_error():
    # a port nothing listens on (ours, just closed): DBError naming the URL without its password
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(_db.DBError, match=r"cannot open the bootflow database postgresql\+psycopg2://bf:\*\*\*@127\.0\.0\.1:\d+/x: .*Connection refused"):
        _db.open_db("postgres://bf:secret@127.0.0.1:%d/x" % port)


def _take_if_below(url, barrier, locked, queue, limit=3):
    """count, compare, insert: what a quota check does. Returns True when a row was taken."""
    db = _db.open_db(url)
    flavors = _db.table("flavors")
    try:
        barrier.wait(30)
        with db.tx() as conn:
            if locked:
                _db.lock(conn, "test:limit")
            taken = _db.count(conn, "flavors", flavors.c.name.like("taken-%"))
            time.sleep(0.5)   # widen the window between the check and the write
            ok = taken < limit
            if ok:
                conn.execute(flavors.insert().values(id=_db.new_id(), name="taken-%d" % os.getpid(), vcpus=1, ram_mb=1,
                                                     disk_gb=0, extra_specs={}, created_at=_db.now()))
        queue.put([ok])
    except Exception as exc:  # pylint: disable=broad-except
        queue.put(["%s: %s" % (type(exc).__name__, exc)])
    finally:
        db.dispose()


@pytest.mark.parametrize("locked", [True, False], ids=["lock", "no-lock"])
def test_lock_serialises_a_check_then_write(db_url, locked):
    got = _run_workers(_take_if_below, lambda i, b, q: (db_url, b, locked, q), 6)
    db = _db.open_db(db_url)
    with db.tx() as conn:
        taken = _db.count(conn, "flavors", _db.table("flavors").c.name.like("taken-%"))
    db.dispose()
    if locked or db_url.startswith("sqlite"):
        # serialised (PG: the advisory lock; SQLite: BEGIN IMMEDIATE): exactly the limit
        assert sorted(got, key=str) == [False] * 3 + [True] * 3 and taken == 3, got
    else:
        # PG without the lock: every check saw the same count and went over the limit;
        # shows that the lock is what holds the limit on PostgreSQL
        assert taken > 3, got
