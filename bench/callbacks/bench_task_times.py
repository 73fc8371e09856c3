# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bench-only callback: each task's wall time (from its start to the next task's start) appended as
one JSON line to the file named by BENCH_TASK_TIMES. Not part of the collection."""

from __future__ import annotations

import json
import os
import time

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: bench_task_times
type: aggregate
short_description: task wall times for bench/bench_host_steps.py
description: Appends one JSON line per task (name, seconds) to the file named by BENCH_TASK_TIMES.
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_task_times"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._current = None

    def _close(self):
        if self._current and os.environ.get("BENCH_TASK_TIMES"):
            name, started = self._current
            with open(os.environ["BENCH_TASK_TIMES"], "a") as f:
                f.write(json.dumps({"task": name, "s": round(time.monotonic() - started, 4)}) + "\n")
        self._current = None

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._close()
        self._current = (task.get_name(), time.monotonic())

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def v2_playbook_on_stats(self, stats):
        self._close()
