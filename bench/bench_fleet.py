#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): a fleet in one boot.yml run against single-instance runs, same run.

On three test hosts of its own (181-183 by default), with the image cached on every host first (one
untimed boot per host), each round runs, interleaved:

  fleet-1    boot.yml with a list of 1 instance
  fleet-5    boot.yml with a list of 5 instances
  fleet-10   boot.yml with a list of 10 instances
  singles-10 10 runs of boot.yml with -e bootflow_instance_name=..., one after the other

each followed by an untimed delete.yml of the same list. The clock is the wall time of the
ansible-playbook process(es); every guest holds its DHCP lease when boot.yml ends. Printed: medians,
the ratios fleet-10 / fleet-1 (target <= 2.5) and singles-10 / fleet-10 (target >= 4), and the peak
memory of the controller: the largest resident set of the ansible-playbook process tree (the main
process and its forks, sampled every 50 ms), and the main process's own peak (wait4's ru_maxrss).
usage: .venv/bin/python bench/bench_fleet.py [--rounds 2] [--hosts 181,182,183]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
QUOTA_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "quota.yml")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(pid):
    """Resident bytes of ``pid`` and all its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/statm" % p) as f:
                total += int(f.read().split()[1]) * PAGE
            for task in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, task)) as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return total


class Bench:
    def __init__(self, hosts, work):
        self.hosts = hosts
        inv = subprocess.run([os.path.join(REPO, "tests", "hosts", "inventory.sh"), *map(str, hosts)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        self.inventory = os.path.join(work, "inventory.ini")
        with open(self.inventory, "w") as f:
            f.write(inv)
        self.work = work
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=os.path.join(work, "state"),
                        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])

    def play(self, playbook, *args):
        """(seconds, peak tree RSS bytes, main process peak RSS bytes) of one ansible-playbook run."""
        path = playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)
        log = open(os.path.join(self.work, "last.log"), "w+")   # pylint: disable=consider-using-with
        t0 = time.perf_counter()
        proc = subprocess.Popen(["ansible-playbook", "-i", self.inventory, path, *args], cwd=REPO, env=self.env,
                                stdout=log, stderr=subprocess.STDOUT)
        peak = [0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(proc.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        took = time.perf_counter() - t0
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            log.seek(0)
            sys.exit("%s %s failed:\n%s" % (playbook, " ".join(args), log.read()[-4000:]))
        log.close()
        return took, peak[0], usage.ru_maxrss * 1024

    def request(self, names):
        path = os.path.join(self.work, "request.json")
        with open(path, "w") as f:
            json.dump({"bootflow_instances": [{"name": n} for n in names], "bootflow_volume_size_gb": 0}, f)
        return "@" + path


def summary(label, values, base=None):
    med = statistics.median(values)
    ratio = "" if base is None else "  x%.2f of fleet-1" % (med / base)
    return "%-11s median %6.1f s  min %6.1f  max %6.1f  n=%d%s" % (
        label, med, min(values), max(values), len(values), ratio)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hosts", default="181,182,183")
    opts = parser.parse_args()
    hosts = [int(h) for h in opts.hosts.split(",")]
    work = tempfile.mkdtemp(prefix="bootflow-bench-fleet-")
    for n in hosts:
        subprocess.run([TESTHOST, "purge", str(n)], check=False, stdout=subprocess.DEVNULL)
        subprocess.run([TESTHOST, "start", str(n)], check=True, stdout=subprocess.DEVNULL)
    bench = Bench(hosts, work)
    try:
        bench.play("bootstrap.yml")
        bench.play("hypervisors.yml")
        bench.play(QUOTA_PLAYBOOK)
        # warm-up: the image into every host's cache (untimed), one instance per host
        warm = ["warm-%d" % i for i in range(len(hosts))]
        bench.play("boot.yml", "-e", bench.request(warm))
        bench.play("delete.yml", "-e", bench.request(warm))
        times = {k: [] for k in ("fleet-1", "fleet-5", "fleet-10", "singles-10")}
        peaks = {k: [] for k in times}
        for rnd in range(opts.rounds):
            for size in (1, 5, 10):
                names = ["f%d-%d-%d" % (size, rnd, i) for i in range(size)]
                took, tree, main_rss = bench.play("boot.yml", "-e", bench.request(names))
                times["fleet-%d" % size].append(took)
                peaks["fleet-%d" % size].append((tree, main_rss))
                bench.play("delete.yml", "-e", bench.request(names))
                print("round %d fleet-%d: %.1f s, peak tree RSS %.0f MiB (main %.0f MiB)"
                      % (rnd + 1, size, took, tree / 2 ** 20, main_rss / 2 ** 20), flush=True)
            names = ["s-%d-%d" % (rnd, i) for i in range(10)]
            total, tree_peak, main_peak = 0.0, 0, 0
            for name in names:
                took, tree, main_rss = bench.play("boot.yml", "-e", "bootflow_instance_name=%s" % name,
                                                  "-e", "bootflow_volume_size_gb=0")
                total += took
                tree_peak, main_peak = max(tree_peak, tree), max(main_peak, main_rss)
            times["singles-10"].append(total)
            peaks["singles-10"].append((tree_peak, main_peak))
            bench.play("delete.yml", "-e", bench.request(names))
            print("round %d singles-10: %.1f s" % (rnd + 1, total), flush=True)
        base = statistics.median(times["fleet-1"])
        print()
        for key, values in times.items():
            print(summary(key, values, base))
            tree = max(p[0] for p in peaks[key])
            main_rss = max(p[1] for p in peaks[key])
            print("%-11s peak memory: process tree %.0f MiB, ansible-playbook main process %.0f MiB"
                  % ("", tree / 2 ** 20, main_rss / 2 ** 20))
        f10, s10 = statistics.median(times["fleet-10"]), statistics.median(times["singles-10"])
        print("\nfleet-10 / fleet-1   = %.2f  (target <= 2.5)" % (f10 / base))
        print("singles-10 / fleet-10 = %.2f  (target >= 4)" % (s10 / f10))
    finally:
        for n in hosts:
            subprocess.run([TESTHOST, "purge", str(n)], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
