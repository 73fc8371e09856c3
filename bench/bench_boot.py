#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): boot.yml against a bare libvirt-python floor and the community.libvirt peer.

Both boot the same guest image on the same test host, onto the same bridge and dnsmasq, and stop
the clock when the guest's MAC appears in dnsmasq's leases file:

  floor    one `ssh host python3 -` running a script that does only overlay + hosts line + SIGHUP +
           defineXML + create + poll the leases file (the least any tool must do)
  boot.yml ansible-playbook playbooks/boot.yml: token, nova-api, scheduler claim, conductor, image
           cache, port + DHCP, volume + attach, domain, wait for the lease, final state read
  peer     the community.libvirt playbook bench/peer/boot.yml (ansible 10.7.0 in a bench-only venv,
           build/bench-peer-venv, made on first use): the floor's steps as tasks, the same domain XML
  delete   ansible-playbook playbooks/delete.yml, beside the peer's bench/peer/delete.yml (destroy,
           undefine, rm overlay, remove the hosts line, SIGHUP)

Rounds are interleaved; medians, min/max, n and the ratios are printed, with `uptime` at the start
and the end. Per case also: when QEMU started (the qemu process's start time on the host, relative to
the case's start) and the number of 1 s stalls of ansible-core's run_command: the host's module
interpreter runs under `strace -f --seccomp-bpf -e trace=poll` (it stops only at poll(2)) and a stall
is its exact signature, a `poll([], 0, 1000)` (see docs/benchmarks.md).
usage: .venv/bin/python bench/bench_boot.py [--rounds 5] [--host 71] [--no-stall-count]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
PEER_DIR = os.path.join(REPO, "bench", "peer")
PEER_VENV = os.path.join(REPO, "build", "bench-peer-venv")
PEER_FROM = "ansible==10.7.0"      # the version scripts/setup.sh pins for awx.awx
HOST_PYTHON = "/usr/bin/python3"
# run_command's stall: select(1) on an empty selector. strace pads the result to a column and may split
# the line (<unfinished ...>) when another traced process runs meanwhile, so the call's start is counted
STALL = "poll([], 0, 1000"

DOMAIN_XML = """<domain type='qemu'><name>{name}</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{inst}/disk'/>
<target dev='vda' bus='virtio'/></disk><interface type='bridge'><source bridge='{bridge}'/><mac address='{mac}'/>
<model type='virtio'/></interface><serial type='file'><source path='{inst}/console.log'/></serial>
<memballoon model='none'/></devices></domain>"""

# The host's module interpreter, under strace while a case is timed: only poll(2) stops the tracee
# (seccomp-bpf, which needs -f). One trace file per module run, named after the case (the file "case"
# beside it). Untimed runs (bootstrap, warm-ups) go untraced: strace -f would wait for the dnsmasq
# that hypervisors.yml starts.
STRACE_PYTHON = """#!/bin/sh
d=$(dirname "$0")
case=$(cat "$d/case")
[ "$case" = untimed ] && exec %(python)s "$@"
exec strace -f -qq --seccomp-bpf -e trace=poll -e signal=none -o "$d/trace.$case.$$" %(python)s "$@"
""" % {"python": HOST_PYTHON}

# on the host: the MAC's hosts line (re)written at once and dnsmasq told (names used: dhcp_dir, mac, ip)
ADD_RESERVATION = r'''
with open(dhcp_dir + "/host") as f:
    lines = [l for l in f.read().splitlines() if mac not in l]
with open(dhcp_dir + "/host.tmp", "w") as f:
    f.write("\n".join(lines + ["%s,host-%s,%s" % (mac, ip.replace(".", "-"), ip)]) + "\n")
os.rename(dhcp_dir + "/host.tmp", dhcp_dir + "/host")
os.kill(int(open(dhcp_dir + "/pid").read()), signal.SIGHUP)
'''

# on the host: the MAC's hosts line removed, dnsmasq told (SIGHUP), its lease released and seen gone
# (names used: dhcp_dir, mac, ip, bridge; modules os, signal, subprocess, time)
RELEASE_RESERVATION = r'''
with open(dhcp_dir + "/host") as f:
    lines = [l for l in f.read().splitlines() if mac not in l]
with open(dhcp_dir + "/host", "w") as f:
    f.write("\n".join(lines) + ("\n" if lines else ""))
os.kill(int(open(dhcp_dir + "/pid").read()), signal.SIGHUP)
subprocess.run(["dhcp_release", bridge, ip, mac], check=False)
for _ in range(100):
    if mac not in open(dhcp_dir + "/leases").read():
        break
    time.sleep(0.05)
'''

FLOOR_SCRIPT = r'''
import json, os, signal, subprocess, sys, time
t0 = time.monotonic()
import libvirt
name, mac, ip, base, dhcp_dir, bridge, xml = sys.argv[1:8]
inst = "/var/lib/bootflow/bench/" + name
os.makedirs(inst, exist_ok=True)
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", inst + "/disk"], check=True)
''' + ADD_RESERVATION + r'''conn = libvirt.open("qemu:///system")
conn.defineXML(xml).create()
while time.monotonic() - t0 < 120:
    if mac in open(dhcp_dir + "/leases").read():
        print(json.dumps({"script_s": round(time.monotonic() - t0, 3)}))
        sys.exit(0)
    time.sleep(0.02)
sys.exit(1)
'''

FLOOR_CLEANUP = r'''
import os, shutil, signal, subprocess, sys, time
import libvirt
name, mac, ip, dhcp_dir, bridge = sys.argv[1:6]
conn = libvirt.open("qemu:///system")
try:
    dom = conn.lookupByName(name)
    if dom.isActive():
        dom.destroy()
    dom.undefine()
except libvirt.libvirtError:
    pass
shutil.rmtree("/var/lib/bootflow/bench/" + name, ignore_errors=True)
''' + RELEASE_RESERVATION


def peer_venv():
    """The peer's ansible in build/bench-peer-venv, made (once) by this script; returns its bin dir."""
    bindir = os.path.join(PEER_VENV, "bin")
    stamp = os.path.join(PEER_VENV, ".bootflow-peer-from")
    if not (os.path.exists(os.path.join(bindir, "ansible-playbook")) and _read(stamp) == PEER_FROM):
        print("installing the peer (%s) into %s ..." % (PEER_FROM, os.path.relpath(PEER_VENV, REPO)), flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", PEER_VENV], check=True)
        subprocess.run([os.path.join(bindir, "python"), "-m", "pip", "install", "-q", PEER_FROM], check=True)
        with open(stamp, "w") as f:
            f.write(PEER_FROM)
    return bindir


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def peer_versions(bindir):
    out = subprocess.run([os.path.join(bindir, "python"), "-c", "import ansible.release, json, importlib.metadata as m;"
                          "import ansible_collections.community.libvirt as c, os;"
                          "print(m.version('ansible'), ansible.release.__version__,"
                          " json.load(open(os.path.join(c.__path__[0], 'MANIFEST.json')))['collection_info']['version'])"],
                         check=True, stdout=subprocess.PIPE, text=True).stdout.split()
    return dict(zip(("ansible", "ansible-core", "community.libvirt"), out))


def boottime():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start(pid):
    """A process's start time in CLOCK_BOOTTIME seconds (10 ms resolution), from /proc/PID/stat."""
    stat = _read("/proc/%d/stat" % pid)
    return int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, host_n, state_dir, count_stalls):
        self.n = host_n
        self.host_dir = os.path.join(os.environ.get("BOOTFLOW_TESTHOSTS", "/var/tmp/bootflow-hosts"), "host%d" % host_n)
        self.python = HOST_PYTHON
        self.wrap = os.path.join(state_dir, "strace")
        if count_stalls:
            os.makedirs(self.wrap)
            self.python = os.path.join(self.wrap, "python3")
            with open(self.python, "w") as f:
                f.write(STRACE_PYTHON)
            os.chmod(self.python, 0o755)
        self.traced_runs = 0
        self.set_case("untimed")
        inv = subprocess.run([os.path.join(REPO, "tests", "hosts", "inventory.sh"), str(host_n)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        self.inventory = os.path.join(state_dir, "inventory.ini")
        with open(self.inventory, "w") as f:
            f.write(inv.replace("ansible_python_interpreter=%s " % HOST_PYTHON, "ansible_python_interpreter=%s " % self.python))
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=os.path.join(state_dir, "state"),
                        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])
        self.peer_bin = peer_venv()
        self.peer_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        self.peer_env.update(ANSIBLE_CONFIG=os.path.join(PEER_DIR, "ansible.cfg"),
                             PATH=self.peer_bin + os.pathsep + os.environ["PATH"])
        self.peer_vars = os.path.join(state_dir, "peer-vars.json")

    def set_case(self, case):
        """Name the trace files of the module runs that follow (the stall count's attribution)."""
        if os.path.isdir(self.wrap):
            with open(os.path.join(self.wrap, "case"), "w") as f:
                f.write(case)

    def stalls(self, case):
        """run_command's 1 s stalls (and the runs traced) of one case: None when not counted."""
        if not os.path.isdir(self.wrap):
            return None
        count = runs = 0
        for name in os.listdir(self.wrap):
            if name.startswith("trace.%s." % case):
                runs += 1
                with open(os.path.join(self.wrap, name)) as f:
                    count += f.read().count(STALL)
        self.traced_runs += runs
        return count

    def qemu_pids(self):
        """{domain name: qemu pid} of the host's running domains (libvirt's pid files)."""
        run = os.path.join(self.host_dir, "run", "qemu")
        pids = {}
        for name in os.listdir(run):
            pid = _read(os.path.join(run, name)) if name.endswith(".pid") else None
            if pid and pid.isdigit() and _read("/proc/%s/comm" % pid, "").startswith("qemu"):
                pids[name[:-4]] = int(pid)
        return pids

    def qemu_started(self, t0, before):
        """Seconds from t0 (CLOCK_BOOTTIME) to the start of the one qemu process not in `before`."""
        new = [pid for name, pid in self.qemu_pids().items() if before.get(name) != pid]
        if len(new) != 1:
            sys.exit("expected one new qemu process, found %s" % new)
        return process_start(new[0]) - t0

    def play(self, playbook, *args, peer=False):
        t0 = time.perf_counter()
        cmd = [os.path.join(self.peer_bin, "ansible-playbook") if peer else "ansible-playbook", "-i", self.inventory,
               os.path.join(PEER_DIR if peer else os.path.join(REPO, "playbooks"), playbook), *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.peer_env if peer else self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode:
            sys.exit("%s%s failed:\n%s" % ("peer " if peer else "", playbook, proc.stdout[-4000:]))
        return took

    def peer(self, playbook, name, mac, ip, base, dhcp_dir, bridge):
        inst = "/var/lib/bootflow/bench/" + name
        with open(self.peer_vars, "w") as f:
            json.dump({"peer_name": name, "peer_mac": mac, "peer_ip": ip, "peer_base": base, "peer_dhcp_dir": dhcp_dir,
                       "peer_xml": DOMAIN_XML.format(name=name, inst=inst, bridge=bridge, mac=mac)}, f)
        return self.play(playbook, "-e", "@" + self.peer_vars, peer=True)

    def ssh_python(self, script, *args):
        t0 = time.perf_counter()
        proc = subprocess.run([TESTHOST, "ssh", str(self.n), " ".join(map(shlex.quote, (self.python, "-") + args))],
                              input=script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode:
            sys.exit("floor script failed: %s %s" % (proc.stdout, proc.stderr))
        return took, proc.stdout

    def query(self, sql, *params):
        import sqlite3
        with sqlite3.connect(os.path.join(self.env["BOOTFLOW_STATE_DIR"], "bootflow.db")) as conn:
            return conn.execute(sql, params).fetchall()


def summary(label, values, base=None, unit="s"):
    med = statistics.median(values)
    ratio = "" if base is None else "  ratio %.2f (%+.2f s)" % (med / base, med - base)
    return "%-24s median %.2f %s  min %.2f  max %.2f  n=%d%s" % (
        label, med, unit, min(values), max(values), len(values), ratio)


def uptime():
    return subprocess.run(["uptime"], stdout=subprocess.PIPE, text=True, check=False).stdout.strip()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--host", type=int, default=71)
    parser.add_argument("--no-stall-count", dest="count_stalls", action="store_false",
                        help="run the host's modules without strace (no run_command stall count)")
    opts = parser.parse_args()
    print("start: " + uptime(), flush=True)
    work = tempfile.mkdtemp(prefix="bootflow-bench-")
    subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)
    subprocess.run([TESTHOST, "start", str(opts.host)], check=True, stdout=subprocess.DEVNULL)
    try:
        bench = Bench(opts.host, work, opts.count_stalls)
        versions = peer_versions(bench.peer_bin)
        bench.play("bootstrap.yml")
        bench.play("hypervisors.yml")
        # warm-up boot (untimed): fills the host's image cache, starts dnsmasq, warms SSH
        bench.play("boot.yml", "-e", "bootflow_instance_name=warmup")
        base_file = bench.query("SELECT id FROM images WHERE name='bootflow-guest'")[0][0]
        import hashlib
        base = "/var/lib/bootflow/instances/_base/" + hashlib.sha1(base_file.encode()).hexdigest()
        net_id, bridge = bench.query("SELECT id, bridge FROM networks WHERE name='private'")[0]
        dhcp_dir = "/var/lib/bootflow/dhcp/" + net_id
        # the peer's warm-up (untimed): its own SSH master connection, the host's page cache for its modules
        warm = ("bench-peer", "fa:16:3e:be:0d:ff", "10.99.0.200")
        bench.peer("boot.yml", *warm, base, dhcp_dir, bridge)
        bench.peer("delete.yml", *warm, base, dhcp_dir, bridge)
        bench.ssh_python(FLOOR_CLEANUP, *warm, dhcp_dir, bridge)
        times = {case: [] for case in ("floor", "peer", "boot.yml", "peer delete", "delete.yml")}
        qemu = {case: [] for case in ("floor", "peer", "boot.yml")}
        stalls = {case: [] for case in times}

        def timed(case, round_, run, *args, **kwargs):
            bench.set_case("%s-%d" % (case.replace(" ", "_").replace(".yml", ""), round_))
            before, t0 = bench.qemu_pids(), boottime()
            took = run(*args, **kwargs)
            if isinstance(took, tuple):
                took = took[0]
            times[case].append(took)
            if case in qemu:
                qemu[case].append(bench.qemu_started(t0, before))
            stalls[case].append(bench.stalls("%s-%d" % (case.replace(" ", "_").replace(".yml", ""), round_)))
            bench.set_case("untimed")

        for i in range(opts.rounds):
            floor_args = ("bench-floor", "fa:16:3e:be:0c:%02x" % i, "10.99.0.%d" % (250 - i))
            timed("floor", i, bench.ssh_python, FLOOR_SCRIPT, *floor_args, base, dhcp_dir, bridge,
                  DOMAIN_XML.format(name=floor_args[0], inst="/var/lib/bootflow/bench/bench-floor", bridge=bridge,
                                    mac=floor_args[1]))
            bench.ssh_python(FLOOR_CLEANUP, *floor_args, dhcp_dir, bridge)
            peer_args = ("bench-peer", "fa:16:3e:be:0d:%02x" % i, "10.99.0.%d" % (240 - i))
            timed("peer", i, bench.peer, "boot.yml", *peer_args, base, dhcp_dir, bridge)
            timed("peer delete", i, bench.peer, "delete.yml", *peer_args, base, dhcp_dir, bridge)
            bench.ssh_python(FLOOR_CLEANUP, *peer_args, dhcp_dir, bridge)      # the lease (untimed)
            timed("boot.yml", i, bench.play, "boot.yml", "-e", "bootflow_instance_name=bench-%d" % i)
            timed("delete.yml", i, bench.play, "delete.yml", "-e", "bootflow_instance_name=bench-%d" % i)
            print("round %d: %s | QEMU at %s | stalls %s" % (
                i + 1, ", ".join("%s %.2f s" % (c, v[-1]) for c, v in times.items()),
                ", ".join("%s %.2f s" % (c, v[-1]) for c, v in qemu.items()),
                ", ".join("%s %s" % (c, v[-1]) for c, v in stalls.items())), flush=True)
        bench.play("delete.yml", "-e", "bootflow_instance_name=warmup")
        med = {case: statistics.median(v) for case, v in times.items()}
        print("peer: " + ", ".join("%s %s" % kv for kv in versions.items()))
        print(summary("floor", times["floor"]))
        print(summary("peer", times["peer"], med["floor"]))
        print(summary("boot.yml", times["boot.yml"], med["floor"]))
        print(summary("boot.yml / peer", times["boot.yml"], med["peer"]))
        print(summary("peer delete", times["peer delete"]))
        print(summary("delete.yml / peer del", times["delete.yml"], med["peer delete"]))
        for case, values in qemu.items():
            print(summary("QEMU started, " + case, values))
        for case, values in qemu.items():
            print(summary("QEMU start to end, " + case, [t - q for t, q in zip(times[case], values)]))
        for case, values in stalls.items():
            if None not in values:
                print("%-22s 1 s run_command stalls: %d in %d runs (runs with one or more: %d)" % (
                    case, sum(values), len(values), sum(1 for v in values if v)))
        if bench.traced_runs:
            print("(%d module runs traced on the host: %s)" % (bench.traced_runs, bench.wrap))
        print("end: " + uptime())
        print(json.dumps({"times": times, "qemu_started": qemu, "stalls": stalls, "peer": versions}))
    finally:
        subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
