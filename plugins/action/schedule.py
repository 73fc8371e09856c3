# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.schedule (nova-scheduler + placement claim, seed steps 8-12)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_ARGSPEC, PLACEMENT_ARGSPEC, argspec
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import monotonic_ms, table
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NoValidHostError
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        PLACEMENT_ARGSPEC,
        instance=dict(type="str", required=True),
        hosts=dict(type="list", elements="str"),
        enabled_filters=dict(type="list", elements="str"),
        weight_multipliers=dict(type="dict", default={}),
        host_subset_size=dict(type="int", default=1),
        max_attempts=dict(type="int", default=3),
        service_down_time=dict(type="int", default=60),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        enforce(auth, "placement:release" if a["state"] == "absent" else "scheduler:select_destinations")
        if a["service_down_time"] < 0:
            raise InvalidRequest("service_down_time must be 0 (off) or a number of seconds, got %d." % a["service_down_time"])
        placement = _placement.for_step(ctx)   # None: the local backend
        with ctx.db.tx() as conn:
            row = instances.get_instance(conn, a["instance"], auth)
            if a["state"] == "absent":
                instances.require_not_running(row, "release its claim")
            else:
                alloc = _placement.existing_allocation(conn, row.uuid)
                if alloc is not None:
                    return {"changed": False, "host": alloc.hostname, "alternates": [], "instance": instances.instance_dict(row)}
                if row.vm_state != instances.BUILDING or row.task_state != instances.SCHEDULING:
                    raise InvalidRequest("Instance %s is %s/%s and has no allocation; only a building instance that is "
                                         "scheduling can be scheduled." % (row.name, row.vm_state, row.task_state))
                flavor = conn.execute(table("flavors").select().where(table("flavors").c.id == row.flavor_id)).first()
                image = None
                if row.image_id:
                    image = conn.execute(table("images").select().where(table("images").c.id == row.image_id)).first()
                states = _placement.host_states(conn)
                # the scheduler hint group: the policy and the hosts of the other members (claims included)
                group = _server_groups.scheduling_info(conn, row.uuid)
        if a["state"] == "absent":
            host = _placement.release(ctx.db, row.uuid, ctx.check_mode, placement=placement)
            return {"changed": host is not None, "released_from": host}
        try:
            cfg = _scheduler.SchedulerConfig(
                enabled_filters=a["enabled_filters"], multipliers=a["weight_multipliers"],
                host_subset_size=a["host_subset_size"], max_attempts=a["max_attempts"],
                # 0 = do not judge liveness by the age of the last report or heartbeat
                service_down_time=a["service_down_time"] or 10 ** 9)
            # Nova's RequestSpec carries the flavor and the image meta; ImagePropertiesFilter reads the image's
            # hw_architecture / img_hv_type / img_hv_requested_version, ComputeCapabilitiesFilter the extra_specs
            # (TraitsFilter and AggregateFilter their trait:NAME and member_of), and an admin's
            # availability_zone=ZONE:HOST becomes the forced host; the server group feeds the ServerGroup*
            # filters and weighers, the retry record (builds that failed) the RetryFilter
            spec = api.request_spec(flavor, image, row.request, group)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        if a["hosts"] is not None:
            wanted = set(a["hosts"])
            states = [s for s in states if s.name in wanted]
        before = (row.vm_state, row.task_state)
        try:
            if not states:
                raise _scheduler.NoValidHost({})
            pre_rejected = {}
            if placement is not None:
                # Placement's capacity pre-filter (GET /allocation_candidates), as nova-scheduler does first
                states, pre_rejected = _placement.apply_candidates(states, placement.allocation_candidates(spec), spec, cfg)
                if not states:
                    raise _scheduler.NoValidHost(pre_rejected)
            selection = _scheduler.select_hosts(states, spec, cfg)
            selection.rejected = dict(sorted(dict(pre_rejected, **selection.rejected).items()))
        except _scheduler.NoValidHost as exc:
            msg = str(exc) if states else "No valid host was found. There are no compute nodes: run playbooks/hypervisors.yml."
            self._fail_instance(ctx, row, msg)
            raise NoValidHostError(msg, rejected=getattr(exc, "rejected", {})) from exc
        weights = {name: {"total": total, **per} for name, total, per in selection.hosts}
        group_out = None if group is None else {k: group[k] for k in ("id", "name", "policy", "max_server_per_host", "hosts")}
        if ctx.check_mode:
            return {"changed": True, "host": selection.host, "alternates": selection.alternates,
                    "rejected": selection.rejected, "weights": weights, "server_group": group_out}
        try:
            host, alternates, claim_failures = _placement.claim(ctx.db, row.uuid, spec, [h[0] for h in selection.hosts],
                                                                placement=placement, project_id=row.project_id,
                                                                user_id=row.user_id)
        except NoValidHostError as exc:
            self._fail_instance(ctx, row, str(exc))
            exc.details["rejected"] = selection.rejected
            raise
        ms = monotonic_ms(ctx.started)
        with ctx.db.tx() as conn:
            new = instances.move_state(conn, row.uuid, instances.BUILDING, instances.SCHEDULING, expected_task_state=instances.SCHEDULING, host=host)
            instances.record_step(conn, row.uuid, "8-12", "nova-scheduler", "select_destinations", host, before,
                                  (new.vm_state, new.task_state), True, ms)
        return {
            "changed": True, "host": host, "alternates": alternates, "rejected": selection.rejected,
            "claim_failures": claim_failures, "weights": weights, "instance": instances.instance_dict(new),
            "server_group": group_out,
            "placement_backend": "local" if placement is None else "placement",
            "bootflow_step": instances.step_row(row.name, "8-12", "nova-scheduler", "select_destinations", host, before,
                                                (new.vm_state, new.task_state), True, ms),
        }

    @staticmethod
    def _fail_instance(ctx, row, msg):
        if not ctx.check_mode:
            with ctx.db.tx() as conn:
                instances.set_fault(conn, row.uuid, msg, "schedule", None)
