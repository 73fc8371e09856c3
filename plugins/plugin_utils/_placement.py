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
                values["generation"] = row.generation + 1  # inventory changed: claims must re-check
            conn.execute(nodes.update().where(nodes.c.id == row.id).values(**values))
        return changed, _db.row_dict(conn.execute(nodes.select().where(nodes.c.id == row.id)).first())


def _usage(conn):
    alloc = _db.table("allocations")
    rows = conn.execute(sa.select(
        alloc.c.compute_node_id, sa.func.sum(alloc.c.vcpus), sa.func.sum(alloc.c.memory_mb),
        sa.func.sum(alloc.c.disk_gb), sa.func.count()).group_by(alloc.c.compute_node_id))
    return {r[0]: (r[1] or 0, r[2] or 0, r[3] or 0, r[4] or 0) for r in rows}


def host_states(conn):
    nodes = _db.table("compute_nodes")
    usage = _usage(conn)
    out = []
    for n in conn.execute(nodes.select().order_by(nodes.c.hostname)):
        used = usage.get(n.id, (0, 0, 0, 0))
        out.append(_scheduler.HostState(
            name=n.hostname, vcpus=n.vcpus, memory_mb=n.memory_mb, local_gb=n.local_gb,
            vcpus_used=used[0], memory_mb_used=used[1], local_gb_used=used[2], num_instances=used[3],
            reserved_host_memory_mb=n.reserved_host_memory_mb, cpu_allocation_ratio=n.cpu_allocation_ratio,
            ram_allocation_ratio=n.ram_allocation_ratio, disk_allocation_ratio=n.disk_allocation_ratio,
            disabled=n.disabled, updated_at=_db.epoch(n.updated_at), arch=n.arch,
            hypervisor_type=n.hypervisor_type, hypervisor_version=n.hypervisor_version, generation=n.generation))
    return out


def existing_allocation(conn, consumer_id):
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    return conn.execute(sa.select(alloc, nodes.c.hostname).join(nodes, nodes.c.id == alloc.c.compute_node_id)
                        .where(alloc.c.consumer_id == consumer_id)).first()


def _try_claim(db, consumer_id, hostname, spec):
    """One CAS claim attempt on a host. Returns None on success or the reason it failed."""
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    with db.tx() as conn:
        node = conn.execute(nodes.select().where(nodes.c.hostname == hostname)).first()
        if node is None:
            return "host vanished"
        state = next(h for h in host_states(conn) if h.name == hostname)
        ok, reason = _scheduler.fits(state, spec)
        if not ok:
            return reason
        res = conn.execute(nodes.update().where(nodes.c.id == node.id, nodes.c.generation == node.generation)
                           .values(generation=node.generation + 1))
        if res.rowcount != 1:
            raise Conflict("resource provider generation conflict on %s" % hostname)
        conn.execute(alloc.insert().values(id=_db.new_id(), consumer_id=consumer_id, compute_node_id=node.id,
                                           vcpus=spec.vcpus, memory_mb=spec.memory_mb, disk_gb=spec.root_gb,
                                           created_at=_db.now()))
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
