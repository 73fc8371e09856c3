# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-conductor after a failed build: release what the controller holds, then re-claim an
alternate host or put the instance in ERROR with its fault (Nova's build_instances on a reschedule,
``_cleanup_when_reschedule_fails`` / ``BuildAbortException``).

PRIVATE to the collection: may change at any time. Controller side only. The decision itself
(classification, max_attempts, alternates left) is pure code in ``_faults``.
"""

from __future__ import annotations

import dataclasses

import time

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import cleanups as _cleanups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api
from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DEFAULT_MAX_ATTEMPTS
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NoValidHostError,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import allowed, enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduling as _scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


def failed_build(db, auth, instance, host, failure, alternates=None, max_attempts=None, cleanup_error=None,
                 check_mode=False, started=None, placement=None, cfg=None, hosts=None):
    """Handle the failed build of ``instance`` on ``host`` (after the compute role's undo there).

    ``failure`` is a ``_faults.Failure``; ``alternates`` the hosts to try (None: those the scheduler kept
    for the instance; naming hosts is an admin's privilege, as Nova's conductor only ever takes the
    scheduler's host_list - a member naming them is refused with AuthError before anything changes);
    ``cfg``/``hosts``: the scheduler's configuration and candidate hosts (scheduling.operator_config;
    None: Nova's defaults, every compute node), with which every alternate is filtered again before its
    claim; ``placement`` the Placement client when a real Placement holds the claims (None:
    the local backend); ``cleanup_error``: why the host could not undo the build (its residue is recorded
    for a later cleanup, the reschedule goes on). Returns the task result: ``rescheduled`` with the new
    ``host`` and the ``alternates`` left, or the instance in ERROR with its ``fault``.
    """
    for rule in ("compute:set_error", "placement:release", "scheduler:select_destinations"):
        enforce(auth, rule)
    if alternates is not None and not allowed(auth, "compute:force_host"):
        raise AuthError("alternates names the hosts to build on, which only an admin may do (policy rule "
                        "compute:force_host); user %s has %s. Leave alternates out: the reschedule takes the "
                        "alternates the scheduler kept for the instance." % (
                            auth.user_name or auth.user_id, ", ".join(auth.roles) or "no role"))
    if callable(placement):
        placement = placement()   # once the caller passed the checks above
    if cfg is None:
        cfg = _scheduling.config(None, {}, 1, DEFAULT_MAX_ATTEMPTS, _scheduling.DEFAULTS["service_down_time"])
    verdict = _faults.classify(failure)
    with db.tx() as conn:
        row = instances.get_instance(conn, instance, auth)
        if row.vm_state not in (instances.BUILDING, instances.ERROR):
            raise Conflict("Instance %s is %s: only a failed build is rescheduled or put in ERROR."
                           % (row.name, row.vm_state))
        alloc = _placement.existing_allocation(conn, row.uuid)
        if alloc is not None and alloc.hostname != host:
            raise Conflict("Instance %s holds its claim on %s, not on %s: the failure on %s is not its build."
                           % (row.name, alloc.hostname, host, host))
        spec, _group = api.scheduling_request(conn, row, with_group=False)
    # the value the instance was scheduled with (Nova's [scheduler] max_attempts), unless the task says otherwise
    if max_attempts is None:
        max_attempts = (row.request or {}).get("max_attempts") or DEFAULT_MAX_ATTEMPTS
    if max_attempts < 1:
        raise InvalidRequest("max_attempts must be at least 1, got %d." % max_attempts)
    at = instances.now_iso()
    retry = _faults.add_failure(_faults.retry_of(row.request), _faults.attempt_record(failure, verdict, at))
    if row.vm_state == instances.ERROR and verdict.reschedulable:
        # a step put the instance in ERROR itself: that is final
        verdict = _faults.Verdict(False, "error", "the failed step put the instance in ERROR itself")
    if alternates is None:
        # the alternates the scheduler kept for the instance (Nova's host_list travels with the request)
        alternates = (row.request or {}).get("alternates") or []
    decision = _faults.decide(verdict, retry, list(alternates), max_attempts, row.uuid)
    before = (row.vm_state, row.task_state)
    out = {"changed": True, "rescheduled": False, "reschedulable": verdict.reschedulable,
           "category": verdict.category, "reason": decision.reason or verdict.reason,
           "failure": {"message": failure.message, "step": failure.step, "action": failure.action,
                       "host": failure.host, "kind": failure.kind},
           "num_attempts": retry["num_attempts"], "tried": retry["hosts"], "host": None, "alternates": [],
           "claim_failures": {}}
    if cleanup_error:
        out["cleanup_error"] = cleanup_error
    if check_mode:
        return out
    if cleanup_error:
        # the host could not undo the build: what it may still hold is recorded for it to remove when it
        # is back; the controller's own share (claim, ports, volume records) is released all the same
        out["residue"] = _cleanups.record(db, host, row, cleanup_error)
    if _faults.counts_against_host(verdict):
        _placement.count_failed_build(db, host)
    if decision.reschedule:
        new_host, left, why, out["claim_failures"] = _reclaim(db, row, spec, retry, decision.candidates,
                                                              placement, cfg, hosts)
        if new_host is not None:
            after = (instances.BUILDING, instances.SCHEDULING)
            out.update(rescheduled=True, host=new_host, alternates=left, num_attempts=retry["num_attempts"] + 1)
            return _finish(db, out, row, "8-12", "reschedule", new_host, before, after, started)
        decision = _faults.Decision(False, (), why)
    release(db, row.uuid, placement)
    fault = _faults.fault_record(failure, verdict, decision, retry, at)
    if cleanup_error:
        fault["cleanup_error"] = cleanup_error
    with db.tx() as conn:
        conductor.save_retry(conn, row.uuid, retry)
        instances.record_fault(conn, row.uuid, fault, host=None)
    out.update(reason=decision.reason, fault=fault)
    return _finish(db, out, row, "fault", "build_failed", host, before, (instances.ERROR, None), started)


def _placement_kwargs(placement, row=None):
    """The _placement.claim/release arguments of the backend: none for the local one."""
    if placement is None:
        return {}
    return {"placement": placement} if row is None else {"placement": placement, "project_id": row.project_id,
                                                         "user_id": row.user_id}


def release(db, uuid, placement=None):
    """What the controller holds for a failed build, in the undo order: the volume attachments and
    records (back to 'creating', no host), the ports (IP addresses), then the claim. Idempotent."""
    with db.tx() as conn:
        conductor.reset_build_volumes(conn, uuid)
    _networking.release_ports(db, uuid)
    _placement.release(db, uuid, **_placement_kwargs(placement))


def recheck(db, row, candidates, cfg, hosts=None, now=None):
    """The alternates that still pass EVERY filter of the scheduler (``cfg``: its enabled and mandatory
    filters - ComputeFilter's disabled (not its down: see below), the zone, aggregates, traits, capabilities, image properties,
    the group policies, capacity), on the hosts' state now, in their order; and {host: why skipped}.
    An alternate is what the scheduler saw when it placed the instance: a host disabled, moved out
    of the zone or filled since then is skipped (Nova's conductor re-checks its alternates the same way,
    through Placement and the late group check). ``hosts``: the operator's candidate hosts (None: all)."""
    with db.tx() as conn:
        states = {s.name: s for s in _placement.host_states(conn)}
        full_spec, _group = api.scheduling_request(conn, row)
    # ComputeFilter judges "disabled" again, but not "down" by the age of the last report: heartbeats come with
    # boot.yml's start (scheduler role, step 8), not every few seconds as from Nova's compute services, so by a
    # later build pass every alternate would look down. Liveness was judged when the request was scheduled; an
    # alternate that died since then fails its build like any dead host (conductor: host_cleanups, next one).
    cfg = dataclasses.replace(cfg, service_down_time=_scheduler.NEVER_DOWN)
    wanted = None if hosts is None else set(hosts)
    passed, skipped = [], {}
    for name in candidates:
        state = states.get(name)
        if state is None:
            skipped[name] = "not a registered compute node"
        elif wanted is not None and name not in wanted:
            skipped[name] = "not one of the scheduler's hosts (operator setting scheduler.hosts)"
        else:
            _ok, rejected = _scheduler.filter_hosts([state], full_spec, cfg, time.time() if now is None else now)
            if rejected:
                skipped[name] = rejected[name]
            else:
                passed.append(name)
    return passed, skipped


def _reclaim(db, row, spec, retry, candidates, placement=None, cfg=None, hosts=None):
    """Nova's conductor on a reschedule: free the claim on the failed host (host None, task_state
    scheduling), then claim the first alternate that still passes every filter (``recheck``) and still
    fits - it may be stale, and a member of an affinity or anti-affinity server group must still keep its
    group's policy there (the claim re-checks it). Returns (host, alternates after it, '', claim failures)
    or (None, [], why nothing could be claimed, claim failures)."""
    candidates, skipped = recheck(db, row, list(candidates), cfg or _scheduler.SchedulerConfig(), hosts)
    release(db, row.uuid, placement)
    with db.tx() as conn:
        conductor.save_retry(conn, row.uuid, _faults.next_attempt(retry))
        instances.move_state(conn, row.uuid, instances.BUILDING, instances.SCHEDULING, host=None)
    try:
        if not candidates:
            raise NoValidHostError("No valid host was found. No alternate passes the filters: %s"
                                   % "; ".join("%s: %s" % kv for kv in skipped.items()), claim_failures={})
        host, alternates, tried = _placement.claim(db, row.uuid, spec, candidates,
                                                   **_placement_kwargs(placement, row))
    except NoValidHostError as exc:
        return (None, [], "%s (no alternate could be claimed: %s)" % (_faults.MAX_RETRIES % row.uuid, exc),
                dict(skipped, **(exc.details.get("claim_failures") or {})))
    tried = dict(skipped, **tried)
    left = [h for h in alternates if h not in retry["hosts"]]
    with db.tx() as conn:
        instances.move_state(conn, row.uuid, instances.BUILDING, instances.SCHEDULING, expected_task_state=instances.SCHEDULING, host=host)
        instances.update_request(conn, row.uuid, alternates=left)
    return host, left, "", tried


def _finish(db, out, row, seed, action, host, before, after, started):
    ms = monotonic_ms(started) if started is not None else 0
    with db.tx() as conn:
        instances.record_step(conn, row.uuid, seed, "nova-conductor", action, host, before, after, True, ms)
        out["instance"] = instances.instance_dict(instances.get_instance(conn, row.uuid))
    out["bootflow_step"] = instances.step_row(row.name, seed, "nova-conductor", action, host, before, after, True, ms,
                                              uuid=row.uuid, recorded=True)
    return out
