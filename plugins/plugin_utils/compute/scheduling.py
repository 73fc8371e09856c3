# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-scheduler's select_destinations for one instance record: its RequestSpec, the candidate hosts'
states, Placement's capacity pre-filter (a real Placement), the filters and weighers (scheduler.py, pure
logic) and the atomic claim on the chosen host or an alternate (placement.py); and the claim's release.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DEFAULT_MAX_ATTEMPTS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NoValidHostError
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce

NO_COMPUTE_NODES = "No valid host was found. There are no compute nodes: run playbooks/hypervisors.yml."


# The scheduler's operator settings (nova.conf [filter_scheduler] / [scheduler]): section ``scheduler`` of
# the operator's configuration (plugin_utils/settings.py); a task may override them for an admin only
# (StepContext.operator_setting). The defaults are Nova's.
SETTINGS = ("enabled_filters", "hosts", "weight_multipliers", "host_subset_size", "max_attempts", "service_down_time")
DEFAULT_WEIGHT_MULTIPLIERS = {"RAMWeigher": 1.0, "CPUWeigher": 1.0, "DiskWeigher": 1.0, "NumInstancesWeigher": 0.0,
                              "ServerGroupSoftAffinityWeigher": 1.0, "ServerGroupSoftAntiAffinityWeigher": 1.0,
                              "BuildFailureWeigher": 1000000.0}
DEFAULTS = {"enabled_filters": None, "hosts": None, "weight_multipliers": {}, "host_subset_size": 1,
            "max_attempts": DEFAULT_MAX_ATTEMPTS, "service_down_time": 60, "max_placement_results": 1000}
# only in the operator's file (no task option): nova.conf [scheduler] max_placement_results, the placement backend's
# limit on allocation candidates
OPERATOR_ONLY = ("max_placement_results",)
# playbooks/boot.yml runs three build passes: one per attempt
MAX_ATTEMPTS_LIMIT = 3


def _typed(option, value):
    """A setting's value checked for its type (the operator's file is untyped YAML). Raises InvalidRequest."""
    if value is None:
        return None
    if option in ("enabled_filters", "hosts"):
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise InvalidRequest("scheduler setting %s must be a list of names, got %r." % (option, value))
        return list(value)
    if option == "weight_multipliers":
        bad = InvalidRequest("scheduler setting weight_multipliers must be a mapping of weigher to number, got %r."
                             % (value,))
        if not isinstance(value, dict) or any(isinstance(v, bool) for v in value.values()):
            raise bad
        try:
            return {str(k): float(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise bad from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRequest("scheduler setting %s must be a whole number, got %r." % (option, value))
    return value


def operator_config(setting):
    """(SchedulerConfig, candidate host names or None) from the scheduler's operator settings.

    ``setting``: ``StepContext.operator_setting`` - the operator's file (section ``scheduler``), else Nova's
    default; a task's own value for an admin only (a member or reader setting one is refused with AuthError
    before anything is done). Raises InvalidRequest for a bad value."""
    values = {opt: _typed(opt, setting(opt, "scheduler", default=DEFAULTS[opt])) for opt in SETTINGS + OPERATOR_ONLY}
    cfg = config(values["enabled_filters"], values["weight_multipliers"] or {}, values["host_subset_size"],
                 values["max_attempts"], values["service_down_time"], values["max_placement_results"])
    return cfg, values["hosts"]


def config(enabled_filters, weight_multipliers, host_subset_size, max_attempts, service_down_time,
           max_placement_results=DEFAULTS["max_placement_results"]):
    """The scheduler's configuration; ``service_down_time`` 0 = do not judge liveness by the age of the last
    report or heartbeat. ``weight_multipliers`` go over Nova's defaults (DEFAULT_WEIGHT_MULTIPLIERS), each
    weigher its own setting as in nova.conf. ``enabled_filters`` None: every filter; the mandatory ones
    (scheduler.MANDATORY_FILTERS) run whatever it says. Raises InvalidRequest."""
    if service_down_time < 0:
        raise InvalidRequest("service_down_time must be 0 (off) or a number of seconds, got %d." % service_down_time)
    if max_placement_results < 1:
        raise InvalidRequest("max_placement_results must be 1 or more, got %d." % max_placement_results)
    if not 1 <= max_attempts <= MAX_ATTEMPTS_LIMIT:
        raise InvalidRequest("max_attempts must be 1 to %d (playbooks/boot.yml runs %d build passes, one per "
                             "attempt), got %d." % (MAX_ATTEMPTS_LIMIT, MAX_ATTEMPTS_LIMIT, max_attempts))
    return _scheduler.SchedulerConfig(enabled_filters=enabled_filters,
                                      multipliers=dict(DEFAULT_WEIGHT_MULTIPLIERS, **dict(weight_multipliers or {})),
                                      host_subset_size=host_subset_size, max_attempts=max_attempts,
                                      service_down_time=service_down_time or _scheduler.NEVER_DOWN,
                                      max_placement_results=max_placement_results)


def _client(placement):
    return placement() if callable(placement) else placement


def select_destinations(db, auth, ref, cfg, hosts=None, placement=None, check_mode=False):
    """Choose a host for instance ``ref`` (a building instance that is scheduling) and claim it.

    ``hosts``: the candidate host names (None: every compute node); ``placement``: the Placement client
    when a real Placement holds the claims (None: the local backend), or a function returning it (called
    once the caller passed the policy check). Returns a dict: ``changed``, ``host``, ``alternates``,
    ``rejected``, ``claim_failures``, ``weights``, ``server_group``, ``backend``, ``instance`` (the row
    before), ``new`` (the row after; None in check mode or when it held a claim already).
    A host nothing fits puts the instance in ERROR (Nova's NoValidHost) and raises NoValidHostError."""
    enforce(auth, "scheduler:select_destinations")
    placement = _client(placement)
    backend = "local" if placement is None else "placement"
    with db.tx() as conn:
        row = instances.get_instance(conn, ref, auth)
        alloc = _placement.existing_allocation(conn, row.uuid)
        if alloc is not None:
            return {"changed": False, "host": alloc.hostname, "alternates": [], "instance": row, "new": None,
                    "backend": backend}
        if row.vm_state != instances.BUILDING or row.task_state != instances.SCHEDULING:
            raise InvalidRequest("Instance %s is %s/%s and has no allocation; only a building instance that is "
                                 "scheduling can be scheduled." % (row.name, row.vm_state, row.task_state))
        spec, group = _compute_api.scheduling_request(conn, row)
    try:
        selection = select(db, spec, cfg, hosts, placement)
    except NoValidHostError as exc:
        _fail(db, row, str(exc), check_mode)
        raise
    out = {"changed": True, "host": selection.host, "alternates": selection.alternates,
           "rejected": selection.rejected, "claim_failures": {}, "instance": row, "new": None,
           "weights": {name: {"total": total, **per} for name, total, per in selection.hosts},
           "server_group": None if group is None else {k: group[k] for k in ("id", "name", "policy",
                                                                             "max_server_per_host", "hosts")}}
    if check_mode:
        return out
    try:
        host, alternates, claim_failures = _placement.claim(db, row.uuid, spec, [h[0] for h in selection.hosts],
                                                            placement=placement, project_id=row.project_id,
                                                            user_id=row.user_id)
    except NoValidHostError as exc:
        _fail(db, row, str(exc), check_mode)
        exc.details["rejected"] = selection.rejected
        raise
    with db.tx() as conn:
        # the conductor's reschedule tries as many builds as the scheduler kept hosts for
        # and the alternates travel with the request (Nova's host_list): a reschedule takes them from here
        instances.update_request(conn, row.uuid, max_attempts=cfg.max_attempts, alternates=alternates)
        out["new"] = instances.move_state(conn, row.uuid, instances.BUILDING, instances.SCHEDULING,
                                          expected_task_state=instances.SCHEDULING, host=host)
    out.update(host=host, alternates=alternates, claim_failures=claim_failures, backend=backend)
    return out


def select(db, spec, cfg, hosts=None, placement=None):
    """nova-scheduler's choice for ``spec`` among ``hosts`` (None: every compute node), claiming nothing: the
    database's prefilter (zone, enabled and up, capacity) or Placement's allocation candidates, then the filters
    and weighers. Returns the Selection (its rejections sorted); raises NoValidHostError with the rejections."""
    states = selection = no_host = None
    with db.tx() as conn:
        try:
            if placement is None:
                # the database prefilters (zone, enabled and up, capacity), as Placement would
                selection = _placement.select_local(conn, spec, cfg, hosts)
            else:
                states = _placement.host_states(conn)
        except _scheduler.NoValidHost as exc:
            no_host = exc
    if states is not None:
        try:
            selection = _select_with_placement(states, spec, cfg, hosts, placement)
        except _scheduler.NoValidHost as exc:
            no_host = exc
    if no_host is not None:
        msg = str(no_host) if no_host.rejected else NO_COMPUTE_NODES
        raise NoValidHostError(msg, rejected=no_host.rejected) from no_host
    selection.rejected = dict(sorted(selection.rejected.items()))
    return selection


def _select_with_placement(states, spec, cfg, hosts, placement):
    """select_hosts over the ``states`` among Placement's allocation candidates (its capacity pre-filter, as
    nova-scheduler asks first); the other hosts are rejected with Placement's reason. Raises scheduler.NoValidHost."""
    if hosts is not None:
        wanted = set(hosts)
        states = [s for s in states if s.name in wanted]
    if not states:
        raise _scheduler.NoValidHost({})
    candidates = placement.allocation_candidates(spec, limit=cfg.max_placement_results)
    states, pre_rejected = _placement.apply_candidates(states, candidates, spec, cfg)
    if not states:
        raise _scheduler.NoValidHost(pre_rejected)
    selection = _scheduler.select_hosts(states, spec, cfg)
    selection.rejected = dict(pre_rejected, **selection.rejected)
    return selection


def select_for_list(db, auth, refs, cfg, hosts=None, placement=None, check_mode=False):
    """Nova's select_destinations for the N instances of one boot request, in order: each claim is
    committed before the next instance is placed, so it sees the claims made before it (capacity, and
    the server-group policy of a group several instances join). An instance no host fits goes to ERROR
    (NoValidHost) while the others go on; then every item with a ``min_count`` (its reservation) that got
    fewer instances placed is withdrawn - its claims released and its records deleted, nothing left.

    Returns {``placed``: [select_destinations' result + name, uuid], ``unplaced``: [{name, uuid, fault,
    rejected}], ``withdrawn``: [{name, uuid, reservation_id, reason}], ``changed``}."""
    enforce(auth, "scheduler:select_destinations")
    placement = _client(placement)
    with db.tx() as conn:
        rows = [instances.get_instance(conn, ref, auth) for ref in refs]
    placed, failed = [], []
    for row in rows:
        try:
            out = select_destinations(db, auth, row.uuid, cfg, hosts, placement, check_mode)
        except NoValidHostError as exc:
            failed.append({"name": row.name, "uuid": row.uuid, "fault": str(exc),
                           "rejected": exc.details.get("rejected") or {}})
            continue
        out.update(name=row.name, uuid=row.uuid)
        placed.append(out)
    withdrawn = [] if check_mode else _withdraw_short_reservations(db, auth, rows, placement)
    gone = {w["uuid"] for w in withdrawn}
    return {"changed": any(p["changed"] for p in placed) or bool(failed) or bool(withdrawn),
            "placed": [p for p in placed if p["uuid"] not in gone],
            "unplaced": [f for f in failed if f["uuid"] not in gone], "withdrawn": withdrawn}


def _withdraw_short_reservations(db, auth, rows, placement):
    """Nova's min_count: a reservation (one item of the request) with fewer live instances holding a claim
    than its min_count is withdrawn - the claims of its instances in ``rows`` released, their records
    deleted (they never reached a host: no ports, no volumes made)."""
    by_reservation = {}
    for row in rows:
        req = row.request or {}
        if req.get("min_count") and req.get("reservation_id"):
            by_reservation.setdefault(req["reservation_id"], []).append(row)
    withdrawn = []
    for rid, members in by_reservation.items():
        min_count = members[0].request["min_count"]
        with db.tx() as conn:
            held = sum(1 for r in members if _placement.existing_allocation(conn, r.uuid) is not None)
        if held >= min_count:
            continue
        reason = ("only %d of the %d instances could be placed, fewer than min_count %d: none is built"
                  % (held, len(members), min_count))
        for row in members:
            _placement.release(db, row.uuid, False, placement=placement)
            _compute_api.delete(db, auth, row.uuid, False)
            withdrawn.append({"name": row.name, "uuid": row.uuid, "reservation_id": rid, "reason": reason})
    return withdrawn


def release(db, auth, ref, placement=None, check_mode=False):
    """Delete the instance's claim (delete.yml: after its domain is gone). Returns the host it was on, or None."""
    enforce(auth, "placement:release")
    placement = _client(placement)
    with db.tx() as conn:
        row = instances.get_instance(conn, ref, auth)
        instances.require_not_running(row, "release its claim")
    return _placement.release(db, row.uuid, check_mode, placement=placement)


def _fail(db, row, msg, check_mode):
    if not check_mode:
        with db.tx() as conn:
            instances.set_fault(conn, row.uuid, msg, "schedule", None)
