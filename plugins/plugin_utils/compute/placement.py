# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resource tracker records, host states and the scheduler's atomic claim, with two backends.

PRIVATE to the collection: may change at any time. Controller side only.

``local`` (default): the claim is Placement's algorithm on the bootflow database. Inside one
transaction, re-read the provider's usage, check ``(total - reserved) * ratio - used`` and bump the
provider ``generation`` with ``UPDATE ... WHERE generation = :seen``. If another claim got there
first the update matches no row, and we retry (like report.py's ``@retries`` on
``placement.concurrent_update``).

``placement``: a real OpenStack Placement (API microversion 1.39) holds the inventories and the
claims, as in Nova. Each compute node is a resource provider (its UUID is the compute node's id,
its name the host name) with VCPU/MEMORY_MB/DISK_GB inventories (reserved, allocation ratio), its
traits and aggregates (its availability zone is one more aggregate); ``sync_provider`` keeps them in
step with what ``compute_node`` reports. The scheduler asks ``GET /allocation_candidates`` for the
hosts with room (capacity pre-filter; their usage comes from Placement), runs its own filters and
weighers on those, and claims with ``PUT /allocations/{consumer}`` (``consumer_generation: null``
for a new consumer); a 409 ``placement.concurrent_update`` is retried, a 409 for capacity moves on
to the next host. Release is ``DELETE /allocations/{consumer}``. The bootflow database keeps a copy
of every allocation either way (``allocations.backend`` says which backend holds it): delete,
instance_info and reschedule read it.

Plain HTTP through ansible's ``open_url`` (urllib underneath): the forked action worker imports
nothing more. Auth: with the
local identity, Placement runs with ``auth_strategy = noauth2`` and gets the token ``admin`` (see
docs/scheduler.md); with Keystone, the caller's token when it has the admin or service role, else a
service token issued with the controller's credentials (E(BOOTFLOW_PLACEMENT_CLOUD) or openrc) by the
controller's Keystone. The controller's credentials go only to endpoints of the controller's
configuration or Keystone's catalog, never to a URL a task names (``connect``; a task's Keystone URL
other than the operator's is refused by ``StepContext`` before any token is validated).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import operator
import os
import random
import re
import socket
import time
import urllib.error
import urllib.parse
import uuid as uuidlib

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common import rules as _rules
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    BootflowError,
    Conflict,
    InvalidRequest,
    NoValidHostError,
    NotFound,
)

CLAIM_RETRIES = 4
BACKENDS = ("local", "placement")
DEFAULT_BACKEND = "local"
MICROVERSION = "1.39"
TIMEOUT = 30               # seconds per request to Placement
NOAUTH_TOKEN = "admin"     # auth_strategy = noauth2: this token is an admin
PLACEMENT_ROLES = ("admin", "service")   # Placement's default policy: admin_or_service_api
CONCURRENT_UPDATE = "placement.concurrent_update"
# aggregate UUIDs made from names (Placement aggregates are UUIDs; Nova uses the host aggregate's uuid)
AGGREGATE_NS = uuidlib.uuid5(uuidlib.NAMESPACE_URL, "https://bootflow.cloud/placement/aggregates")
RESOURCE_CLASSES = ("VCPU", "MEMORY_MB", "DISK_GB")


class PlacementError(BootflowError):
    """Placement unreachable, or an answer we cannot act on."""

    kind = "placement"


def resolve_backend(value=None):
    """``placement_backend`` option, else E(BOOTFLOW_PLACEMENT_BACKEND), else ``local``."""
    return settings.backend("placement_backend", value, "BOOTFLOW_PLACEMENT_BACKEND", BACKENDS, DEFAULT_BACKEND)


def aggregate_uuid(name):
    return str(uuidlib.uuid5(AGGREGATE_NS, "aggregate:" + name))


def zone_uuid(zone):
    return str(uuidlib.uuid5(AGGREGATE_NS, "availability_zone:" + zone))


# --- resource tracker records --------------------------------------------------------------------

def _names(values):
    return sorted(set(values or ()))


# What the operator configures for a compute node on the controller side (the role's variables), not
# read from the host: reservations, allocation ratios, capacity overrides, where the host sits.
NODE_SETTINGS = ("reserved_host_memory_mb", "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
                 "vcpus", "memory_mb", "local_gb", "disabled", "availability_zone", "aggregates", "traits")
_NODE_NAME_RE = re.compile(r"[^\x00-\x1f:,]{1,255}")


def node_settings(args):
    """The compute node settings of a compute_node task (typed and defaulted by its spec), checked
    before the host is contacted. Raises InvalidRequest."""
    out = {key: args.get(key) for key in NODE_SETTINGS}
    for key in ("reserved_host_memory_mb", "vcpus", "memory_mb", "local_gb"):
        if out[key] is not None and out[key] < 0:
            raise InvalidRequest("compute_node: %s must not be negative, got %s." % (key, out[key]))
    for key in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
        if out[key] is not None and not out[key] > 0:
            raise InvalidRequest("compute_node: %s must be greater than 0, got %s." % (key, out[key]))
    zone = out["availability_zone"]
    if not isinstance(zone, str) or not _NODE_NAME_RE.fullmatch(zone) or zone != zone.strip() \
            or _rules.forbidden_char(zone):
        raise InvalidRequest("availability_zone must be 1-255 characters without ':' ',' or control characters and "
                             "without surrounding spaces, got %s." % (ascii(zone),))
    for key, pattern, what in (
            ("aggregates", _NODE_NAME_RE, "names of 1-255 characters without ':' ',' or control characters"),
            ("traits", _scheduler.TRAIT_RE, "trait names (upper-case letters, digits and _, e.g. CUSTOM_SSD or "
                                            "HW_CPU_X86_AVX2)")):
        bad = [v for v in out[key] if not pattern.fullmatch(v) or v != v.strip() or _rules.forbidden_char(v)]
        if bad:
            raise InvalidRequest("%s must be %s; not: %s." % (key, what, ", ".join(ascii(b) for b in bad)))
        out[key] = sorted(set(out[key]))
    return out


def upsert_compute_node(db, hostname, report, overrides, check_mode):
    """Store what a host reported (plus configured reservations/ratios, zone, aggregates, traits).
    Returns (changed, row dict)."""
    nodes = _db.table("compute_nodes")
    want = {
        "vcpus": int(report["vcpus"]), "memory_mb": int(report["memory_mb"]), "local_gb": int(report["local_gb"]),
        "arch": report.get("arch"), "hypervisor_type": report.get("hypervisor_type"),
        "hypervisor_version": report.get("hypervisor_version"), "virt_type": report.get("virt_type"),
    }
    want.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("aggregates", "traits"):
        if key in want:
            want[key] = _names(want[key])
    with db.tx() as conn:
        row = conn.execute(nodes.select().where(nodes.c.hostname == hostname)).first()
        if row is None:
            if check_mode:
                return True, dict(want, hostname=hostname)
            node_id = _db.new_id()
            conn.execute(nodes.insert().values(id=node_id, hostname=hostname, generation=0, updated_at=_db.now(), **want))
            return True, _db.row_dict(conn.execute(nodes.select().where(nodes.c.id == node_id)).first())
        have = {k: getattr(row, k) for k in want}
        for key in ("aggregates", "traits"):
            if key in have:
                have[key] = _names(have[key])
        changed = have != want
        if not check_mode:
            values = dict(want, updated_at=_db.now())
            if changed:
                # inventory changed: claims in flight must re-check. An expression, not row.generation + 1:
                # under PostgreSQL's READ COMMITTED a claim may have bumped it since our read.
                values["generation"] = nodes.c.generation + 1
            conn.execute(nodes.update().where(nodes.c.id == row.id).values(**values))
        return changed, _db.row_dict(conn.execute(nodes.select().where(nodes.c.id == row.id)).first())


def _unregistered(hostname):
    return NotFound("%s is not a registered compute node: run playbooks/hypervisors.yml (compute_node without "
                    "heartbeat) first." % hostname)


def report_age(db, hostname):
    """Seconds since the host's last report or heartbeat; raises NotFound for an unregistered host."""
    nodes = _db.table("compute_nodes")
    with db.tx() as conn:
        row = conn.execute(sa.select(nodes.c.updated_at).where(nodes.c.hostname == hostname)).first()
    if row is None:
        raise _unregistered(hostname)
    return None if row.updated_at is None else time.time() - _db.epoch(row.updated_at)


def heartbeat(db, hostname, check_mode=False):
    """The compute service's heartbeat (Nova's service ``updated_at``): the host answered just now.
    Inventory, overrides and Placement are left alone. Raises NotFound for an unregistered host."""
    nodes = _db.table("compute_nodes")
    with db.tx() as conn:
        row = conn.execute(nodes.select().where(nodes.c.hostname == hostname)).first()
        if row is None:
            raise _unregistered(hostname)
        if not check_mode:
            seen(conn, hostname)
        return _db.row_dict(conn.execute(nodes.select().where(nodes.c.id == row.id)).first())


def seen(conn, hostname):
    """The host and its libvirt answered just now: its heartbeat (also after a successful domain step, as Nova's
    compute service keeps its record fresh while it works). Nothing for an unregistered host."""
    nodes = _db.table("compute_nodes")
    conn.execute(nodes.update().where(nodes.c.hostname == hostname).values(updated_at=_db.now()))


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


_NODE_COLUMNS = ("id", "hostname", "vcpus", "memory_mb", "local_gb", "reserved_host_memory_mb", "cpu_allocation_ratio",
                 "ram_allocation_ratio", "disk_allocation_ratio", "disabled", "updated_at", "arch", "hypervisor_type",
                 "hypervisor_version", "generation", "availability_zone", "aggregates", "traits", "failed_builds")


def _states(conn, node_id=None, names=None, where=None, usage=None):
    """HostStates from ONE query: the nodes outer-joined to their aggregated usage (of ``node_id``; of the nodes
    called ``names``, that match the condition ``where``, in host name order).

    Rows are read by position (SQLAlchemy Row attribute access costs more than the rest of the loop at
    10,000 nodes); see docs/benchmarks.md.
    """
    nodes = _db.table("compute_nodes")
    usage = _usage_query(node_id).subquery() if usage is None else usage
    # the JSON lists as text, parsed only when present (the JSON type's processor costs ~3 us a value at 10,000 nodes)
    columns = [sa.cast(nodes.c[c], sa.Text) if c in ("aggregates", "traits") else nodes.c[c] for c in _NODE_COLUMNS]
    query = (sa.select(*columns, usage.c.vcpus_used, usage.c.memory_mb_used,
                       usage.c.local_gb_used, usage.c.num_instances)
             .select_from(nodes.outerjoin(usage, usage.c.compute_node_id == nodes.c.id)))
    query = query.order_by(nodes.c.hostname) if node_id is None else query.where(nodes.c.id == node_id)
    if names is not None:
        query = query.where(nodes.c.hostname.in_(list(names)))
    if where is not None:
        query = query.where(where)
    host_state, epoch, empty, loads = _scheduler.HostState, _db.epoch, frozenset(), json.loads
    out = []
    for (nid, name, vcpus, memory_mb, local_gb, reserved_mb, cpu_ratio, ram_ratio, disk_ratio, disabled, updated_at,
         arch, hv_type, hv_version, generation, zone, aggregates, traits, failed_builds,
         vcpus_used, mem_used, disk_used, count) in conn.execute(query).fetchall():
        out.append(host_state(
            name=name, vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb,
            vcpus_used=vcpus_used or 0, memory_mb_used=mem_used or 0, local_gb_used=disk_used or 0,
            num_instances=count or 0, reserved_host_memory_mb=reserved_mb, cpu_allocation_ratio=cpu_ratio,
            ram_allocation_ratio=ram_ratio, disk_allocation_ratio=disk_ratio, disabled=bool(disabled),
            updated_at=epoch(updated_at), arch=arch, hypervisor_type=hv_type, hypervisor_version=hv_version,
            generation=generation, availability_zone=zone or "nova",
            aggregates=frozenset(loads(aggregates) or ()) if aggregates else empty,
            traits=frozenset(loads(traits) or ()) if traits else empty, uuid=nid, failed_builds=failed_builds or 0))
    return out


def count_failed_build(db, hostname):
    """One more failed build on ``hostname`` (Nova's compute node stat ``failed_builds``)."""
    nodes = _db.table("compute_nodes")
    with db.tx() as conn:
        conn.execute(nodes.update().where(nodes.c.hostname == hostname)
                     .values(failed_builds=nodes.c.failed_builds + 1))


def reset_failed_builds(conn, hostname):
    """A build succeeded on ``hostname``: its failed builds are forgiven (Nova resets the stat then)."""
    nodes = _db.table("compute_nodes")
    conn.execute(nodes.update().where(nodes.c.hostname == hostname, nodes.c.failed_builds != 0)
                 .values(failed_builds=0))


def host_states(conn):
    """Every compute node as the scheduler sees it (inventory + usage), ordered by hostname."""
    return _states(conn)


# A host this close to a limit (a resource unit, a second of heartbeat age) is left to the filters in Python:
# the SQL prefilter only passes hosts that pass for sure, whatever the database's float rounding
_PREFILTER_MARGIN = 0.001
_PREFILTER_MARGIN_S = 1.0
# up to this many host names in an IN list; more: every host state is read and these picked out
_FEW = 500


def _free_terms(nodes, used):
    """(total, reserved, ratio, used) of VCPU, MEMORY_MB and DISK_GB as columns, ``used`` the three usage sums
    (HostState's defaults: no reserved VCPU or disk)."""
    return ((nodes.c.vcpus, 0, nodes.c.cpu_allocation_ratio, used[0]),
            (nodes.c.memory_mb, nodes.c.reserved_host_memory_mb, nodes.c.ram_allocation_ratio, used[1]),
            (nodes.c.local_gb, 0, nodes.c.disk_allocation_ratio, used[2]))


def _surely_passes(nodes, used, spec, cfg, now):
    """SQL condition (never NULL): the host passes AvailabilityZoneFilter, ComputeFilter and CapacityFilter."""
    conds = [nodes.c.disabled == sa.false(), nodes.c.updated_at.isnot(None)]
    window = cfg.service_down_time - _PREFILTER_MARGIN_S
    if window <= 0:
        return sa.false()
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
    for bound, compare in ((-window, operator.ge), (window, operator.le)):
        try:
            conds.append(compare(nodes.c.updated_at, stamp + datetime.timedelta(seconds=bound)))
        except OverflowError:
            pass   # beyond the calendar: every report is within the window on that side
    if spec.availability_zone:
        conds.append(nodes.c.availability_zone == spec.availability_zone)
    requested = _scheduler.requested_resources(spec)
    for rc, (total, reserved, ratio, used_sum) in zip(RESOURCE_CLASSES, _free_terms(nodes, used)):
        if rc in requested:
            amount = requested[rc]
            conds.append((total - reserved) * ratio - sa.func.coalesce(used_sum, 0) >= amount + _PREFILTER_MARGIN)
            conds.append(total >= amount)
    return sa.and_(*conds)


def select_local(conn, spec, cfg, hosts=None, now=None, rng=None):
    """``scheduler.select_hosts`` over the compute nodes of the database (``hosts``: only these names), with the
    same result, for a fraction of the cost at thousands of nodes: the database passes the hosts that surely
    pass the zone, enabled-and-up and capacity filters (as Placement's allocation candidates query does) and
    returns only what the weighers read of them; whole host states are built, and every filter run, only for
    the other hosts, which get their rejection reasons that way. A request whose filters need more of a host
    (a forced host, capabilities, image properties) takes select_hosts over every host.

    Raises scheduler.NoValidHost (no rejections: there are no compute nodes)."""
    now = time.time() if now is None else float(now)
    light = _scheduler.light_filters(spec, cfg)
    if light is None:
        states = _states(conn, names=hosts)
        if not states:
            raise _scheduler.NoValidHost({})
        return _scheduler.select_hosts(states, spec, cfg, now=now, rng=rng)
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    used = (sa.func.sum(alloc.c.vcpus), sa.func.sum(alloc.c.memory_mb), sa.func.sum(alloc.c.disk_gb))
    sure = _surely_passes(nodes, used, spec, cfg, now)
    with_sets = any(fname in ("AggregateFilter", "TraitsFilter") for fname, _func in light)
    # free amounts as scheduler.free() computes them, the same IEEE double operations in the same order
    columns = [nodes.c.hostname] + [(total - reserved) * ratio - sa.func.coalesce(used_sum, 0)
                                    for total, reserved, ratio, used_sum in _free_terms(nodes, used)]
    columns += [sa.func.count(alloc.c.id), sa.func.coalesce(nodes.c.failed_builds, 0)]
    if with_sets:
        columns += [sa.cast(nodes.c.aggregates, sa.Text), sa.cast(nodes.c.traits, sa.Text)]

    def grouped(*cols):
        # nodes joined to their allocations (the index on compute_node_id), one group per node; SQLite walks the
        # host name index in order when it groups by the unique name, PostgreSQL wants the primary key
        query = (sa.select(*cols).select_from(nodes.outerjoin(alloc, alloc.c.compute_node_id == nodes.c.id))
                 .group_by(nodes.c.hostname if conn.dialect.name == "sqlite" else nodes.c.id))
        return query if hosts is None else query.where(nodes.c.hostname.in_(list(hosts)))

    make, empty = _scheduler.HostRow._make, (frozenset(), frozenset())
    result = conn.execute(grouped(*columns).having(sure).order_by(nodes.c.hostname))
    if with_sets:
        rows = [make((*r[:6], _name_set(r[6]), _name_set(r[7]))) for r in result]
    else:
        rows = [make((*r, *empty)) for r in result]
    passed, rejected = _scheduler.filter_hosts(rows, spec, cfg, now, filters=light) if light else (rows, {})
    count = sa.select(sa.func.count()).select_from(nodes)
    if hosts is not None:
        count = count.where(nodes.c.hostname.in_(list(hosts)))
    if conn.execute(count).scalar() > len(rows):
        # the hosts the database did not pass for sure: judged by every filter, in host name order with the others
        names = {name for (name,) in conn.execute(grouped(nodes.c.hostname).having(sa.case((sure, 1), else_=0) == 0))}
        if len(names) <= _FEW:
            others = _states(conn, names=names)
        else:
            others = [s for s in _states(conn, names=hosts) if s.name in names]
        more_passed, more_rejected = _scheduler.filter_hosts(others, spec, cfg, now)
        order = sa.select(nodes.c.hostname).order_by(nodes.c.hostname)
        position = {name: index for index, (name,) in enumerate(conn.execute(order))}
        passed = sorted(passed + more_passed, key=lambda h: position[h.name])
        rejected = {name: rejected.get(name) or more_rejected[name]
                    for name in sorted(set(rejected) | set(more_rejected), key=position.__getitem__)}
    elif not rows:
        raise _scheduler.NoValidHost({})
    return _scheduler.choose_host(passed, rejected, spec, cfg, rng)


def _name_set(text):
    return frozenset(json.loads(text) or ()) if text else frozenset()


def existing_allocation(conn, consumer_id):
    """The instance's allocation as recorded in the bootflow DB (either backend), with its ``hostname``."""
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    return conn.execute(sa.select(alloc, nodes.c.hostname).join(nodes, nodes.c.id == alloc.c.compute_node_id)
                        .where(alloc.c.consumer_id == consumer_id)).first()


# --- the local backend: CAS on the provider generation --------------------------------------------

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


def _claim_target(conn, consumer_id, hostname):
    """The node id of ``hostname`` (None when it vanished); raises _Claimed when the consumer holds a claim."""
    nodes = _db.table("compute_nodes")
    node_id = conn.execute(sa.select(nodes.c.id).where(nodes.c.hostname == hostname)).scalar()
    held = existing_allocation(conn, consumer_id)
    if held is not None:
        raise _Claimed(held.hostname)
    return node_id


def _insert_allocation(conn, consumer_id, node_id, spec, backend):
    conn.execute(_db.table("allocations").insert().values(
        id=_db.new_id(), consumer_id=consumer_id, compute_node_id=node_id, vcpus=spec.vcpus, memory_mb=spec.memory_mb,
        disk_gb=spec.disk_gb, created_at=_db.now(), backend=backend))


def _try_claim(db, consumer_id, hostname, spec):
    """One CAS claim attempt on a host. Returns None on success or the reason it failed.

    Placement's order: read the provider (its generation) and its usage, check the request fits,
    then ``UPDATE ... SET generation = seen + 1 WHERE generation = seen``. Any claim, release or
    inventory change of that provider since our read bumped the generation, so the UPDATE matches
    no row and we retry with fresh numbers (Conflict). Only this provider's usage is aggregated.

    A member of an affinity or anti-affinity server group is re-checked against its group first, in
    the same transaction and under the group's lock (Nova's late ``_validate_instance_group_policy``):
    the members' claims committed before this one are seen, whatever the scheduler's snapshot said.
    """
    nodes = _db.table("compute_nodes")
    try:
        with db.tx() as conn:
            group = _server_groups.lock_for_claim(conn, consumer_id)
            node_id = _claim_target(conn, consumer_id, hostname)
            if node_id is None:
                return "host vanished"
            violation = _server_groups.claim_violation(conn, group, consumer_id, hostname, spec)
            if violation:
                return violation
            # generation and usage from one statement, i.e. one snapshot even under READ COMMITTED
            state = _states(conn, node_id)[0]
            ok, reason = _scheduler.fits(state, spec)
            if not ok:
                return reason
            res = conn.execute(nodes.update().where(nodes.c.id == node_id, nodes.c.generation == state.generation)
                               .values(generation=state.generation + 1))
            if res.rowcount != 1:
                raise Conflict("resource provider generation conflict on %s" % hostname)
            _insert_allocation(conn, consumer_id, node_id, spec, "local")
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


def claim(db, consumer_id, spec, hosts, cfg=None, placement=None, project_id=None, user_id=None):
    """Walk the sorted hosts, claim the first that still fits. Returns (host, alternates, tried).

    ``placement`` (a :class:`Placement`, from :func:`for_step`) makes the claim in Placement; None is the
    local backend. Placement needs the consumer's project and user: by default the instance's
    (``consumer_id`` is the instance UUID).
    """
    del cfg
    if placement is not None and (project_id is None or user_id is None):
        project_id, user_id = _owner(db, consumer_id, project_id, user_id)
    tried = {}
    for idx, hostname in enumerate(hosts):
        for attempt in range(CLAIM_RETRIES):
            try:
                if placement is None:
                    reason = _try_claim(db, consumer_id, hostname, spec)
                else:
                    reason = _try_claim_placement(db, placement, consumer_id, hostname, spec, project_id, user_id)
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


def release(db, consumer_id, check_mode=False, placement=None):
    """Delete the instance's allocation: in Placement when ``placement`` is given (also one the DB has no
    copy of), and the DB's copy (bumping the local provider generation). Returns the host or None."""
    nodes, alloc = _db.table("compute_nodes"), _db.table("allocations")
    with db.tx() as conn:
        row = existing_allocation(conn, consumer_id)
    hostname = row.hostname if row is not None else None
    if placement is None:
        if row is not None and row.backend == "placement":
            raise InvalidRequest("The allocation of %s on %s is held by Placement: release it with "
                                 "placement_backend=placement (and placement_url, or BOOTFLOW_PLACEMENT_URL)."
                                 % (consumer_id, row.hostname))
    else:
        held = placement.allocations(consumer_id)
        if held:
            hostname = hostname or _hostname_of(db, next(iter(held)))
            if not check_mode:
                placement.request("DELETE", "/allocations/%s" % consumer_id, expect=(204, 404))
    if row is not None and not check_mode:
        with db.tx() as conn:
            conn.execute(alloc.delete().where(alloc.c.consumer_id == consumer_id))
            if row.backend == "local":
                conn.execute(nodes.update().where(nodes.c.id == row.compute_node_id)
                             .values(generation=nodes.c.generation + 1))
    return hostname


def move_allocation(db, from_consumer, to_consumer, placement=None, project_id=None, user_id=None,
                    consumer_type="MIGRATION"):
    """Hand ``from_consumer``'s allocation to ``to_consumer`` unchanged (Nova's migration-based allocations: at a
    resize the source's claim passes to the migration's id, and back to the instance - ``consumer_type``
    INSTANCE - at a revert). With ``placement``, in one ``POST /allocations`` (both consumers at once, so the
    usage never drops), then the DB's copy. The provider's usage does not change: no generation bump. Returns
    the host, or None when ``from_consumer`` held nothing (a re-run after the move)."""
    alloc = _db.table("allocations")
    with db.tx() as conn:
        row = existing_allocation(conn, from_consumer)
    if row is None:
        return None
    if placement is not None:
        if project_id is None or user_id is None:
            raise InvalidRequest("Placement needs the project and user of consumer %s." % to_consumer)
        _status, data = placement.request("GET", "/allocations/%s" % from_consumer)
        held = (data or {}).get("allocations") or {}
        body = {from_consumer: {"allocations": {}, "project_id": project_id, "user_id": user_id,
                                "consumer_generation": (data or {}).get("consumer_generation"),
                                "consumer_type": "INSTANCE" if consumer_type == "MIGRATION" else "MIGRATION"},
                to_consumer: {"allocations": {rp: {"resources": a.get("resources", {})} for rp, a in held.items()},
                              "project_id": project_id, "user_id": user_id, "consumer_generation": None,
                              "consumer_type": consumer_type}}
        placement.request("POST", "/allocations", body, expect=(204,))
    with db.tx() as conn:
        conn.execute(alloc.update().where(alloc.c.consumer_id == from_consumer).values(consumer_id=to_consumer))
    return row.hostname


def _owner(db, consumer_id, project_id, user_id):
    inst = _db.table("instances")
    with db.tx() as conn:
        row = conn.execute(sa.select(inst.c.project_id, inst.c.user_id).where(inst.c.uuid == consumer_id)).first()
    if row is None and (project_id is None or user_id is None):
        raise InvalidRequest("Placement needs the project and user of consumer %s (no instance has that UUID)." % consumer_id)
    return project_id or row.project_id, user_id or row.user_id


def _hostname_of(db, provider_uuid, conn=None):
    """The host name of a resource provider; in ``conn`` when the caller is inside a transaction (on SQLite a
    second one would wait for the first)."""
    nodes = _db.table("compute_nodes")
    query = sa.select(nodes.c.hostname).where(nodes.c.id == provider_uuid)
    if conn is not None:
        return conn.execute(query).scalar() or provider_uuid
    with db.tx() as own:
        name = own.execute(query).scalar()
    return name or provider_uuid


# --- the placement backend: a real Placement over HTTP --------------------------------------------

class Placement:
    """A Placement API endpoint and the token to send (``X-Auth-Token``)."""

    def __init__(self, url, token, timeout=TIMEOUT):
        url = (url or "").rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise InvalidRequest("placement_url must be an http:// or https:// URL of the Placement API, got %r." % url)
        self.url = url
        self.token = token
        self.timeout = timeout
        self.requests = 0

    def request(self, method, path, body=None, expect=(200,)):
        """(status, parsed JSON or None). A status outside ``expect`` raises: AuthError for 401/403,
        NotFound for 404, PlacementError otherwise (Placement's own error text)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "OpenStack-API-Version": "placement " + MICROVERSION,
                   "X-Auth-Token": self.token, "User-Agent": "bootflow.cloud"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        self.requests += 1
        try:
            with open_url(self.url + path, data=data, headers=headers, method=method, timeout=self.timeout,
                          ca_path=os.environ.get("OS_CACERT"), follow_redirects="none") as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (urllib.error.URLError, socket.timeout, OSError, UrlsConnectionError, SSLValidationError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PlacementError("cannot reach Placement at %s (%s): check placement_url and that Placement runs."
                                 % (self.url, reason)) from exc
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        if status in expect:
            return status, parsed
        what = "%s %s" % (method, path.split("?")[0])
        detail = error_detail(parsed)
        if status == 401:
            raise AuthError("Placement at %s refused the token (401) for %s: %s" % (self.url, what, detail))
        if status == 403:
            raise AuthError("Placement at %s forbids %s (403): the token needs the admin or service role. %s"
                            % (self.url, what, detail))
        if status == 404:
            raise NotFound("Placement at %s: %s: not found: %s" % (self.url, what, detail))
        if status == 406 or (status == 400 and "microversion" in detail.lower()):
            raise PlacementError("Placement at %s does not speak microversion %s (needs openstack-placement 2023.1 "
                                 "or newer): %s" % (self.url, MICROVERSION, detail))
        raise PlacementError("Placement at %s answered %s to %s: %s" % (self.url, status, what, detail),
                             status=status, code=error_code(parsed))

    # --- reads -----------------------------------------------------------------------------------

    def allocations(self, consumer_id):
        """provider uuid -> resources of the consumer's allocations ({} when it has none)."""
        _status, data = self.request("GET", "/allocations/%s" % consumer_id)
        return {rp: a.get("resources", {}) for rp, a in ((data or {}).get("allocations") or {}).items()}

    def allocation_candidates(self, spec, limit=None):
        """provider uuid -> {resource class: (capacity, used)} of the providers that can hold ``spec``
        (``GET /allocation_candidates`` with its resources, required/forbidden traits, aggregate and zone), at most
        ``limit`` of them (Nova's ``max_placement_results``; None: all)."""
        params = [("resources", ",".join("%s:%d" % kv for kv in _scheduler.requested_resources(spec).items()))]
        if limit is not None:
            params.append(("limit", str(int(limit))))
        required, forbidden = _scheduler.requested_traits(spec)
        if required or forbidden:
            params.append(("required", ",".join(sorted(required) + ["!" + t for t in sorted(forbidden)])))
        aggregates = _scheduler.requested_aggregates(spec)
        if aggregates:
            params.append(("member_of", "in:" + ",".join(sorted(aggregate_uuid(a) for a in aggregates))))
        if spec.availability_zone:
            params.append(("member_of", zone_uuid(spec.availability_zone)))
        _status, data = self.request("GET", "/allocation_candidates?" + urllib.parse.urlencode(params))
        out = {}
        for rp, summary in ((data or {}).get("provider_summaries") or {}).items():
            out[rp] = {rc: (r.get("capacity", 0), r.get("used", 0)) for rc, r in (summary.get("resources") or {}).items()}
        return out


def error_code(parsed):
    try:
        return parsed["errors"][0].get("code")
    except (TypeError, KeyError, IndexError, AttributeError):
        return None


def error_detail(parsed):
    try:
        text = parsed["errors"][0].get("detail") or parsed["errors"][0].get("title")
    except (TypeError, KeyError, IndexError, AttributeError):
        text = parsed
    # webob puts its generic sentence for the status first, then a blank line, then Placement's reason
    text = str(text or "").split("\n\n", 1)[-1]
    return " ".join(text.split())[:400]


def connect(url, auth_backend="local", token=None, auth=None, keystone=None, state_dir=None, task_url=None):
    """A :class:`Placement` for one step.

    ``url``: Placement's URL from the controller's configuration (E(BOOTFLOW_PLACEMENT_URL) when None);
    ``task_url``: a C(placement_url) the task itself gave. A task's URL is used only with the caller's OWN
    token, so only for a caller Placement accepts (admin or service role): for anyone else it is refused
    (AuthError) before anything is sent - the controller's credentials (the noauth2 admin token, a
    service token) go only to endpoints of the controller's configuration or Keystone's catalog.

    local identity: the URL must be known; Placement runs with noauth2 and gets the token ``admin``.
    keystone: the caller's ``token`` when its ``auth`` context has the admin or service role, else a
    service token (:func:`service_token`, issued by the controller's Keystone, never the task's
    C(auth_url)); the URL defaults to the catalog's placement endpoint. ``keystone``: the step's Keystone
    (the task's C(auth_url) or the controller's), asked for the catalog with the caller's own token only.
    """
    own_token = auth is not None and bool(set(auth.roles) & set(PLACEMENT_ROLES))
    if task_url:
        if not own_token:
            who = "user %s (roles %s)" % (auth.user_name or auth.user_id, ", ".join(auth.roles) or "none") \
                if auth is not None else "the caller"
            raise AuthError("placement_url given in the task: only a caller Placement accepts (the admin or service "
                            "role) may name Placement's URL, and then with its own token; %s has neither. The "
                            "controller's credentials go only to Placement's URL from the controller's configuration "
                            "(BOOTFLOW_PLACEMENT_URL) or Keystone's catalog: leave placement_url out." % who)
        url = task_url
    url = url or os.environ.get("BOOTFLOW_PLACEMENT_URL")
    if auth_backend != "keystone":
        if not url:
            raise InvalidRequest("placement_backend=placement with the local identity needs Placement's URL: set "
                                 "BOOTFLOW_PLACEMENT_URL on the controller (or, as an admin, placement_url).")
        return Placement(url, NOAUTH_TOKEN)
    if own_token:
        return Placement(url or catalog_url(keystone.auth_url, token), token)
    service = service_keystone(state_dir, auth)
    send = service_token(service, state_dir, auth)
    return Placement(url or catalog_url(service.auth_url, send), send)


def service_keystone(state_dir=None, caller=None):
    """The Keystone the controller's service credentials go to: the E(BOOTFLOW_PLACEMENT_CLOUD) cloud's
    auth_url, else E(OS_AUTH_URL) / the E(OS_CLOUD) cloud's - the controller's configuration, never a task's
    C(auth_url). AuthError when the controller configures none."""
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import (  # pylint: disable=import-outside-toplevel
        keystone as _keystone,
    )

    cloud = os.environ.get("BOOTFLOW_PLACEMENT_CLOUD")
    try:
        return _keystone.Keystone(None, state_dir, cloud=cloud)
    except InvalidRequest as exc:
        who = "user %s (roles %s)" % (caller.user_name, ", ".join(caller.roles)) if caller is not None else "the caller"
        raise AuthError("Placement accepts admin or service tokens only; %s has neither, and the controller configures "
                        "no Keystone for its service credentials (OS_AUTH_URL, OS_CLOUD or the BOOTFLOW_PLACEMENT_CLOUD "
                        "cloud; a task's auth_url is never used for them): %s" % (who, exc)) from exc


def service_token(keystone, state_dir=None, caller=None):
    """A token of the controller's Placement service user, issued by ``keystone`` (:func:`service_keystone`:
    the controller's configuration): the clouds.yaml cloud named by E(BOOTFLOW_PLACEMENT_CLOUD), else the
    openrc variables (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME)."""
    del state_dir
    who = "user %s (roles %s)" % (caller.user_name, ", ".join(caller.roles)) if caller is not None else "the caller"
    try:
        token, ctx = keystone.issue()
    except AuthError as exc:
        raise AuthError("Placement accepts admin or service tokens only; %s has neither, and no service token could "
                        "be issued with the controller's credentials (BOOTFLOW_PLACEMENT_CLOUD, or OS_USERNAME/"
                        "OS_PASSWORD/OS_PROJECT_NAME): %s" % (who, exc)) from exc
    if not set(ctx.roles) & set(PLACEMENT_ROLES):
        raise AuthError("Placement accepts admin or service tokens only; %s has neither, and the controller's "
                        "service credentials (user %s) have roles %s." % (who, ctx.user_name, ", ".join(ctx.roles)))
    return token


def catalog_url(auth_url, token, timeout=TIMEOUT):
    """The placement endpoint of Keystone's catalog (interface E(OS_INTERFACE) or public, region
    E(OS_REGION_NAME) when set)."""
    interface = (os.environ.get("OS_INTERFACE") or "public").replace("URL", "")
    region = os.environ.get("OS_REGION_NAME")
    try:
        with open_url(auth_url.rstrip("/") + "/auth/catalog", headers={"X-Auth-Token": token, "Accept": "application/json"},
                      timeout=timeout, ca_path=os.environ.get("OS_CACERT")) as resp:
            catalog = json.loads(resp.read()).get("catalog") or []
    except (urllib.error.URLError, OSError, ValueError, UrlsConnectionError, SSLValidationError) as exc:
        raise PlacementError("cannot read the service catalog from Keystone at %s to find Placement (%s): set "
                             "BOOTFLOW_PLACEMENT_URL." % (auth_url, getattr(exc, "reason", exc))) from exc
    for service in catalog:
        if service.get("type") != "placement":
            continue
        for ep in service.get("endpoints") or []:
            if ep.get("interface") == interface and (not region or ep.get("region_id") == region):
                return ep["url"]
    raise PlacementError("Keystone's catalog at %s has no %s placement endpoint%s: register one, or set "
                         "BOOTFLOW_PLACEMENT_URL." % (auth_url, interface, " in region %s" % region if region else ""))


def for_step(ctx, backend=None):
    """None for the local backend, else the step's :class:`Placement` (option/env resolution, auth)."""
    if resolve_backend(backend or ctx.args.get("placement_backend")) == "local":
        return None
    task_url = ctx.args.get("placement_url") if "placement_url" in ctx.given else None
    if ctx.auth_backend == "keystone":
        return connect(None, "keystone", ctx.args.get("auth_token"), ctx.auth, ctx.keystone(), ctx.state_dir,
                       task_url=task_url)
    return connect(None, auth=ctx.auth, task_url=task_url)


# --- resource providers, synced from the compute node reports --------------------------------------

def inventories(node):
    """Placement inventories of a compute node row: reserved memory and ratios as configured. A class with
    total 0 is left out (Placement refuses it); reserved is capped at total (Placement refuses more)."""
    out = {}
    for rc, total, reserved, ratio in (
            ("VCPU", node["vcpus"], 0, node["cpu_allocation_ratio"]),
            ("MEMORY_MB", node["memory_mb"], node["reserved_host_memory_mb"], node["ram_allocation_ratio"]),
            ("DISK_GB", node["local_gb"], 0, node["disk_allocation_ratio"])):
        total = int(total or 0)
        if total > 0:
            out[rc] = {"total": total, "reserved": min(int(reserved or 0), total), "min_unit": 1, "max_unit": total,
                       "step_size": 1, "allocation_ratio": float(ratio)}
    return out


def provider_aggregates(node):
    """The aggregate UUIDs of a compute node: one per aggregate name, plus its availability zone's."""
    return sorted({aggregate_uuid(a) for a in node.get("aggregates") or ()}
                  | {zone_uuid(node.get("availability_zone") or "nova")})


def sync_provider(client, node, check_mode=False):
    """Make the node's resource provider in Placement match the row (name, inventories, traits,
    aggregates). Returns the list of what changed (empty when Placement already matched)."""
    rp, name = node["id"], node["hostname"]
    changes = []
    status, data = client.request("GET", "/resource_providers/%s" % rp, expect=(200, 404))
    if status == 404:
        changes.append("provider")
        if check_mode:
            return changes + ["inventories", "traits", "aggregates"]
        status, data = client.request("POST", "/resource_providers", {"name": name, "uuid": rp}, expect=(200, 409))
        if status == 409:
            raise PlacementError(
                "Placement at %s already has a resource provider named %s with another UUID (a host registered by "
                "another deployment or an older database): %s. Delete it there (openstack resource provider delete) "
                "or rename the host." % (client.url, name, error_detail(data)))
    elif data.get("name") != name:
        changes.append("name")
        if not check_mode:
            client.request("PUT", "/resource_providers/%s" % rp, {"name": name})
    want_traits = sorted(node.get("traits") or ())
    for what, path, key, want in (
            ("inventories", "/inventories", "inventories", inventories(node)),
            ("traits", "/traits", "traits", want_traits),
            ("aggregates", "/aggregates", "aggregates", provider_aggregates(node))):
        for _attempt in range(CLAIM_RETRIES):
            _s, have = client.request("GET", "/resource_providers/%s%s" % (rp, path))
            current = have[key]
            if what == "inventories":
                current = {rc: {k: inv[k] for k in ("total", "reserved", "min_unit", "max_unit", "step_size",
                                                    "allocation_ratio")} for rc, inv in current.items()}
            elif isinstance(current, list):
                current = sorted(current)
            if current == want:
                break
            if what not in changes:
                changes.append(what)
            if check_mode:
                break
            if what == "traits":
                for trait in want:
                    if trait.startswith("CUSTOM_"):
                        client.request("PUT", "/traits/%s" % trait, expect=(201, 204))
            body = {key: want, "resource_provider_generation": have["resource_provider_generation"]}
            status, err = client.request("PUT", "/resource_providers/%s%s" % (rp, path), body, expect=(200, 400, 409))
            if status == 200:
                break
            if status == 400 or error_code(err) != CONCURRENT_UPDATE:
                hint = " (a custom trait's name starts with CUSTOM_)" if what == "traits" else ""
                raise PlacementError("Placement at %s refused the %s of %s: %s%s"
                                     % (client.url, what, name, error_detail(err), hint))
        else:
            raise PlacementError("Placement at %s: the %s of %s kept changing under us (generation conflicts)"
                                 % (client.url, what, name))
    return changes


# --- scheduling with Placement ---------------------------------------------------------------------

def apply_candidates(states, candidates, spec, cfg, now=None):
    """Placement's capacity pre-filter: (states of the candidate hosts with Placement's usage, rejected).

    A host that is not a candidate is rejected with the reason our own filters give for it (e.g.
    ``CapacityFilter: RAM: requested ...``), or, when they would pass it, with Placement's verdict; when Placement
    returned ``cfg.max_placement_results`` candidates (the ``limit`` it was sent), that verdict says the host was
    beyond the limit, as it may have room.
    """
    now = time.time() if now is None else now
    kept, others = [], []
    for state in states:
        summary = candidates.get(state.uuid)
        if summary is None:
            others.append(state)
            continue
        used = {rc: summary[rc][1] for rc in RESOURCE_CLASSES if rc in summary}
        kept.append(dataclasses.replace(
            state, vcpus_used=used.get("VCPU", state.vcpus_used), memory_mb_used=used.get("MEMORY_MB", state.memory_mb_used),
            local_gb_used=used.get("DISK_GB", state.local_gb_used)))
    rejected = {}
    if others:
        _passed, reasons = _scheduler.filter_hosts(others, spec, cfg, now)
        if len(candidates) >= cfg.max_placement_results:
            verdict = ("PlacementFilter: not among the %d allocation candidates Placement returned "
                       "(max_placement_results)" % cfg.max_placement_results)
        else:
            verdict = ("PlacementFilter: Placement has no allocation candidate on this host (no room left there, or "
                       "not a resource provider in Placement: run playbooks/hypervisors.yml with "
                       "placement_backend=placement)")
        for state in others:
            rejected[state.name] = reasons.get(state.name) or verdict
    return kept, rejected


def _try_claim_placement(db, client, consumer_id, hostname, spec, project_id, user_id):
    """One claim in Placement (``PUT /allocations/{consumer}``), then its copy in the DB. None or the reason.

    For a member of an affinity or anti-affinity server group, one DB transaction holds the group's lock
    across the policy re-check, Placement's PUT and the DB copy: the next member's claim waits until this
    one's copy is committed. If anything fails after Placement said yes (the copy, the commit), the
    Placement allocation is deleted again.
    """
    with db.tx() as conn:
        grouped = _server_groups.hard_group(conn, consumer_id) is not None
        node_id = _claim_target(conn, consumer_id, hostname)
    if node_id is None:
        return "host vanished"
    if not grouped:
        return _put_allocation(db, client, None, consumer_id, node_id, hostname, spec, project_id, user_id)
    made = []
    try:
        with db.tx() as conn:
            group = _server_groups.lock_for_claim(conn, consumer_id)
            node_id = _claim_target(conn, consumer_id, hostname)   # again, under the lock
            if node_id is None:
                return "host vanished"
            violation = _server_groups.claim_violation(conn, group, consumer_id, hostname, spec)
            if violation:
                return violation
            return _put_allocation(db, client, conn, consumer_id, node_id, hostname, spec, project_id, user_id, made)
    except BaseException:
        if made:   # the copy was written but not committed: Placement must not keep the claim
            client.request("DELETE", "/allocations/%s" % consumer_id, expect=(204, 404))
        raise


def _put_allocation(db, client, conn, consumer_id, node_id, hostname, spec, project_id, user_id, made=None):
    """``PUT /allocations/{consumer}``, then the DB copy: in ``conn`` (the caller's transaction, which the
    caller commits; ``made`` gets an entry once Placement holds the claim) or, when None, in a
    transaction of its own. None, or the reason Placement refused the claim."""
    body = {"allocations": {node_id: {"resources": _scheduler.requested_resources(spec)}},
            "project_id": project_id, "user_id": user_id, "consumer_generation": None, "consumer_type": "INSTANCE"}
    status, err = client.request("PUT", "/allocations/%s" % consumer_id, body, expect=(204, 409))
    if status == 409:
        if error_code(err) == CONCURRENT_UPDATE:
            held = client.allocations(consumer_id)
            if held:   # consumer generation conflict: a concurrent run of the same boot claimed it
                raise _Claimed(_hostname_of(db, next(iter(held)), conn))
            raise Conflict("Placement: resource provider generation conflict on %s" % hostname)
        return "Placement: %s" % error_detail(err)
    if made is not None:
        made.append(consumer_id)
    try:
        if conn is None:
            with db.tx() as own:
                _insert_allocation(own, consumer_id, node_id, spec, "placement")
        else:
            _insert_allocation(conn, consumer_id, node_id, spec, "placement")
    except BaseException:
        # nothing half-made: the DB has no copy, so Placement must not keep the claim either
        client.request("DELETE", "/allocations/%s" % consumer_id, expect=(204, 404))
        raise
    return None
