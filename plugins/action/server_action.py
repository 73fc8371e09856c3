# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.server_action: nova-api's part of a power action (policy, state check,
task_state) on the controller, the libvirt driver's on the instance's host, the compute manager's result."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_SOFT_REBOOT_TIMEOUT,
    POWER_STATES,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, check_instance_option


class ActionModule(HostStep):
    SEED_STEPS = "day-2"
    SERVICE = "nova-compute"
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + ("instance",))

    _plan = None
    _instance = None
    _after = None

    def policy_rule(self, args):
        return actions.ACTIONS[args["action"]].rule

    def step(self, ctx):
        self._plan = self._instance = self._after = None
        check_instance_option(ctx.args, "the libvirt domain (name)")
        result = super().step(ctx)
        if self._instance is not None:
            self._describe(ctx, result)
        return result

    def _describe(self, ctx, result):
        """The instance's vm_state and status after the call (as they would be, in check mode), and --diff."""
        before = self._instance
        if self._plan is None:
            vm_state = before.vm_state
        elif ctx.check_mode:
            vm_state = self._plan.done
        else:
            vm_state = self._after[0]
        result.update(uuid=before.uuid, vm_state=vm_state, status=instances.api_status(vm_state, None))
        if ctx.diff:
            result["diff"] = dict(
                before="vm_state: %s\npower_state: %s\n" % (before.vm_state, before.power_state),
                after="vm_state: %s\npower_state: %s\n" % (vm_state, result.get("power_state") or before.power_state))

    def prepare(self, ctx, args):
        args["shutdown_timeout"] = ctx.operator_seconds("shutdown_timeout", "compute", default=DEFAULT_SHUTDOWN_TIMEOUT)
        args["soft_reboot_timeout"] = ctx.operator_seconds("soft_reboot_timeout", "compute", "wait_soft_reboot_seconds",
                                                           default=DEFAULT_SOFT_REBOOT_TIMEOUT)
        with ctx.db.tx() as conn:
            instance = instances.get_instance(conn, args["instance"], ctx.auth)
            instances.require_on_host(instance, ctx.host, "run the action on its host (playbooks/server_action.yml does)")
            if "name" in ctx.given and args["name"] != layout.domain_name(instance.uuid):
                raise InvalidRequest("name %s is not the domain of instance %s (%s)."
                                     % (args["name"], instance.name, layout.domain_name(instance.uuid)))
            args["name"] = layout.domain_name(instance.uuid)
            self._plan = actions.plan(instance, args["action"])
            self._instance = instance
            if self._plan is None or ctx.check_mode or actions.resumes(instance, self._plan):
                return instance
            moved = actions.begin(conn, instance, self._plan)
        self.api_step(ctx, instance, moved, args["action"])
        return moved

    def record(self, ctx, args, result, instance):
        with ctx.db.tx() as conn:
            if self._plan is None:
                if result.get("power_state") and result["power_state"] != instance.power_state:
                    instances.set_power_state(conn, instance.uuid, result["power_state"])
                return None
            self._after = actions.finish(conn, instance, self._plan, result.get("power_state") or instance.power_state)
            return self._after

    def failed(self, ctx, args, instance, exc):
        if self._plan is None:
            return
        host_state = (exc.details.get("module_result") or {}).get("state")
        with ctx.db.tx() as conn:
            actions.revert(conn, instance, self._plan, POWER_STATES.get(host_state))

    def step_action(self, args, instance):
        return args["action"]
