# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: request_flow
type: aggregate
short_description: Print the seed-style request-flow table of the instances a run touched
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Collects the C(bootflow_step) entry that every bootflow.cloud step returns and prints, at the end of
    the run, one table per instance - seed step(s), service, action, host, vm_state/task_state before and
    after, whether it changed anything, and milliseconds - in the order the steps ran.
  - The same rows are kept in the database; M(bootflow.cloud.instance_info) returns them as RV(bootflow.cloud.instance_info#module:instance.steps).
requirements:
  - enable with C(callbacks_enabled = bootflow.cloud.request_flow) in C(ansible.cfg)
options: {}
"""

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bootflow.cloud.request_flow"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._rows = []

    def _collect(self, result):
        res = result._result  # pylint: disable=protected-access
        for item in res.get("results") or [res]:
            if isinstance(item, dict) and isinstance(item.get("bootflow_step"), dict):
                self._rows.append(item["bootflow_step"])

    def v2_runner_on_ok(self, result):
        self._collect(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._collect(result)

    def v2_playbook_on_stats(self, stats):
        if not self._rows:
            return
        by_instance = {}
        for row in self._rows:
            by_instance.setdefault(row.get("instance") or "-", []).append(row)
        head = ("seed", "service", "action", "host", "from", "to", "changed", "ms")
        for name, rows in by_instance.items():
            table = [head] + [(r.get("seed_steps", ""), r.get("service", ""), r.get("action", ""), r.get("host") or "",
                               r.get("from", ""), r.get("to", ""), "yes" if r.get("changed") else "no",
                               str(r.get("ms", ""))) for r in rows]
            widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
            self._display.banner("REQUEST FLOW [%s]" % name)
            for i, line in enumerate(table):
                self._display.display("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
                if i == 0:
                    self._display.display("  ".join("-" * w for w in widths))
            total = sum(int(r.get("ms") or 0) for r in rows)
            self._display.display("%d steps, %d ms in bootflow steps" % (len(rows), total))
