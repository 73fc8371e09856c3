# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resource tracker records and the scheduler's atomic claim (local Placement backend).

PRIVATE to the collection: may change at any time. Controller side only.

A claim is Placement's: inside one transaction, re-read the provider's usage, check
``(total - reserved) * ratio - used`` and bump the provider ``generation`` with
``UPDATE ... WHERE generation = :seen``. If another claim got there first the update matches no
row, and we retry (like report.py's ``@retries`` on ``placement.concurrent_update``).
"""

from __future__ import annotations

import random
import time


from ansible_collections.bootflow.cloud.plugins.module_utils import _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils._db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import Conflict, NoValidHostError

CLAIM_RETRIES = 4


def upsert_compute_node(db, hostname, report, overrides, check_mode):
    """Store what a host reported (plus configured reservations/ratios). Returns (changed, row dict)."""
    nodes = _db.table("compute_nodes")
    want = {
        "vcpus": int(report["vcpus"]), "memory_mb": int(report["memory_mb"]), "local_gb": int(report["local_gb"]),
        "arch": report.get("arch"), "hypervisor_type": report.get("hypervisor_type"),
        "hypervisor_version": report.get("hypervisor_version"), "virt_type": report.get("virt_type"),
    }
    want.update({k: v for k, v in overrides.items() if v is not None})
    with db.tx() as conn:
        row = conn.execute(nodes.select().where(nodes.c.hostname == hostname)).first()
        if row is None:
            if not check_mode:
                conn.execute(nodes.insert().values(id=_db.new_id(), hostname=hostname, generation=0,
                                                   updated_at=_db.now(), **want))
            return True, dict(want, hostname=hostname)
        have = {k: getattr(row, k) for k in want}
        changed = have != want
        if not check_mode:
            values = dict(want, updated_at=_db.now())
            if changed:
                # inventory changed: claims in flight must re-check. An expression, not row.generation + 1:
                # under PostgreSQL's READ COMMITTED a claim may have bumped it since our read.
                values["generation"] = nodes.c.generation + 1
            conn.execute(nodes.update().where(nodes.c.id == row.id).values(**values))
        return changed, _db.row_dict(conn.execute(nodes.select().where(nodes.c.id == row.id)).first())


def _usage_query(node_id=None):
    """Usage per provider: (compute_node_id, vcpus, memory_mb, disk_gb, allocations)."""
    alloc = _db.table("allocations")
    query = sa.select(alloc.c.compute_node_id, sa.func.sum(alloc.c.vcpus).label("vcpus_used"),
                      sa.func.sum(alloc.c.memory_mb).label("memory_mb_used"),
                      sa.func.sum(alloc.c.disk_gb).label("local_gb_used"),
                      sa.func.count().label("num_instances"))
    if node_id is not None:
        query = query.where(alloc.c.compute_node_id == node_id)
    return query.group_by(alloc.c.compute_node_id)


_NODE_COLUMNS = ("hostname", "vcpus", "memory_mb", "local_gb", "reserved_host_memory_mb", "cpu_allocation_ratio",
                 "ram_allocation_ratio", "disk_allocation_ratio", "disabled", "updated_at", "arch", "hypervisor_type",
                 "hypervisor_version", "generation")


def _states(conn, node_id=None):
    """HostStates from ONE query: the nodes outer-joined to their aggregated usage.

    Rows are read by position (SQLAlchemy Row attribute access costs more than the rest of the loop at
    10,000 nodes); see docs/benchmarks.md.
    """
    nodes = _db.table("compute_nodes")
    usage = _usage_query(node_id).subquery()
    query = (sa.select(*[nodes.c[c] for c in _NODE_COLUMNS], usage.c.vcpus_used, usage.c.memory_mb_used,
                       usage.c.local_gb_used, usage.c.num_instances)
             .select_from(nodes.outerjoin(usage, usage.c.compute_node_id == nodes.c.id)))
    query = query.order_by(nodes.c.hostname) if node_id is None else query.where(nodes.c.id == node_id)
    host_state, epoch = _scheduler.HostState, _db.epoch
    out = []
    for (name, vcpus, memory_mb, local_gb, reserved_mb, cpu_ratio, ram_ratio, disk_ratio, disabled, updated_at, arch,
         hv_type, hv_version, generation, vcpus_used, mem_used, disk_used, count) in conn.execute(query).fetchall():
        out.append(host_state(
            name=name, vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb,
            vcpus_used=vcpus_used or 0, memory_mb_used=mem_used or 0, local_gb_used=disk_used or 0,
            num_instances=count or 0, reserved_host_memory_mb=reserved_mb, cpu_allocation_ratio=cpu_ratio,
            ram_allocation_ratio=ram_ratio, disk_allocation_ratio=disk_ratio, disabled=bool(disabled),
            updated_at=epoch(updated_at), arch=arch, hypervisor_type=hv_type, hypervisor_version=hv_version,
            generation=generation))
    return out


def host_states(conn):
    """Every compute node as the scheduler sees it (inventory + usage), ordered by hostname."""
    return _states(conn)


def existing_allocation(conn, consumer_id):
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    return conn.execute(sa.select(alloc, nodes.c.hostname).join(nodes, nodes.c.id == alloc.c.compute_node_id)
                        .where(alloc.c.consumer_id == consumer_id)).first()


# PostgreSQL errors that mean "lost a race, try again": serialization_failure, deadlock_detected,
# lock_not_available (lock_timeout). Under READ COMMITTED the CAS normally just matches no row.
_RETRYABLE_PGCODES = frozenset(("40001", "40P01", "55P03"))


def _retryable(exc):
    return getattr(getattr(exc, "orig", None), "pgcode", None) in _RETRYABLE_PGCODES


class _Claimed(Exception):
    """The consumer already holds an allocation (a concurrent run of the same boot won)."""

    def __init__(self, hostname):
        super().__init__(hostname)
        self.hostname = hostname


def _try_claim(db, consumer_id, hostname, spec):
    """One CAS claim attempt on a host. Returns None on success or the reason it failed.

    Placement's order: read the provider (its generation) and its usage, check the request fits,
    then ``UPDATE ... SET generation = seen + 1 WHERE generation = seen``. Any claim, release or
    inventory change of that provider since our read bumped the generation, so the UPDATE matches
    no row and we retry with fresh numbers (Conflict). Only this provider's usage is aggregated.
    """
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    try:
        with db.tx() as conn:
            node_id = conn.execute(sa.select(nodes.c.id).where(nodes.c.hostname == hostname)).scalar()
            if node_id is None:
                return "host vanished"
            held = existing_allocation(conn, consumer_id)
            if held is not None:
                raise _Claimed(held.hostname)
            # generation and usage from one statement, i.e. one snapshot even under READ COMMITTED
            state = _states(conn, node_id)[0]
            ok, reason = _scheduler.fits(state, spec)
            if not ok:
                return reason
            res = conn.execute(nodes.update().where(nodes.c.id == node_id, nodes.c.generation == state.generation)
                               .values(generation=state.generation + 1))
            if res.rowcount != 1:
                raise Conflict("resource provider generation conflict on %s" % hostname)
            conn.execute(alloc.insert().values(id=_db.new_id(), consumer_id=consumer_id, compute_node_id=node_id,
                                               vcpus=spec.vcpus, memory_mb=spec.memory_mb, disk_gb=spec.root_gb,
                                               created_at=_db.now()))
    except sa.exc.IntegrityError as exc:
        # unique consumer_id: the same instance was claimed concurrently (rolled back here)
        with db.tx() as conn:
            held = existing_allocation(conn, consumer_id)
        if held is None:
            raise
        raise _Claimed(held.hostname) from exc
    except sa.exc.DBAPIError as exc:
        if _retryable(exc):
            raise Conflict("concurrent update on %s: %s" % (hostname, exc.orig)) from exc
        raise
    return None


def claim(db, consumer_id, spec, hosts, cfg=None):
    """Walk the sorted hosts, claim the first that still fits. Returns (host, alternates, tried)."""
    tried = {}
    for idx, hostname in enumerate(hosts):
        for attempt in range(CLAIM_RETRIES):
            try:
                reason = _try_claim(db, consumer_id, hostname, spec)
                break
            except Conflict:
                time.sleep(random.uniform(0, (attempt + 1) * 0.05))
            except _Claimed as held:
                return held.hostname, [h for h in hosts if h != held.hostname], tried
        else:
            reason = "concurrent updates kept winning"
        if reason is None:
            return hostname, hosts[idx + 1:], tried
        tried[hostname] = reason
    raise NoValidHostError("No valid host was found. Claims failed: %s"
                           % "; ".join("%s: %s" % kv for kv in tried.items()), claim_failures=tried)


def release(db, consumer_id, check_mode=False):
    """Delete the instance's allocation (bumping the provider generation). Returns the host or None."""
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    with db.tx() as conn:
        row = existing_allocation(conn, consumer_id)
        if row is None:
            return None
        if not check_mode:
            conn.execute(alloc.delete().where(alloc.c.consumer_id == consumer_id))
            conn.execute(nodes.update().where(nodes.c.id == row.compute_node_id)
                         .values(generation=nodes.c.generation + 1))
        return row.hostname
