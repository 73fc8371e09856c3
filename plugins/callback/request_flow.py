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
  - "A step of a task whose name starts with C(Undo |) (the compute role undoing a failed build, C(delete.yml) undoing a
    build) shows V(undo) in the seed column. A bootflow.cloud task that failed gets a row with V(FAILED) in the
    changed column, its seed step(s) and service taken from the task name (C(28 | nova-compute -> libvirt: ...))."
  - Every cell is printed with its control and format characters escaped (C(\n), C(\x9b), C(\u202e)...), so a
    name that reached the table cannot move the cursor, recolour the terminal or reorder the line.
requirements:
  - enable with C(callbacks_enabled = bootflow.cloud.request_flow) in C(ansible.cfg)
options: {}
"""

from ansible.plugins.callback import CallbackBase

from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import safe_text


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
        undo = result._task.get_name().startswith("Undo |")  # pylint: disable=protected-access
        for item in res.get("results") or [res]:
            if isinstance(item, dict) and isinstance(item.get("bootflow_step"), dict):
                row = item["bootflow_step"]
                self._rows.append(dict(row, seed_steps="undo") if undo else row)

    def _failed(self, result):
        """A failed bootflow step returns no bootflow_step: its row comes from the task itself."""
        task = result._task  # pylint: disable=protected-access
        action = task.resolved_action or task.action or ""
        if not action.startswith("bootflow.cloud.") or not self._rows:
            return
        name = task.get_name()
        seed, sep, rest = name.partition(" | ")
        service = rest.split(":", 1)[0].strip() if sep else ""
        self._rows.append({"instance": self._rows[-1].get("instance"), "seed_steps": seed if sep else "",
                           "service": service, "action": action.rsplit(".", 1)[-1],
                           "host": result._host.get_name(),  # pylint: disable=protected-access
                           "from": "", "to": "", "changed": "FAILED", "ms": ""})

    def v2_runner_on_ok(self, result):
        self._collect(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._collect(result)
        self._failed(result)

    def v2_playbook_on_stats(self, stats):
        if not self._rows:
            return
        by_instance = {}
        for row in self._rows:
            by_instance.setdefault(safe_text(row.get("instance") or "-"), []).append(row)
        head = ("seed", "service", "action", "host", "from", "to", "changed", "ms")
        for name, rows in by_instance.items():
            table = [head] + [tuple(safe_text(cell) for cell in (
                r.get("seed_steps", ""), r.get("service", ""), r.get("action", ""), r.get("host") or "",
                r.get("from", ""), r.get("to", ""),
                r["changed"] if r.get("changed") == "FAILED" else "yes" if r.get("changed") else "no",
                r.get("ms", ""))) for r in rows]
            widths = [max(len(str(line[i])) for line in table) for i in range(len(head))]
            self._display.banner("REQUEST FLOW [%s]" % name)
            for i, line in enumerate(table):
                self._display.display("  ".join(str(cell).ljust(widths[j]) for j, cell in enumerate(line)).rstrip())
                if i == 0:
                    self._display.display("  ".join("-" * w for w in widths))
            total = sum(int(r.get("ms") or 0) for r in rows)
            rows = [r for r in rows if r.get("changed") != "FAILED"]
            self._display.display("%d steps, %d ms in bootflow steps" % (len(rows), total))
