# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench-only callback: each task's wall time, from its start to the next task's (or play's) start.
BENCH_TASK_TIMES names a file that gets one JSON line per task ({"task", "s"}, appended as the run goes);
BENCH_TIMES_OUT a file that gets, at the end, {"first": the first task's start, "end", "tasks": [{"name",
"action", "hosts", "s"}]}. Used by bench/bench_host_steps.py and bench/bench_controller.py; not part of the
collection."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_task_times
type: aggregate
short_description: task wall times for the benchmarks under bench/
description: Writes each task's wall time to the files named by BENCH_TASK_TIMES and BENCH_TIMES_OUT.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None   # (name, action, hosts that answered, time.time() at its start)
        self._tasks, self._first = [], None

    def _close(self):
        if self._current:
            name, action, hosts, started = self._current
            seconds = time.time() - started
            self._tasks.append({"name": name, "action": action, "hosts": sorted(hosts), "s": seconds})
            if os.environ.get("BENCH_TASK_TIMES"):
                with open(os.environ["BENCH_TASK_TIMES"], "a") as f:
                    f.write(json.dumps({"task": name, "s": round(seconds, 4)}) + "\n")
        self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        now = time.time()
        self._first = self._first or now
        self._current = (task.get_name(), task.resolved_action or task.action, set(), now)

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_play_start(self, play):
        self._close()

    def _host(self, result):
        if self._current:
            self._current[2].add(result._host.get_name())

    v2_runner_on_ok = v2_runner_on_failed = v2_runner_on_skipped = v2_runner_on_unreachable = _host

    def v2_playbook_on_stats(self, stats):
        self._close()
        if os.environ.get("BENCH_TIMES_OUT"):
            with open(os.environ["BENCH_TIMES_OUT"], "w") as f:
                json.dump({"first": self._first, "end": time.time(), "tasks": self._tasks}, f)
