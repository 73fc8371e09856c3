# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.reschedule (nova-conductor after a failed build: re-claim an alternate or ERROR)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import reschedule as _reschedule
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        failure = _faults.failure_of(a["failure"], task=a["failed_task"], action=a["failed_action"], host=a["host"])
        return _reschedule.failed_build(ctx.db, ctx.auth, a["instance"], a["host"], failure,
                                        alternates=a["alternates"], max_attempts=a["max_attempts"],
                                        cleanup_error=a["cleanup_error"], check_mode=ctx.check_mode,
                                        started=ctx.started, placement=_placement.for_step(ctx))
