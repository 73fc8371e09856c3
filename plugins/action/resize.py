# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.resize: nova-api's resize, confirmResize and revertResize (policy, state, the
new flavor, the migration, the claims) on the controller, nova-compute's part on the instance's host."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import DEFAULT_SHUTDOWN_TIMEOUT, POWER_STATES
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances, scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import resize as _resize
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.api import get_flavor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule, check_instance_option

# the API action behind each state, its policy rule and the step's name
_ACTIONS = {"resized": "resize", "confirmed": "confirm_resize", "reverted": "revert_resize"}
# a resize that failed on its way: these task_states are rolled back by state=reverted
_ON_THE_WAY = (instances.RESIZE_PREP, instances.RESIZE_MIGRATING, instances.RESIZE_FINISH, instances.RESIZE_REVERTING)


class ActionModule(HostStep):
    SEED_STEPS = "day-2"
    SERVICE = "nova-compute"
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + ("instance", "flavor", "fault", "auto_confirm", "resize_confirm_window"))

    _instance = None
    _migration = None

    def policy_rule(self, args):
        return actions.FLOWS[_ACTIONS[args["state"]]].rule

    def step(self, ctx):
        if ctx.args["auto_confirm"]:
            return self._auto_confirm(ctx)
        self._instance = self._migration = None
        check_instance_option(ctx.args, "the instance's UUID (instance_uuid)")
        result = super().step(ctx)
        if self._instance is not None:
            with ctx.db.tx() as conn:
                row = instances.get_instance(conn, self._instance.uuid)
                migration = _resize.last_migration(conn, row.uuid)
                result.update(uuid=row.uuid, vm_state=row.vm_state, task_state=row.task_state,
                              status=instances.api_status(row.vm_state, row.task_state),
                              flavor=get_flavor(conn, row.flavor_id).name)
                if migration is not None:
                    result["migration"] = {k: getattr(migration, k) for k in (
                        "id", "status", "source_compute", "dest_compute")}
        return result

    def _auto_confirm(self, ctx):
        """nova-compute's periodic ``_poll_unconfirmed_resizes``: every resize on this host that has waited for a
        confirm for the operator's ``resize_confirm_window`` seconds (0, the default: never) is confirmed, one after
        the other, as a confirm_resize of each would."""
        if ctx.args.get("instance") or ctx.args.get("instance_uuid") or ctx.args["state"] != "confirmed":
            raise InvalidRequest("auto_confirm confirms the resizes of this host that waited longer than "
                                 "resize_confirm_window: it takes state=confirmed and no instance.")
        if not ctx.args.get("auth_token"):
            raise InvalidRequest("auto_confirm needs auth_token (the resizes waiting are in the database).")
        window = ctx.operator_seconds("resize_confirm_window", "compute", default=_resize.DEFAULT_CONFIRM_WINDOW)
        with ctx.db.tx() as conn:
            due = _resize.expired(conn, ctx.host, window)
        base, confirmed, rows = dict(ctx.args), [], []
        try:
            for uuid, name in due:
                ctx.args = dict(base, instance=uuid, auto_confirm=False)
                ctx.progress("confirming the resize of %s (waiting longer than %d s)" % (name, window))
                res = self.step(ctx)
                if res.get("changed"):
                    confirmed.append(name)
                rows.extend(res.get("bootflow_steps") or [res[k] for k in ("bootflow_step",) if k in res])
        finally:
            ctx.args = base
        return {"changed": bool(confirmed), "confirmed": confirmed, "resize_confirm_window": window,
                "bootflow_steps": rows}

    def prepare(self, ctx, args):
        args["shutdown_timeout"] = ctx.operator_seconds("shutdown_timeout", "compute", default=DEFAULT_SHUTDOWN_TIMEOUT)
        with ctx.db.tx() as conn:
            instance = instances.get_instance(conn, args["instance"], ctx.auth)
            instances.require_on_host(instance, ctx.host, "resize it on its host (playbooks/server_action.yml does)")
            if "instance_uuid" in ctx.given and args["instance_uuid"] != instance.uuid:
                raise InvalidRequest("instance_uuid %s is not instance %s's (%s)."
                                     % (args["instance_uuid"], instance.name, instance.uuid))
            args["instance_uuid"] = instance.uuid
            migration = _resize.open_migration(conn, instance.uuid)
            last = _resize.last_migration(conn, instance.uuid)
        self._instance, self._migration = instance, migration
        if args["state"] == "resized":
            return self._prepare_resize(ctx, args, instance, migration)
        if migration is None and args.get("fault"):
            # the rollback of a resize that failed before it began (refused by nova-api or the scheduler, which
            # put everything back): nothing to roll back
            raise SkipModule({"changed": False, "msg": "instance %s has no resize to roll back" % instance.name})
        if migration is None:
            # nothing open: done already (an Ansible re-run), or never resized
            done = {"confirmed": _resize.CONFIRMED, "reverted": (_resize.REVERTED, _resize.FAILED)}[args["state"]]
            if last is not None and last.status in done and instance.task_state is None:
                raise SkipModule({"changed": False, "msg": "the last resize of instance %s is %s already"
                                  % (instance.name, last.status)})
            with ctx.db.tx() as conn:
                _resize.require_open(conn, instance, _ACTIONS[args["state"]].replace("_resize", ""))
        if args["state"] == "confirmed":
            return self._prepare_confirm(ctx, instance, migration)
        return self._prepare_revert(ctx, args, instance, migration)

    def _prepare_resize(self, ctx, args, instance, migration):
        if not args.get("flavor"):
            raise InvalidRequest("flavor (the new flavor's name or ID) is required when auth_token is given.")
        with ctx.db.tx() as conn:
            flavor = get_flavor(conn, args["flavor"])
            if migration is not None and migration.new_flavor_id != flavor.id:
                raise Conflict("Instance %s (%s) is being resized to another flavor: confirm or revert that resize "
                               "first." % (instance.name, instance.uuid))
            if migration is not None and instance.vm_state == instances.RESIZED:
                raise SkipModule({"changed": False, "msg": "instance %s is resized to %s already and waits for a "
                                  "confirm or a revert" % (instance.name, flavor.name)})
            if migration is None and instance.flavor_id == flavor.id and instance.task_state is None:
                raise SkipModule({"changed": False, "msg": "instance %s has flavor %s already"
                                  % (instance.name, flavor.name)})
            actions.root_disk_instance(conn, instance.uuid, ctx.auth, ctx.host, "resize")
            if migration is None:
                _resize.check_flavor(conn, instance, flavor.id)
        if ctx.check_mode:
            return instance
        cfg, _hosts = scheduling.operator_config(ctx.operator_setting)
        if migration is None:
            self._heartbeat(ctx)
            migration, instance_after, _selection = _resize.begin(ctx.db, instance, flavor, ctx.host, cfg,
                                                                  _placement.for_step(ctx))
            self.api_step(ctx, instance, instance_after, "resize")
            instance = instance_after
        elif migration.status == _resize.PRE_MIGRATING:
            # interrupted after nova-api saved it, maybe between the two claims: what is missing is done now
            self._heartbeat(ctx)
            _resize.claim_both(ctx.db, instance, migration, flavor, cfg, _placement.for_step(ctx))
        self._migration = migration
        with ctx.db.tx() as conn:
            return _resize.migrating(conn, instance, migration)

    def _heartbeat(self, ctx):
        """This host's heartbeat before the scheduler looks at it (as boot.yml's step 8 sends one): its libvirt
        answered the compute_node module just now, so ComputeFilter does not call it down. A host that does not
        answer sends none, and the scheduler says so."""
        res = self._execute_module(module_name="bootflow.cloud.compute_node", task_vars=ctx.task_vars,
                                   module_args={"uri": ctx.args["uri"], "instances_path": ctx.args["instances_path"]})
        if not res.get("failed"):
            _placement.heartbeat(ctx.db, ctx.host)

    def _prepare_confirm(self, ctx, instance, migration):
        with ctx.db.tx() as conn:
            actions.plan(instance, "confirm_resize")
            if ctx.check_mode or migration.status == _resize.CONFIRMING:
                return instance
            _resize.begin_confirm(conn, instance, migration)
        return instance

    def _prepare_revert(self, ctx, args, instance, migration):
        args["power_on"] = migration.old_vm_state == instances.ACTIVE
        rollback = instance.task_state in _ON_THE_WAY
        if not rollback:
            actions.plan(instance, "revert_resize")
        if ctx.check_mode:
            return instance
        with ctx.db.tx() as conn:
            moved = _resize.begin_revert(conn, instance, migration)
        if not rollback:
            self.api_step(ctx, instance, moved, "revert_resize")
        return moved

    def record(self, ctx, args, result, instance):
        state = args["state"]
        power = POWER_STATES.get(result.get("state"), "NOSTATE")
        if state == "resized":
            with ctx.db.tx() as conn:
                row = _resize.migrated(conn, instance, self._migration)
            return row.vm_state, row.task_state
        if state == "confirmed":
            return _resize.confirmed(ctx.db, instance, self._migration, power, _placement.for_step(ctx))
        return _resize.reverted(ctx.db, instance, self._migration, power, _placement.for_step(ctx),
                                fault=args.get("fault"))

    def step_action(self, args, instance):
        return _ACTIONS[args["state"]]
