# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the time of one scheduling decision against the number of compute nodes.

One decision is what ``bootflow.cloud.schedule`` does for a boot: load the host states (compute
nodes + usage aggregated from allocations), ``select_hosts`` (filters + weighers) and the claim
(``placement.select_local`` does load and select in one step where it exists: its time is in "load")
(CAS on the provider generation + the allocation row, committed). It is measured for 100, 1,000
and 10,000 compute nodes in the DB (two allocations per node already present), on SQLite and,
when the PostgreSQL server binaries are installed, on a private PostgreSQL server this script
starts and stops (bench/pgserver.py). Ratios are against the 100-node run of the same backend in
the same process.

With ``--backends ...,placement`` the same decision is timed with the placement backend: a real
Placement (tests/openstack/placement.sh, a fresh one per size, noauth2 on 127.0.0.1, stopped by
its pid) holds the N resource providers and their allocations, the DB (SQLite) their copies. One
decision is then host_states load + ``GET /allocation_candidates`` + select_hosts over the
candidates + the claim (``PUT /allocations`` + the DB copy). Its ratio is against the local SQLite
decision of the same size, measured in the same run. Filling Placement goes through its API, so
the placement sizes default to 100 and 1,000 (``--placement-nodes``).

    .venv/bin/python bench/bench_scheduler.py [--nodes 100,1000,10000] [--repeat 15]
        [--backends sqlite,postgresql,placement] [--placement-nodes 100,1000]

Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
COLLECTIONS = os.path.join(REPO, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "bootflow", "cloud")
if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.relpath(REPO, os.path.dirname(LINK)), LINK)
sys.path.insert(0, COLLECTIONS)
sys.path.insert(0, HERE)

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler  # noqa: E402
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db  # noqa: E402
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement

ALLOCS_PER_NODE = 2


def populate(db, n):
    """n compute nodes (4..64 GB, 8..64 vCPUs, reported just now) with ALLOCS_PER_NODE allocations each."""
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    now = _db.now()
    node_rows, alloc_rows = [], []
    for i in range(n):
        nid = str(uuid.uuid4())
        node_rows.append(dict(
            id=nid, hostname="node%05d" % i, vcpus=8 * (1 + i % 8), memory_mb=4096 * (1 + i % 16), local_gb=100 + i % 400,
            arch="x86_64", hypervisor_type="QEMU", hypervisor_version=7002000, virt_type="qemu",
            reserved_host_memory_mb=512, cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
            disabled=False, generation=ALLOCS_PER_NODE, updated_at=now))
        for _k in range(ALLOCS_PER_NODE):
            alloc_rows.append(dict(id=str(uuid.uuid4()), consumer_id=str(uuid.uuid4()), compute_node_id=nid,
                                   vcpus=1, memory_mb=512, disk_gb=10, created_at=now))
    with db.tx() as conn:
        for start in range(0, len(node_rows), 2000):
            conn.execute(nodes.insert(), node_rows[start:start + 2000])
        for start in range(0, len(alloc_rows), 2000):
            conn.execute(alloc.insert(), alloc_rows[start:start + 2000])
    if db.url.startswith("postgresql"):   # (not db.is_postgresql: the script also runs against older checkouts)
        with db.engine.connect() as conn:   # fresh statistics, as autovacuum would have them
            conn.execute(_db.sa.text("COMMIT"))
            conn.execute(_db.sa.text("ANALYZE"))


def one_decision(db, spec, cfg):
    """(load s, select s, claim s, chosen host) of one scheduling decision."""
    t0 = time.perf_counter()
    if hasattr(_placement, "select_local"):   # the database prefilters: load and select are one step
        with db.tx() as conn:
            selection = _placement.select_local(conn, spec, cfg)
        t1 = t2 = time.perf_counter()
    else:   # (older checkouts)
        with db.tx() as conn:
            states = _placement.host_states(conn)
        t1 = time.perf_counter()
        selection = _scheduler.select_hosts(states, spec, cfg)
        t2 = time.perf_counter()
    host, _alternates, _tried = _placement.claim(db, str(uuid.uuid4()), spec, [h[0] for h in selection.hosts])
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, host


def run_backend(name, sizes, repeat, make_url):
    rows = []
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)
    cfg = _scheduler.SchedulerConfig(service_down_time=10 ** 9)
    for n in sizes:
        db = _db.open_db(make_url(n))
        try:
            t0 = time.perf_counter()
            populate(db, n)
            fill = time.perf_counter() - t0
            one_decision(db, spec, cfg)          # warm-up (connection, statement caches)
            samples = [one_decision(db, spec, cfg) for _sample in range(repeat)]
        finally:
            db.dispose()
        med = [statistics.median(s[k] for s in samples) * 1000 for k in range(3)]
        total = statistics.median(sum(s[:3]) for s in samples) * 1000
        rows.append({"backend": name, "nodes": n, "load_ms": med[0], "select_ms": med[1], "claim_ms": med[2],
                     "total_ms": total, "fill_s": fill})
    base = rows[0]["total_ms"]
    for row in rows:
        row["ratio"] = row["total_ms"] / base
    return rows


# --- the placement backend ----------------------------------------------------------------------

PROJECT, USER = str(uuid.uuid4()), str(uuid.uuid4())


def populate_placement(db, client):
    """Every compute node of the DB as a resource provider (inventory, zone aggregate) and every DB
    allocation as Placement's (batched POST /allocations); the DB rows become placement copies."""
    with db.tx() as conn:
        nodes = [_db.row_dict(r) for r in conn.execute(_db.table("compute_nodes").select())]
        allocs = conn.execute(_db.table("allocations").select()).fetchall()
    for node in nodes:
        client.request("POST", "/resource_providers", {"name": node["hostname"], "uuid": node["id"]})
        client.request("PUT", "/resource_providers/%s/inventories" % node["id"],
                       {"resource_provider_generation": 0, "inventories": _placement.inventories(node)})
        client.request("PUT", "/resource_providers/%s/aggregates" % node["id"],
                       {"resource_provider_generation": 1, "aggregates": _placement.provider_aggregates(node)})
    for start in range(0, len(allocs), 500):
        body = {a.consumer_id: {"allocations": {a.compute_node_id: {"resources": {
            "VCPU": a.vcpus, "MEMORY_MB": a.memory_mb, "DISK_GB": a.disk_gb}}}, "project_id": PROJECT, "user_id": USER,
            "consumer_generation": None, "consumer_type": "INSTANCE"} for a in allocs[start:start + 500]}
        client.request("POST", "/allocations", body, expect=(204,))
    with db.tx() as conn:
        conn.execute(_db.table("allocations").update().values(backend="placement"))


def one_placement_decision(db, client, spec, cfg):
    """(load s, candidates s, select s, claim s, chosen host) of one decision with the placement backend."""
    t0 = time.perf_counter()
    with db.tx() as conn:
        states = _placement.host_states(conn)
    t1 = time.perf_counter()
    candidates = client.allocation_candidates(spec)
    t2 = time.perf_counter()
    kept, _rejected = _placement.apply_candidates(states, candidates, spec, cfg)
    selection = _scheduler.select_hosts(kept, spec, cfg)
    t3 = time.perf_counter()
    host, _alternates, _tried = _placement.claim(db, str(uuid.uuid4()), spec, [h[0] for h in selection.hosts],
                                                 placement=client, project_id=PROJECT, user_id=USER)
    t4 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, t4 - t3, host


def run_placement(sizes, repeat, tmp, local_rows):
    sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
    import placement_server  # tests/openstack/placement_server.py  # pylint: disable=import-outside-toplevel

    rows = []
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)
    cfg = _scheduler.SchedulerConfig(service_down_time=10 ** 9)
    local = {r["nodes"]: r["total_ms"] for r in local_rows if r["backend"] == "sqlite"}
    for n in sizes:
        server = placement_server.PlacementServer(os.path.join(tmp, "placement-%d" % n)).start()
        db = _db.open_db("sqlite:///%s" % os.path.join(tmp, "bench-placement-%d.db" % n))
        try:
            client = _placement.connect(server.url)
            t0 = time.perf_counter()
            populate(db, n)
            populate_placement(db, client)
            fill = time.perf_counter() - t0
            one_placement_decision(db, client, spec, cfg)          # warm-up
            samples = [one_placement_decision(db, client, spec, cfg) for _sample in range(repeat)]
        finally:
            db.dispose()
            server.stop()
        med = [statistics.median(s[k] for s in samples) * 1000 for k in range(4)]
        total = statistics.median(sum(s[:4]) for s in samples) * 1000
        rows.append({"backend": "placement", "nodes": n, "load_ms": med[0], "candidates_ms": med[1], "select_ms": med[2],
                     "claim_ms": med[3], "total_ms": total, "fill_s": fill,
                     "vs_local": total / local[n] if n in local else None})
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nodes", default="100,1000,10000", help="comma-separated compute node counts")
    parser.add_argument("--repeat", type=int, default=15, help="decisions measured per size (median reported)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite, postgresql and/or placement")
    parser.add_argument("--placement-nodes", default="100,1000", help="compute node counts for the placement backend")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.nodes.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]

    print("bench_scheduler: one decision = host_states load + select_hosts + claim (median of %d)" % args.repeat)
    print("machine: %s, %d CPUs, Python %s, SQLAlchemy %s; %s" % (
        platform.platform(), os.cpu_count() or 0, platform.python_version(), _db.sa.__version__,
        time.strftime("%Y-%m-%d %H:%M %Z")))
    results = []
    with tempfile.TemporaryDirectory(prefix="bootflow-bench-") as tmp:
        if "sqlite" in backends:
            results += run_backend("sqlite", sizes, args.repeat,
                                   lambda n: "sqlite:///%s" % os.path.join(tmp, "bench-%d.db" % n))
        if "postgresql" in backends:
            import pgserver  # bench/pgserver.py  # pylint: disable=import-outside-toplevel
            if pgserver.find_bindir() is None:
                print("postgresql: server binaries not installed (apt-get install postgresql), skipped")
            else:
                server = pgserver.PgServer(fast=False).start()
                try:
                    results += run_backend("postgresql", sizes, args.repeat,
                                           lambda n: server.create_database("bench_%d" % n))
                finally:
                    server.stop()
        placement_rows = []
        if "placement" in backends:
            placement_sizes = [int(x) for x in args.placement_nodes.split(",")]
            if "sqlite" not in backends:   # the baseline: the local decision of the same sizes
                results += run_backend("sqlite", placement_sizes, args.repeat,
                                       lambda n: "sqlite:///%s" % os.path.join(tmp, "bench-%d.db" % n))
            placement_rows = run_placement(placement_sizes, args.repeat, tmp, results)
    print()
    print("| backend | nodes | load ms | select ms | claim ms | decision ms | ratio vs 100 | DB fill s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1fx | %.1f |" % (
            r["backend"], r["nodes"], r["load_ms"], r["select_ms"], r["claim_ms"], r["total_ms"], r["ratio"], r["fill_s"]))
    if placement_rows:
        print()
        print("| backend | nodes | load ms | candidates ms | select ms | claim ms | decision ms | vs local SQLite | fill s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in placement_rows:
            print("| placement | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %s | %.1f |" % (
                r["nodes"], r["load_ms"], r["candidates_ms"], r["select_ms"], r["claim_ms"], r["total_ms"],
                "%.1fx" % r["vs_local"] if r["vs_local"] else "-", r["fill_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
