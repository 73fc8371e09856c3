# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): one scheduling decision, the code of a base commit against this checkout, in one
process, interleaved rounds, asserting identical results every round.

One decision is what ``bootflow.cloud.schedule`` does with the local backend: load the host states and select
(filters + weighers), then claim the chosen host (CAS on the provider generation + the allocation row,
committed). The old side is the base commit's ``scheduler.py`` and ``placement.py`` (``git show BASE:...``,
imported under other names), run on a database with the base commit's indexes (no index on
``allocations.compute_node_id``); the new side is this checkout's ``placement.select_local`` and ``claim`` on
the same rows with this checkout's schema. Both get the same ``now``, the same consumer id and the same
request; every round asserts the same chosen host, alternates, weights and rejections, and both claim the same
host, so the two databases stay alike. Sizes 100, 1,000 and 10,000 compute nodes (two allocations each), on
SQLite and on a private PostgreSQL server (bench/pgserver.py). Medians per side, the ratio new/old, the load
average of the machine.

Peak RSS: for the largest size, a child process per side opens the database, prints its RSS after the imports
and the connection, resets its peak (/proc/self/clear_refs) and prints its peak RSS (VmHWM) over 3 decisions
(load + select) - the controller's peak during a decision of that size.

    .venv/bin/python bench/bench_scheduler_ab.py [--base main] [--nodes 100,1000,10000] [--rounds 15]
        [--backends sqlite,postgresql] [--request plain|zone|group]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import bench_scheduler  # noqa: E402  # bench/bench_scheduler.py (puts the collection on sys.path)

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db  # noqa: E402
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement  # noqa: E402
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler  # noqa: E402

PKG = "ansible_collections.bootflow.cloud.plugins.plugin_utils.compute."
INDEX = "ix_allocations_compute_node_id"


def load_old(base):
    """The base commit's scheduler and placement modules, the old placement bound to the old scheduler."""
    mods = {}
    for name in ("scheduler", "placement"):
        source = subprocess.run(["git", "-C", REPO, "show", "%s:plugins/plugin_utils/compute/%s.py" % (base, name)],
                                check=True, capture_output=True, text=True).stdout
        if name == "placement":
            source = source.replace("from %simport scheduler as _scheduler" % PKG.replace("compute.", "compute "),
                                    "_scheduler = _OLD_SCHEDULER")
        module = types.ModuleType("old_" + name)
        module.__dict__["_OLD_SCHEDULER"] = mods.get("scheduler")
        sys.modules[module.__name__] = module      # dataclasses look their module up
        exec(compile(source, "%s:%s.py" % (base, name), "exec"), module.__dict__)  # pylint: disable=exec-used
        mods[name] = module
    assert mods["placement"]._scheduler is mods["scheduler"]  # pylint: disable=protected-access
    return mods["scheduler"], mods["placement"]


def request(kind, mod):
    """The request of every decision (built with ``mod``, old or new scheduler) and the scheduler config."""
    kw = {"vcpus": 1, "memory_mb": 128, "root_gb": 1}
    if kind == "zone":
        kw.update(availability_zone="nova", flavor_extra_specs={"trait:CUSTOM_NONE": "forbidden"})
    elif kind == "group":
        kw.update(group_policy="soft-anti-affinity", group_hosts=["node00001", "node00002"])
    return mod.RequestSpec(**kw), mod.SchedulerConfig(service_down_time=10 ** 9)


def old_decision(db, old_sched, old_place, spec, cfg, now, consumer):
    t0 = time.perf_counter()
    with db.tx() as conn:
        sel = old_sched.select_hosts(old_place.host_states(conn), spec, cfg, now=now)
    t1 = time.perf_counter()
    host, _alternates, _tried = old_place.claim(db, consumer, spec, [h[0] for h in sel.hosts])
    return t1 - t0, time.perf_counter() - t1, sel, host


def new_decision(db, spec, cfg, now, consumer):
    t0 = time.perf_counter()
    with db.tx() as conn:
        sel = _placement.select_local(conn, spec, cfg, now=now)
    t1 = time.perf_counter()
    host, _alternates, _tried = _placement.claim(db, consumer, spec, [h[0] for h in sel.hosts])
    return t1 - t0, time.perf_counter() - t1, sel, host


def same(old, new):
    assert old[2].hosts == new[2].hosts, (old[2].hosts, new[2].hosts)
    assert old[2].rejected == new[2].rejected and list(old[2].rejected) == list(new[2].rejected)
    assert old[3] == new[3], (old[3], new[3])


def twin_dbs(backend, n, tmp, server, tag=""):
    """Two databases with the same rows: (old one without the node index, new one at this checkout's head)."""
    if backend == "sqlite":
        new_url = "sqlite:///%s" % os.path.join(tmp, "new%s-%d.db" % (tag, n))
        old_url = "sqlite:///%s" % os.path.join(tmp, "old%s-%d.db" % (tag, n))
    else:
        new_url, old_url = server.create_database("new%s_%d" % (tag, n)), server.create_database("old%s_%d" % (tag, n))
    new = _db.open_db(new_url)
    bench_scheduler.populate(new, n)
    if backend == "sqlite":
        new.dispose()
        shutil.copy(new_url[len("sqlite:///"):], old_url[len("sqlite:///"):])
        new = _db.open_db(new_url)
    old = _db.open_db(old_url)
    if backend != "sqlite":
        with new.tx() as src, old.tx() as dst:
            for name in ("compute_nodes", "allocations"):
                rows = [_db.row_dict(r) for r in src.execute(_db.table(name).select())]
                for start in range(0, len(rows), 2000):
                    dst.execute(_db.table(name).insert(), rows[start:start + 2000])
    with old.tx() as conn:
        conn.execute(_db.sa.text("DROP INDEX %s" % INDEX))
    for db in (old, new):
        if db.is_postgresql:
            with db.engine.connect() as conn:
                conn.execute(_db.sa.text("COMMIT"))
                conn.execute(_db.sa.text("ANALYZE"))
    return old, new


def run(backend, sizes, rounds, kind, tmp, server, old_sched, old_place):
    rows = []
    for n in sizes:
        old_db, new_db = twin_dbs(backend, n, tmp, server)
        samples = {"old": [], "new": []}
        try:
            old_spec, old_cfg = request(kind, old_sched)
            new_spec, new_cfg = request(kind, _scheduler)
            for index in range(rounds + 1):            # round 0 warms both up (connections, statement caches)
                now, consumer = time.time(), str(uuid.uuid4())
                if index % 2:
                    old = old_decision(old_db, old_sched, old_place, old_spec, old_cfg, now, consumer)
                    new = new_decision(new_db, new_spec, new_cfg, now, consumer)
                else:
                    new = new_decision(new_db, new_spec, new_cfg, now, consumer)
                    old = old_decision(old_db, old_sched, old_place, old_spec, old_cfg, now, consumer)
                same(old, new)
                if index:
                    samples["old"].append(old[:2])
                    samples["new"].append(new[:2])
        finally:
            old_db.dispose()
            new_db.dispose()
        row = {"backend": backend, "nodes": n, "load": os.getloadavg()}
        for side, got in samples.items():
            row[side] = (statistics.median(s[0] for s in got) * 1000, statistics.median(s[1] for s in got) * 1000,
                         statistics.median(s[0] + s[1] for s in got) * 1000)
        rows.append(row)
        summary = (backend, n, row["old"][2], row["new"][2], row["load"][0])
        print("  %s %d: old %.1f ms, new %.1f ms (load %.2f)" % summary, flush=True)
    return rows


def _status_mib(field):
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_child(url, side, base, kind):
    """Child process: its RSS (MiB) after imports + connect, and its peak RSS during 3 decisions (load + select)
    on ``url`` (the peak is reset first: the imports' own peak would hide the decision's)."""
    old_sched, old_place = load_old(base) if side == "old" else (None, None)
    db = _db.open_db(url, migrate=False)
    with db.tx() as conn:
        conn.execute(_db.sa.text("SELECT 1"))
    with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")           # resets the peak (VmHWM) to the current RSS
    before = _status_mib("VmRSS")
    for _decision in range(3):
        with db.tx() as conn:
            if side == "old":
                spec, cfg = request(kind, old_sched)
                old_sched.select_hosts(old_place.host_states(conn), spec, cfg)
            else:
                spec, cfg = request(kind, _scheduler)
                _placement.select_local(conn, spec, cfg)
    db.dispose()
    print("%.1f %.1f" % (before, _status_mib("VmHWM")))


def rss(backend, n, tmp, server, base, kind):
    old_db, new_db = twin_dbs(backend, n, tmp, server, tag="rss")
    urls = {"old": str(old_db.engine.url.render_as_string(hide_password=False)),
            "new": str(new_db.engine.url.render_as_string(hide_password=False))}
    old_db.dispose()
    new_db.dispose()
    out = {}
    for side in ("old", "new"):
        res = subprocess.run([sys.executable, __file__, "--rss-child", urls[side], "--rss-side", side, "--base", base,
                              "--request", kind], check=True, capture_output=True, text=True)
        out[side] = [float(x) for x in res.stdout.split()]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--base", default="main", help="the commit whose scheduler is the old side")
    parser.add_argument("--nodes", default="100,1000,10000", help="comma-separated compute node counts")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per size (medians reported)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite and/or postgresql")
    parser.add_argument("--request", default="plain", choices=("plain", "zone", "group"),
                        help="plain; zone (a zone and a forbidden trait); group (soft-anti-affinity)")
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    parser.add_argument("--rss-side", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.rss_side, args.base, args.request)
        return 0
    sizes = [int(x) for x in args.nodes.split(",")]
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    old_sched, old_place = load_old(args.base)
    base_commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", args.base], check=True,
                                 capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    print("bench_scheduler_ab: old = %s (%s), new = this checkout (HEAD %s); request %s; %d interleaved rounds"
          % (args.base, base_commit, head, args.request, args.rounds))
    print("machine: %s, %d CPUs, Python %s, SQLAlchemy %s; %s" % (
        platform.platform(), os.cpu_count() or 0, platform.python_version(), _db.sa.__version__,
        time.strftime("%Y-%m-%d %H:%M %Z")))
    results, peaks = [], {}
    with tempfile.TemporaryDirectory(prefix="bootflow-bench-ab-") as tmp:
        server = None
        try:
            if "postgresql" in backends:
                import pgserver  # bench/pgserver.py  # pylint: disable=import-outside-toplevel
                server = pgserver.PgServer(fast=False).start()
            for backend in backends:
                results += run(backend, sizes, args.rounds, args.request, tmp, server, old_sched, old_place)
                peaks[backend] = rss(backend, max(sizes), tmp, server, args.base, args.request)
        finally:
            if server is not None:
                server.stop()
    print()
    print("| backend | nodes | old select ms | new select ms | old claim ms | new claim ms | old decision ms "
          "| new decision ms | new/old | load avg |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in results:
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | **%.1f** | %.2f | %s |" % (
            r["backend"], r["nodes"], r["old"][0], r["new"][0], r["old"][1], r["new"][1], r["old"][2], r["new"][2],
            r["new"][2] / r["old"][2], " ".join("%.2f" % x for x in r["load"])))
    print()
    print("(select = load + filters + weighers; every round asserted the same host, alternates, weights, "
          "rejections and claimed host)")
    print()
    print("| backend | nodes | old RSS MiB (before -> peak during decisions) | new RSS MiB (before -> peak) |")
    print("|---|---:|---|---|")
    for backend, peak in peaks.items():
        print("| %s | %d | %.1f -> %.1f | %.1f -> %.1f |" % (backend, max(sizes), *peak["old"], *peak["new"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
