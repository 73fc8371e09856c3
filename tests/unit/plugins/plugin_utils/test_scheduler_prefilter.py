# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""placement.select_local (the SQL prefilter and the light rows) chooses what scheduler.select_hosts over every
host state chooses: the same host, alternates, weights and rejection reasons, on SQLite and PostgreSQL.

Randomized: small fleets with hosts that fail each filter (disabled, down, never reported, another zone,
aggregates, traits, full, exactly full, too small a total, tried, a group member's host), random requests and
scheduler settings; the reference is the plain Python path on the same rows, the same ``now`` and the same
random generator. Revision 0010's index is checked on both databases too."""

from __future__ import annotations

import datetime
import random
import uuid

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler

sa = _db.sa
NOW = datetime.datetime(2026, 12, 1, 12, 0, 0)
NOW_EPOCH = _db.epoch(NOW)
ZONES = ("nova", "az1", "az2")
AGGREGATES = ("fast", "gpu", "slow")
TRAITS = ("CUSTOM_SSD", "HW_CPU_X86_AVX2", "CUSTOM_NVME")


def _fill(db, rnd, count):
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    rows, allocs = [], []
    for index in range(count):
        nid = str(uuid.uuid4())
        age = rnd.choice((0, 5, 59.5, 60, 61, 3600, -30, -120, None))
        rows.append(dict(
            id=nid, hostname=rnd.choice(("hv", "node", "Hv", "h-")) + "%02d" % index,
            vcpus=rnd.choice((1, 2, 4, 8)), memory_mb=rnd.choice((512, 1024, 2048, 4096)),
            local_gb=rnd.choice((1, 10, 20, 100)), reserved_host_memory_mb=rnd.choice((0, 256, 512)),
            cpu_allocation_ratio=rnd.choice((0.5, 1.0, 1.5, 4.0, 16.0)), ram_allocation_ratio=rnd.choice((0.9, 1.0, 1.5)),
            disk_allocation_ratio=rnd.choice((1.0, 1.1, 2.0)), disabled=rnd.random() < 0.15, generation=0,
            updated_at=None if age is None else NOW - datetime.timedelta(seconds=age),
            availability_zone=rnd.choice(ZONES), failed_builds=rnd.choice((0, 0, 0, 1, 3)),
            aggregates=rnd.choice((None, [], rnd.sample(AGGREGATES, rnd.randint(1, 2)))),
            traits=rnd.choice((None, [], rnd.sample(TRAITS, rnd.randint(1, 2)))),
            arch=rnd.choice(("x86_64", "aarch64", None)), hypervisor_type="QEMU", hypervisor_version=7002000))
        for _k in range(rnd.choice((0, 0, 1, 2, 3))):
            allocs.append(dict(id=str(uuid.uuid4()), consumer_id=str(uuid.uuid4()), compute_node_id=nid,
                               vcpus=rnd.choice((1, 2)), memory_mb=rnd.choice((128, 256, 512, 768)),
                               disk_gb=rnd.choice((1, 5, 10)), created_at=NOW))
    with db.tx() as conn:
        conn.execute(alloc.delete())
        conn.execute(nodes.delete())
        if rows:
            conn.execute(nodes.insert(), rows)
        if allocs:
            conn.execute(alloc.insert(), allocs)
    return [r["hostname"] for r in rows]


def _request(rnd, names):
    kw = dict(vcpus=rnd.choice((0, 1, 2, 4)), memory_mb=rnd.choice((0, 128, 256, 512, 1024)),
              root_gb=rnd.choice((0, 1, 10)), ephemeral_gb=rnd.choice((0, 0, 5)))
    extra = {}
    if rnd.random() < 0.3:
        extra["member_of"] = rnd.choice(("fast", "in:gpu,slow"))
    if rnd.random() < 0.3:
        extra["trait:%s" % rnd.choice(TRAITS)] = rnd.choice(("required", "forbidden"))
    if rnd.random() < 0.1:
        extra["capabilities:arch"] = "x86_64"
    if rnd.random() < 0.1:
        extra["hw:cpu_policy"] = "shared"          # scoped, not a capability: changes nothing
    kw["flavor_extra_specs"] = extra
    if rnd.random() < 0.1:
        kw["image_properties"] = {"hw_architecture": "x86_64"}
    if rnd.random() < 0.4:
        kw["availability_zone"] = rnd.choice(ZONES)
    if rnd.random() < 0.1:
        kw["force_host"] = rnd.choice(names)
    if rnd.random() < 0.3:
        kw["tried_hosts"] = rnd.sample(names, min(2, len(names)))
    if rnd.random() < 0.4:
        kw["group_policy"] = rnd.choice(("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"))
        kw["group_hosts"] = [rnd.choice(names) for _member in range(rnd.randint(0, 3))]
        kw["max_server_per_host"] = rnd.choice((1, 2))
    return _scheduler.RequestSpec(**kw)


def _config(rnd):
    filters = list(_scheduler.FILTERS)
    return _scheduler.SchedulerConfig(
        enabled_filters=None if rnd.random() < 0.5 else rnd.sample(filters, rnd.randint(0, len(filters))),
        multipliers=rnd.choice(({}, {"RAMWeigher": -1.0, "NumInstancesWeigher": 2.0}, {"CPUWeigher": 0.0},
                                {"DiskWeigher": 3.5, "BuildFailureWeigher": 0.0})),
        host_subset_size=rnd.choice((1, 1, 3)), max_attempts=rnd.choice((1, 3)),
        service_down_time=rnd.choice((60, 0.5, 10 ** 9)), shuffle_best_same_weighed_hosts=rnd.random() < 0.2)


def _outcome(run):
    try:
        sel = run()
    except _scheduler.NoValidHost as exc:
        return "NoValidHost", exc.rejected, list(exc.rejected)
    return sel.hosts, sel.rejected, list(sel.rejected)


def _reference(conn, spec, cfg, hosts, seed):
    states = _placement.host_states(conn)
    if hosts is not None:
        states = [s for s in states if s.name in set(hosts)]
    if not states:
        raise _scheduler.NoValidHost({})
    return _scheduler.select_hosts(states, spec, cfg, now=NOW_EPOCH, rng=random.Random(seed))


def test_select_local_is_select_hosts(tmp_path, backend, monkeypatch):
    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path))
    rnd = random.Random(18)
    light = full = failures = 0
    try:
        for case in range(60 if backend.name == "sqlite" else 30):
            # the hosts left to the Python filters named in an IN list, or picked out of every host's state
            monkeypatch.setattr(_placement, "_FEW", rnd.choice((0, 500)))
            names = _fill(db, rnd, rnd.randint(0, 14))
            for _request_no in range(4):
                spec, cfg = _request(rnd, names or ["none"]), _config(rnd)
                hosts = None if rnd.random() < 0.8 else rnd.sample(names, len(names) // 2)
                with db.tx() as conn:
                    want = _outcome(lambda: _reference(conn, spec, cfg, hosts, case))
                    got = _outcome(lambda: _placement.select_local(conn, spec, cfg, hosts, now=NOW_EPOCH,
                                                                   rng=random.Random(case)))
                assert got == want, (case, spec, cfg, hosts)
                light += _scheduler.light_filters(spec, cfg) is not None
                full += _scheduler.light_filters(spec, cfg) is None
                failures += want[0] == "NoValidHost"
    finally:
        db.dispose()
    # the cases cover both paths and both outcomes, and hosts were rejected for many reasons
    assert light > 50 and full > 10 and 10 < failures < light + full - 10


def test_prefilter_passes_exactly_full_hosts_through_the_filters(tmp_path, backend):
    """A host with exactly the requested room left, or a heartbeat at the edge of service_down_time, is left to
    the Python filters by the SQL prefilter and still chosen; a host one unit short is rejected with its reason."""
    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path))
    nodes = _db.table("compute_nodes")
    try:
        with db.tx() as conn:
            conn.execute(nodes.insert(), [
                dict(id=str(uuid.uuid4()), hostname=name, vcpus=2, memory_mb=memory, local_gb=10,
                     reserved_host_memory_mb=512, cpu_allocation_ratio=1.0, ram_allocation_ratio=ratio,
                     disk_allocation_ratio=1.0, disabled=False, generation=0,
                     updated_at=NOW - datetime.timedelta(seconds=age), availability_zone="nova", failed_builds=0)
                for name, memory, ratio, age in (("exact", 1536, 1.0, 0), ("short", 1535, 1.0, 0),
                                                 ("nearly", 2000, 0.688, 0), ("edge", 4096, 1.0, 60),
                                                 ("late", 4096, 1.0, 60.5))])
        spec = _scheduler.RequestSpec(vcpus=1, memory_mb=1024, root_gb=1)
        cfg = _scheduler.SchedulerConfig(service_down_time=60)
        with db.tx() as conn:
            sel = _placement.select_local(conn, spec, cfg, now=NOW_EPOCH, rng=random.Random(1))
            assert [h[0] for h in sel.hosts] == ["edge", "exact"]
            assert sel.rejected == {"late": "ComputeFilter: down (last update 60.5s ago, service_down_time 60s)",
                                    "nearly": "CapacityFilter: RAM: requested 1024 MB, free 1023.74 MB",
                                    "short": "CapacityFilter: RAM: requested 1024 MB, free 1023 MB"}
            assert sel.hosts == _reference(conn, spec, cfg, None, 1).hosts
    finally:
        db.dispose()


def test_revision_0010_indexes_allocations_by_node(tmp_path, backend, migrate):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path))
    try:
        assert db.schema_revision() == _db.SCHEMA_HEAD and int(_db.SCHEMA_HEAD) >= 10

        def indexed(conn):
            return any(ix["column_names"] == ["compute_node_id"] for ix in sa.inspect(conn).get_indexes("allocations"))

        with db.engine.connect() as conn:
            assert indexed(conn)
            assert compare_metadata(MigrationContext.configure(conn), _db.METADATA) == []
            migrate(db, conn, "0009", down=True)
        with db.engine.connect() as conn:
            assert not indexed(conn)
        assert db.upgrade() is True
        with db.engine.connect() as conn:
            assert indexed(conn)
    finally:
        db.dispose()
