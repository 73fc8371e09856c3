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
  - "With O(diagram_dir) set, it also writes one sequence diagram per instance into that directory: a
    self-contained SVG file (no fonts, scripts or styles from elsewhere) named C(<instance name>-<uuid>.svg)
    (characters other than letters, digits, C(.), C(_) and C(-) become C(_)). The services are lifelines; each
    step is an arrow with its seed step(s), its start (seconds after the first step) and duration, and the
    vm_state/task_state it moved the instance to. A step the run recorded in the instance's step log is drawn
    as the database has it; a failed step is red, a reschedule orange, an undo grey and dashed, and steps the
    log does not keep (the token, the conductor's spec, the final read) are dotted. Every arrow carries its data
    as C(data-*) attributes (C(data-seed), C(data-vm-state), C(data-task-state), C(data-seq): the step log's
    row id). A file of the same name is replaced. A check-mode run writes none. A diagram that cannot be
    written is a warning, never a failed run."
requirements:
  - enable with C(callbacks_enabled = bootflow.cloud.request_flow) in C(ansible.cfg)
  - "O(diagram_dir): the step log is read from the controller's database (C(BOOTFLOW_DB_URL), else the state dir's
    C(bootflow.db)), as the action plugins read it"
options:
  diagram_dir:
    description:
      - Directory to write each instance's sequence diagram (SVG) into, created (mode 0755 less the umask) when
        missing. Unset or empty, no diagram is written. Files are written only inside it, mode 0644.
    type: path
    env:
      - name: BOOTFLOW_DIAGRAM_DIR
    ini:
      - section: callback_request_flow
        key: diagram_dir
    version_added: 0.1.0
"""

import os
import tempfile
import time

from ansible import context
from ansible.plugins.callback import CallbackBase

from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import safe_text
from ansible_collections.bootflow.cloud.plugins.plugin_utils import diagram


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bootflow.cloud.request_flow"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._rows = []
        self._started = {}   # (host, task uuid) -> when the task started on the host (epoch seconds)
        self._token = None   # the run's keystone token step, drawn at the top of each diagram
        self._since = None   # when the run started: the step log's rows from then on are this run's

    def _collect(self, result):
        res = result._result  # pylint: disable=protected-access
        undo = _task_name(result._task).startswith("Undo |")  # pylint: disable=protected-access
        target = result._host.get_name()  # pylint: disable=protected-access
        for item in res.get("results") or [res]:
            if not isinstance(item, dict) or not isinstance(item.get("bootflow_step"), dict):
                continue
            # a step that moved the instance twice (nova-api's task_state, then the host's result) lists both
            steps = item.get("bootflow_steps") if isinstance(item.get("bootflow_steps"), list) else [item["bootflow_step"]]
            for step in steps:
                row = dict(step, _end=time.time(), _target=target)
                self._rows.append(dict(row, seed_steps="undo", undo=True) if undo else row)

    def _failed(self, result):
        """A failed bootflow step returns no bootflow_step: its row comes from the task itself, for the instance
        the same host was working on."""
        task = result._task  # pylint: disable=protected-access
        action = task.resolved_action or task.action or ""
        if not action.startswith("bootflow.cloud.") or not self._rows:
            return
        target = result._host.get_name()  # pylint: disable=protected-access
        last = next((r for r in reversed(self._rows) if r.get("_target") == target), None)
        # the table names the run's last instance when this host had none yet; a diagram only the host's own
        uuid = last.get("uuid") if last else None
        last = last or self._rows[-1]
        seed, sep, rest = _task_name(task).partition(" | ")
        service = rest.split(":", 1)[0].strip() if sep else ""
        now = time.time()
        started = self._started.get((target, task._uuid))  # pylint: disable=protected-access
        self._rows.append({"instance": last.get("instance"), "uuid": uuid, "seed_steps": seed if sep else "",
                           "service": service, "action": action.rsplit(".", 1)[-1], "host": target,
                           "from": "", "to": "", "changed": "FAILED", "ms": "",
                           "_ms": int((now - started) * 1000) if started else None, "_end": now, "_target": target})

    def v2_playbook_on_start(self, playbook):
        if self._since is None:
            self._since = time.time()

    def v2_runner_on_start(self, host, task):
        self._started[(host.get_name(), task._uuid)] = time.time()  # pylint: disable=protected-access

    def v2_runner_on_ok(self, result):
        task = result._task  # pylint: disable=protected-access
        if (task.resolved_action or task.action) == "bootflow.cloud.token" and self._token is None:
            started = self._started.get((result._host.get_name(), task._uuid))  # pylint: disable=protected-access
            now = time.time()
            ms = int((now - started) * 1000) if started else None
            self._token = {"seed_steps": "1-2", "service": "keystone", "action": "token", "host": "controller",
                           "from": "", "to": "", "changed": False, "ms": ms, "_end": now}
        self._collect(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._collect(result)
        self._failed(result)

    def _diagrams(self, directory):
        """Write each instance's diagram into ``directory``; returns the paths written."""
        by_uuid = {}
        for row in self._rows:
            if row.get("uuid"):
                by_uuid.setdefault(row["uuid"], []).append(row)
        if not by_uuid:
            return []
        os.makedirs(directory, mode=0o755, exist_ok=True)
        real = os.path.realpath(directory)
        logs = {}
        if any(r.get("recorded") for r in self._rows):
            try:
                logs = _step_logs(list(by_uuid))
            except Exception as exc:  # pylint: disable=broad-except
                self._display.warning("request_flow: the step log could not be read (%s); the diagrams show the "
                                      "steps as the run saw them" % safe_text(exc))
        written = []
        for uuid, rows in by_uuid.items():
            rows = [dict(r, ms=r["_ms"]) if r.get("changed") == "FAILED" else r for r in rows]
            arrows = diagram.merge(([self._token] if self._token else []) + rows, logs.get(uuid, []), self._since)
            name = rows[0].get("instance") or ""
            path = os.path.join(real, diagram.file_name(name, uuid))
            if os.path.dirname(path) != real:   # file_name never holds a separator: a guard, not a rule
                raise ValueError("diagram file %r is outside %s" % (path, real))
            _write(path, diagram.render(name, uuid, arrows))
            written.append(path)
        return written

    def v2_playbook_on_stats(self, stats):
        if not self._rows:
            return
        # set_options fills the options when ansible loads the callback; one made by hand has none
        directory = self._plugin_options.get("diagram_dir")
        if directory and context.CLIARGS.get("check"):
            self._display.display("request flow diagram: none in check mode (nothing happened to draw)")
        elif directory:
            try:
                for path in self._diagrams(directory):
                    self._display.display("request flow diagram: %s" % safe_text(path))
            except Exception as exc:  # pylint: disable=broad-except
                self._display.warning("request_flow: no diagram written to %s: %s"
                                      % (safe_text(directory), safe_text(exc)))
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


def _task_name(task):
    """The task's own name: get_name() puts a role's name in front (``bootflow.cloud.compute : 28 | ...``)."""
    return task.name or task.get_name()


def _step_logs(uuids):
    """{uuid: [instance_steps rows as dicts, in order]} from the controller's database."""
    # imported here: a run without diagrams needs no database driver in the callback
    import sqlalchemy as sa  # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db  # pylint: disable=import-outside-toplevel

    database = _db.open_db(migrate=False)
    try:
        steps = _db.table("instance_steps")
        with database.tx() as conn:
            rows = conn.execute(sa.select(steps).where(steps.c.instance_uuid.in_(uuids)).order_by(steps.c.id)).mappings()
            out = {}
            for row in rows:
                out.setdefault(row["instance_uuid"], []).append(dict(row))
            return out
    finally:
        database.dispose()


def _write(path, text):
    """``text`` into ``path`` (0644), replacing it whole: a temporary file in the same directory, renamed."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".diagram-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
