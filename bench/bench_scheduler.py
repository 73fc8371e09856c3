# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the time of one scheduling decision against the number of compute nodes.

One decision is what ``bootflow.cloud.schedule`` does for a boot: load the host states (compute
nodes + usage aggregated from allocations), ``select_hosts`` (filters + weighers) and the claim
(CAS on the provider generation + the allocation row, committed). It is measured for 100, 1,000
and 10,000 compute nodes in the DB (two allocations per node already present), on SQLite and,
when the PostgreSQL server binaries are installed, on a private PostgreSQL server this script
starts and stops (bench/pgserver.py). Ratios are against the 100-node run of the same backend in
the same process.

    .venv/bin/python bench/bench_scheduler.py [--nodes 100,1000,10000] [--repeat 15] [--backends sqlite,postgresql]

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

from ansible_collections.bootflow.cloud.plugins.module_utils import _scheduler  # noqa: E402
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db, _placement  # noqa: E402

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--nodes", default="100,1000,10000", help="comma-separated compute node counts")
    parser.add_argument("--repeat", type=int, default=15, help="decisions measured per size (median reported)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite and/or postgresql")
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
    print()
    print("| backend | nodes | load ms | select ms | claim ms | decision ms | ratio vs 100 | DB fill s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1fx | %.1f |" % (
            r["backend"], r["nodes"], r["load_ms"], r["select_ms"], r["claim_ms"], r["total_ms"], r["ratio"], r["fill_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
