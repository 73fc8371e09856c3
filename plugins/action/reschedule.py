# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.reschedule (nova-conductor after a failed build: re-claim an alternate or ERROR)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import reschedule as _reschedule
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduling as _scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        # the scheduler's operator settings, to filter the alternates again with (no task option sets them)
        cfg, hosts = _scheduling.operator_config(ctx.operator_setting)
        # max_attempts: what the instance was scheduled with; a task's value is an operator override (admin)
        max_attempts = ctx.operator_setting("max_attempts", "scheduler") if "max_attempts" in ctx.given else None
        failure = _faults.failure_of(a["failure"], task=a["failed_task"], action=a["failed_action"], host=a["host"])
        return _reschedule.failed_build(ctx.db, ctx.auth, a["instance"], a["host"], failure,
                                        alternates=a["alternates"], max_attempts=max_attempts,
                                        cleanup_error=a["cleanup_error"], check_mode=ctx.check_mode,
                                        started=ctx.started, placement=lambda: _placement.for_step(ctx), cfg=cfg, hosts=hosts)
