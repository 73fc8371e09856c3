#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the controller's share of boot.yml and delete.yml, this checkout against a base commit.

The base commit's collection (``git archive``, default ``main``) and this checkout's each get a test host and a
state dir of their own (the base's DB never sees the new code's writes), and run in interleaved rounds (the order
alternates every round). Each round, per collection:

  delete   ansible-playbook playbooks/delete.yml of the instance the round before booted
  boot     ansible-playbook playbooks/boot.yml -e bootflow_instance_name=... (right after that delete, on the
           same host: an instance replaced)
  steps    a playbook of N controller steps (bootflow.cloud.token state=validated) after the identity role:
           the cost of one controller task (fork, argument spec, database, token validation)

A callback (bench/callbacks/bench_task_times.py, enabled beside request_flow) times every task; printed are the
medians of: the whole run, Ansible's start-up (process start to the first task), the tasks that ran on the
controller (localhost), the token task, the task before it, the heartbeat, and for ``steps`` one step.
With --key-secret both run with BOOTFLOW_KEY_SECRET (the Fernet keys in the database, as under AWX).

usage: .venv/bin/python bench/bench_controller.py [--rounds 5] [--hosts 174 175] [--base main] [--steps 10]
                                                  [--key-secret]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")

STEPS_PLAYBOOK = r'''
- name: Bench | controller steps
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Keystone
      ansible.builtin.import_role:
        name: bootflow.cloud.identity
    - name: "Bench | one controller step"
      bootflow.cloud.token:
        state: validated
        auth_token: "{{ bootflow_token }}"
      loop: "{{ range(%d) | list }}"
      no_log: true
'''


class Case:
    """One collection (base or this checkout) with its own test host and state dir."""

    def __init__(self, label, collections, work, env, host):
        self.label = label
        self.collections = collections
        self.work = work
        self.host = host
        inventory = os.path.join(work, "inventory-%s.ini" % label)
        with open(inventory, "w") as f:
            f.write(subprocess.run([os.path.join(REPO, "tests", "hosts", "inventory.sh"), str(host)], check=True,
                                   stdout=subprocess.PIPE, text=True).stdout)
        self.env = dict(env, ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_INVENTORY=inventory,
                        BOOTFLOW_STATE_DIR=os.path.join(work, "state-" + label))
        self.samples = {}

    def play(self, playbook, *args, record=None):
        """Run ``playbook`` (a name: the collection's own playbooks/<name>, or a path); ``record``: keep its figures."""
        if os.sep not in playbook:
            playbook = os.path.join(self.collections, "ansible_collections", "bootflow", "cloud", "playbooks", playbook)
        out = os.path.join(self.work, "times-%s.json" % self.label)
        env = dict(self.env, BENCH_TIMES_OUT=out)
        t0 = time.time()
        proc = subprocess.run(["ansible-playbook", playbook, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        wall = time.time() - t0
        if proc.returncode:
            sys.exit("%s (%s) failed:\n%s" % (playbook, self.label, proc.stdout[-4000:]))
        if record:
            with open(out) as f:
                self.add(record, wall, t0, json.load(f))
        return wall

    def add(self, what, wall, t0, times):
        tasks = times["tasks"]
        ctl = [t for t in tasks if t["hosts"] == ["localhost"] or not t["hosts"]]
        token_at = next((i for i, t in enumerate(tasks) if t["action"] == "bootflow.cloud.token"), None)
        figures = {
            "wall": wall,
            "start-up": times["first"] - t0,
            "controller tasks": sum(t["s"] for t in ctl),
            "n controller tasks": len(ctl),
            "token task": tasks[token_at]["s"] if token_at is not None else None,
            "task before the token": tasks[token_at - 1]["s"] if token_at else None,
            "heartbeat": next((t["s"] for t in tasks if "heartbeat" in t["name"]), None),
        }
        step = [t for t in tasks if t["name"].endswith("one controller step")]
        if step:
            figures["one step (loop item)"] = step[0]["s"] / STEPS
        for key, value in figures.items():
            if value is not None:
                self.samples.setdefault((what, key), []).append(value)


STEPS = 10


def collection_of(ref, work):
    """The collection at git ref ``ref``, unpacked into a collections path of its own."""
    path = os.path.join(work, "base")
    dest = os.path.join(path, "ansible_collections", "bootflow", "cloud")
    os.makedirs(dest)
    archive = subprocess.run(["git", "archive", ref], cwd=REPO, check=True, stdout=subprocess.PIPE).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return path


def main():
    global STEPS  # pylint: disable=global-statement
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hosts", type=int, nargs=2, default=[174, 175], help="test hosts of the base and the new")
    parser.add_argument("--base", default="main", help="the git ref to compare with (default: main)")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--key-secret", action="store_true", help="run with BOOTFLOW_KEY_SECRET (keys in the DB)")
    opts = parser.parse_args()
    STEPS = opts.steps
    work = tempfile.mkdtemp(prefix="bootflow-bench-ctl-")
    steps_playbook = os.path.join(work, "steps.yml")
    with open(steps_playbook, "w") as f:
        f.write(STEPS_PLAYBOOK % STEPS)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "bench", "callbacks"),
               ANSIBLE_CALLBACKS_ENABLED="bootflow.cloud.request_flow,bench_task_times",
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])
    if opts.key_secret:
        env.update(BOOTFLOW_KEY_SECRET=secrets.token_urlsafe(32), BOOTFLOW_ADMIN_PASSWORD=secrets.token_urlsafe(16))
    for var in ("BOOTFLOW_DB_URL", "BOOTFLOW_AUTH_TOKEN", "BOOTFLOW_AUTH_BACKEND", "BOOTFLOW_STATE_DIR"):
        env.pop(var, None)
    cases = [Case("base", collection_of(opts.base, work), work, env, opts.hosts[0]),
             Case("new", os.path.join(REPO, "build", "collections"), work, env, opts.hosts[1])]
    loads = []
    try:
        for case in cases:  # set-up and warm-up (untimed): image cache, dnsmasq, SSH, byte code
            subprocess.run([TESTHOST, "purge", str(case.host)], check=False, stdout=subprocess.DEVNULL)
            subprocess.run([TESTHOST, "start", str(case.host)], check=True, stdout=subprocess.DEVNULL)
            case.play("bootstrap.yml")
            case.play("hypervisors.yml")
            case.play("boot.yml", "-e", "bootflow_instance_name=bench-%s-warmup" % case.label)
            case.play(steps_playbook)
        previous = "warmup"
        for i in range(opts.rounds):
            loads.append(os.getloadavg()[0])
            for case in cases if i % 2 == 0 else reversed(cases):
                case.play("delete.yml", "-e", "bootflow_instance_name=bench-%s-%s" % (case.label, previous), record="delete")
                case.play("boot.yml", "-e", "bootflow_instance_name=bench-%s-%d" % (case.label, i), record="boot")
                case.play(steps_playbook, record="steps")
            previous = str(i)
            print("round %d: %s  (load %.2f)" % (i + 1, ", ".join(
                "%s boot %.2f s delete %.2f s" % (c.label, c.samples[("boot", "wall")][-1], c.samples[("delete", "wall")][-1])
                for c in cases), loads[-1]), flush=True)
        loads.append(os.getloadavg()[0])
        for case in cases:
            case.play("delete.yml", "-e", "bootflow_instance_name=bench-%s-%s" % (case.label, previous))
    finally:
        for case in cases:
            subprocess.run([TESTHOST, "purge", str(case.host)], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    base, new = cases
    print("\nload average (1 min) during the rounds: %s; rounds: %d; key repository: %s" % (
        " ".join("%.2f" % x for x in loads), opts.rounds, "database (BOOTFLOW_KEY_SECRET)" if opts.key_secret else "files"))
    print("| run | figure | base (%s) | new | new - base |" % opts.base)
    print("|---|---|---:|---:|---:|")
    for key in base.samples:
        if key not in new.samples:
            continue
        b, n = statistics.median(base.samples[key]), statistics.median(new.samples[key])
        unit = "" if key[1].startswith("n ") else " s"
        print("| %s | %s | %.3f%s | %.3f%s | %+.3f%s |" % (key[0], key[1], b, unit, n, unit, n - b, unit))
    print(json.dumps({c.label: {"%s/%s" % k: v for k, v in c.samples.items()} for c in cases}))


if __name__ == "__main__":
    main()
