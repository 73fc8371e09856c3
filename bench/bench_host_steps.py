#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the host-side steps of one boot, old code against new, same run.

Two parts, both on one test host (default 172, purged at the end):

  commands  on the host's python3: ansible-core's AnsibleModule.run_command against the host steps'
            runner (module_utils/host/command.run_argv), interleaved, on the commands the steps run
            (ip, qemu-img); per-call medians, the calls of 1 s or more, and how often run_command
            polled an empty set of pipes (its 1 s stall); also under `strace -f`, which widens the
            window between run_command's two exit checks
  imports   each host module's import on the host's Python (/usr/bin/python3 -X importtime, no
            bytecode written, as from AnsiballZ's zip), the collection at --base against this checkout
  lease     the lease wait's detection delay: a lease line is written on the host at a random moment
            while the controller watches over one multiplexed SSH connection (as Ansible's), the old
            way (one `date; grep` exec per 0.2 s) against lease_watch_cmd (the host looks every 50 ms);
            delay = when the controller saw it - when the host wrote it (one clock: same kernel)
  boots     boot.yml then delete.yml with the collection as it is at --base (git archive, default
            main) and as it is in this checkout, alternately, after one warm-up boot of each;
            each task's wall time (bench/callbacks/bench_task_times.py) and the whole playbook's

usage: .venv/bin/python bench/bench_host_steps.py [--rounds 5] [--host 172] [--base main] [--skip-commands] [--skip-imports] [--skip-lease] [--skip-boots]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
HOST_TASKS = ("glance-api", "neutron DHCP agent", "cinder-volume", "cinder-api: attach", "config drive",
              "nova-compute -> libvirt", "Wait | each guest", "Undo |")

COMMANDS_SCRIPT = r'''
import json, sys, time
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import ansible.module_utils.basic as basic
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
import selectors
empty_waits = []


class CountingPollSelector(selectors.PollSelector):
    """run_command's selector: counts the selects on no file at all (each one sleeps its timeout)."""
    def select(self, timeout=None):
        if not self.get_map():
            empty_waits.append(timeout)
        return super().select(timeout)


basic.selectors.PollSelector = CountingPollSelector
m = object.__new__(basic.AnsibleModule)   # run_command needs only these attributes
m._shell, m.run_command_environ_update, m._debug, m.no_log_values = None, {}, False, set()
rounds, calls = int(sys.argv[3]), int(sys.argv[4])
cmds = {"ip link": ["ip", "-o", "link", "show", "dev", "lo"], "qemu-img": ["qemu-img", "--version"]}
runners = {"run_command": m.run_command, "run_argv": run_argv}
out = {}
for r in range(rounds):
    order = list(runners) if r % 2 == 0 else list(runners)[::-1]
    for cname, argv in cmds.items():
        for rname in order:
            for _ in range(calls):
                t = time.perf_counter()
                rc, so, se = runners[rname](argv)
                d = time.perf_counter() - t
                assert rc == 0, (argv, rc, se)
                out.setdefault("%s|%s" % (cname, rname), []).append(d)
out["empty_waits"] = empty_waits
print(json.dumps(out))
'''


def ssh(host_n, command, data=None):
    proc = subprocess.run([TESTHOST, "ssh", str(host_n), command], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode:
        sys.exit("on bfhv%d: %s failed: %s" % (host_n, command, proc.stderr[-2000:]))
    return proc.stdout


def load():
    return "load %s" % " ".join(open("/proc/loadavg").read().split()[:3])


def bench_commands(host_n, rounds, calls, work):
    """run_command against run_argv on the host, plain and under strace -f."""
    libs = os.path.join(work, "hostlibs")
    os.makedirs(libs, exist_ok=True)
    import ansible
    os.symlink(os.path.dirname(ansible.__file__), os.path.join(libs, "ansible"))
    script = os.path.join(work, "commands.py")
    with open(script, "w") as f:
        f.write(COMMANDS_SCRIPT)
    coll = os.path.join(REPO, "build", "collections")
    print("== commands on bfhv%d (%d rounds x %d calls each), %s" % (host_n, rounds, calls, load()))
    for label, prefix in (("plain", ""), ("strace -f", "strace -f -o /dev/null ")):
        res = json.loads(ssh(host_n, "%s/usr/bin/python3 %s %s %s %d %d" % (prefix, script, libs, coll, rounds, calls)))
        print("  %-10s run_command's selects on an empty set (the 1 s stall): %d" % (label, len(res.pop("empty_waits"))))
        for key in sorted(res):
            cmd, runner = key.split("|")
            v = res[key]
            print("  %-10s %-9s %-12s median %6.1f ms  p90 %6.1f ms  max %6.0f ms  calls >= 1 s: %d of %d"
                  % (label, cmd, runner, 1000 * statistics.median(v), 1000 * sorted(v)[int(0.9 * len(v))],
                     1000 * max(v), sum(d >= 1.0 for d in v), len(v)))


OLD_LEASE_POLL = 0.2


def bench_lease(host_n, rounds, work):
    sys.path.insert(0, os.path.join(REPO, "build", "collections"))
    from ansible_collections.bootflow.cloud.plugins.module_utils.host import dhcp
    import random
    root = os.environ.get("BOOTFLOW_TESTHOSTS", "/var/tmp/bootflow-hosts")
    base = ["ssh", "-i", os.path.join(root, "id_ed25519"), "-o", "UserKnownHostsFile=" + os.path.join(root, "known_hosts"),
            "-o", "StrictHostKeyChecking=accept-new", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", "ControlPath=" + os.path.join(work, "cp-%C"),
            "root@10.98.%d.2" % host_n]
    leases, mac = "/var/lib/bootflow/bench-leases", "fa:16:3e:be:0c:ff"
    line = "0 %s 10.99.0.9 * *" % mac

    def run(cmd):
        return subprocess.run(base + [cmd], stdout=subprocess.PIPE, text=True, check=True).stdout

    def old_way():
        cmd = "date +%%s && { grep -F -i -e ' %s ' %s 2>/dev/null || true; }" % (mac, leases)
        n = 0
        while True:
            n += 1
            lines = run(cmd).splitlines()
            if dhcp.find_active_lease("\n".join(lines[1:]), mac, now=int(lines[0])):
                return n
            time.sleep(OLD_LEASE_POLL)

    def new_way():
        seen, n = None, 0
        while True:
            n += 1
            now, seen = dhcp.parse_lease_watch(run(dhcp.lease_watch_cmd(mac, leases, seen, 5.0)))
            if dhcp.find_active_lease(seen, mac, now=now):
                return n

    run("true")
    delays, execs = collections.defaultdict(list), collections.defaultdict(list)
    print("== lease wait on bfhv%d, %d rounds, %s" % (host_n, rounds, load()))
    for r in range(rounds * 4):
        for label, way in ((("old", old_way), ("new", new_way)) if r % 2 == 0 else (("new", new_way), ("old", old_way))):
            run("rm -f %s" % leases)
            writer = subprocess.Popen(base + ["sleep %.3f; echo '%s' > %s; date +%%s.%%N" % (random.uniform(0.5, 1.5), line, leases)],
                                      stdout=subprocess.PIPE, text=True)
            execs[label].append(way())
            seen_at = time.time()
            wrote_at = float(writer.communicate()[0])
            delays[label].append(seen_at - wrote_at)
    run("rm -f %s" % leases)
    for label in ("old", "new"):
        v = delays[label]
        print("  %-4s detection delay median %5.0f ms  max %5.0f ms  SSH execs per wait median %d  n=%d"
              % (label, 1000 * statistics.median(v), 1000 * max(v), statistics.median(execs[label]), len(v)))


HOST_MODULES = ("image_fetch", "dhcp_lease", "volume", "volume_attach", "config_drive", "domain")


def _importtime(stderr):
    """{module: self µs} of a -X importtime report."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "self [us]" not in line:
            self_us, _cum, name = line[len("import time:"):].split("|")
            out[name.strip()] = int(self_us)
    return out


def bench_imports(base_coll, rounds, work):
    """Each host module's import: the total, and the self time of what only the base imports (the saving
    itself, less exposed to the machine's load than the totals)."""
    import ansible
    libs = os.path.join(work, "importlibs")
    os.makedirs(libs, exist_ok=True)
    if not os.path.exists(os.path.join(libs, "ansible")):
        os.symlink(os.path.dirname(ansible.__file__), os.path.join(libs, "ansible"))
    colls = {"base": base_coll, "new": os.path.join(REPO, "build", "collections")}
    runs = collections.defaultdict(list)
    print("== imports on /usr/bin/python3, %d rounds, %s" % (rounds, load()))
    for r in range(rounds):
        for label in (("base", "new") if r % 2 == 0 else ("new", "base")):
            for mod in HOST_MODULES:
                proc = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-c",
                                       "import ansible_collections.bootflow.cloud.plugins.modules." + mod],
                                      env=dict(os.environ, PYTHONPATH=libs + os.pathsep + colls[label], PYTHONDONTWRITEBYTECODE="1"),
                                      stderr=subprocess.PIPE, text=True, check=True)
                runs[label, mod].append(_importtime(proc.stderr))
    for mod in HOST_MODULES:
        total = {k: statistics.median(sum(t.values()) / 1000.0 for t in runs[k, mod]) for k in ("base", "new")}
        gone = set(runs["base", mod][0]) - set(runs["new", mod][0])
        saved = statistics.median(sum(t.get(n, 0) for n in gone) / 1000.0 for t in runs["base", mod])
        print("  %-14s total base %6.1f ms  new %6.1f ms | no longer imported: %3d modules, %5.1f ms (%s)"
              % (mod, total["base"], total["new"], len(gone), saved, ", ".join(sorted(gone))[:80]))


def export_base(base, work):
    """The collection as it is at git ref ``base``, in a collections path of its own."""
    dest = os.path.join(work, "base", "ansible_collections", "bootflow", "cloud")
    if os.path.isdir(dest):
        return dest
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", REPO, "archive", base], stdout=subprocess.PIPE, check=True).stdout
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
    return dest


class Player:
    def __init__(self, label, root, coll, host_n, work):
        self.label, self.root = label, root
        inv = subprocess.run([os.path.join(REPO, "tests", "hosts", "inventory.sh"), str(host_n)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        self.inventory = os.path.join(work, "inventory.ini")
        with open(self.inventory, "w") as f:
            f.write(inv)
        self.times = os.path.join(work, "times-%s.jsonl" % label)
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=os.path.join(work, "state"),
                        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=coll,
                        ANSIBLE_CALLBACK_PLUGINS=os.path.join(REPO, "bench", "callbacks"),
                        ANSIBLE_CALLBACKS_ENABLED="bootflow.cloud.request_flow,bench_task_times",
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])

    def play(self, playbook, *args, record=False):
        env = dict(self.env, BENCH_TASK_TIMES=self.times if record else os.devnull)
        t0 = time.perf_counter()
        proc = subprocess.run(["ansible-playbook", "-i", self.inventory, os.path.join(self.root, "playbooks", playbook), *args],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode:
            sys.exit("%s (%s) failed:\n%s" % (playbook, self.label, proc.stdout[-4000:]))
        return took

    def task_times(self):
        """{task name: [seconds per run]} of the host-side tasks."""
        out = collections.defaultdict(list)
        with open(self.times) as f:
            for line in f:
                row = json.loads(line)
                if any(k in row["task"] for k in HOST_TASKS):
                    out[row["task"]].append(row["s"])
        return out


def bench_boots(host_n, rounds, base, work):
    old_root = export_base(base, work)
    old = Player("base", old_root, os.path.join(work, "base"), host_n, work)
    new = Player("new", REPO, os.path.join(REPO, "build", "collections"), host_n, work)
    new.play("bootstrap.yml")
    new.play("hypervisors.yml")
    for p in (old, new):   # warm-up (untimed): the image cache, dnsmasq, SSH
        p.play("boot.yml", "-e", "bootflow_instance_name=warmup")
        p.play("delete.yml", "-e", "bootflow_instance_name=warmup")
    walls = collections.defaultdict(list)
    print("== boots on bfhv%d: %s (%s) against this checkout, %d rounds, %s" % (host_n, base, old.root, rounds, load()))
    for r in range(rounds):
        for p in ((old, new) if r % 2 == 0 else (new, old)):
            name = "bench-%s-%d" % (p.label, r)
            walls[p.label, "boot.yml"].append(p.play("boot.yml", "-e", "bootflow_instance_name=" + name, record=True))
            walls[p.label, "delete.yml"].append(p.play("delete.yml", "-e", "bootflow_instance_name=" + name, record=True))
        done = "  ".join("%s %s %.2f s" % (k[0], k[1], v[-1]) for k, v in sorted(walls.items()))
        print("round %d: %s  (%s)" % (r + 1, done, load()), flush=True)
    old_t, new_t = old.task_times(), new.task_times()
    print("%-100s %9s %9s %7s" % ("task (median s)", base, "new", "new-old"))
    for task in old_t:
        if task in new_t:
            a, b = statistics.median(old_t[task]), statistics.median(new_t[task])
            print("%-100s %9.3f %9.3f %+7.3f" % (task[:100], a, b, b - a))
    for what in ("boot.yml", "delete.yml"):
        a, b = statistics.median(walls["base", what]), statistics.median(walls["new", what])
        print("%-100s %9.3f %9.3f %+7.3f  (ratio %.3f)" % ("whole " + what, a, b, b - a, b / a))
    print(json.dumps({"walls": {"%s %s" % k: v for k, v in walls.items()}, "base": old_t, "new": new_t}))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40, help="calls per command and runner in a round")
    parser.add_argument("--host", type=int, default=172)
    parser.add_argument("--base", default="main", help="the git ref of the old code")
    parser.add_argument("--skip-boots", action="store_true")
    parser.add_argument("--skip-commands", action="store_true")
    parser.add_argument("--skip-lease", action="store_true")
    parser.add_argument("--skip-imports", action="store_true")
    opts = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bootflow-bench-host-")
    os.chmod(work, 0o755)
    subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)
    subprocess.run([TESTHOST, "start", str(opts.host)], check=True, stdout=subprocess.DEVNULL)
    try:
        if not opts.skip_commands:
            bench_commands(opts.host, opts.rounds, opts.calls, work)
        if not opts.skip_imports:
            export_base(opts.base, work)
            bench_imports(os.path.join(work, "base"), opts.rounds * 2, work)
        if not opts.skip_lease:
            bench_lease(opts.host, opts.rounds, work)
        if not opts.skip_boots:
            bench_boots(opts.host, opts.rounds, opts.base, work)
    finally:
        subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
