#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): the whole boot.yml flow against a bare libvirt-python floor, same run.

Both boot the same guest image on the same test host, onto the same bridge and dnsmasq, and stop
the clock when the guest's MAC appears in dnsmasq's leases file:

  floor    one `ssh host python3 -` running a script that does only overlay + hosts line + SIGHUP +
           defineXML + create + poll the leases file (the least any tool must do)
  boot.yml ansible-playbook playbooks/boot.yml: token, nova-api, scheduler claim, conductor, image
           cache, port + DHCP, volume + attach, domain, wait for the lease, final state read
  delete   ansible-playbook playbooks/delete.yml (timed separately)

Rounds are interleaved; medians, min/max and the ratio boot.yml / floor are printed.
usage: .venv/bin/python bench/bench_boot.py [--rounds 5] [--host 71]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")

FLOOR_SCRIPT = r'''
import json, os, signal, subprocess, sys, time
t0 = time.monotonic()
import libvirt
name, mac, ip, base, dhcp_dir, bridge = sys.argv[1:7]
inst = "/var/lib/bootflow/bench/" + name
os.makedirs(inst, exist_ok=True)
subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", inst + "/disk"], check=True)
with open(dhcp_dir + "/host") as f:
    lines = [l for l in f.read().splitlines() if mac not in l]
with open(dhcp_dir + "/host.tmp", "w") as f:
    f.write("\n".join(lines + ["%s,host-%s,%s" % (mac, ip.replace(".", "-"), ip)]) + "\n")
os.rename(dhcp_dir + "/host.tmp", dhcp_dir + "/host")
os.kill(int(open(dhcp_dir + "/pid").read()), signal.SIGHUP)
xml = """<domain type='qemu'><name>%s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s/disk'/>
<target dev='vda' bus='virtio'/></disk><interface type='bridge'><source bridge='%s'/><mac address='%s'/>
<model type='virtio'/></interface><serial type='file'><source path='%s/console.log'/></serial>
<memballoon model='none'/></devices></domain>""" % (name, inst, bridge, mac, inst)
conn = libvirt.open("qemu:///system")
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


class Bench:
    def __init__(self, host_n, state_dir):
        self.n = host_n
        inv = subprocess.run([os.path.join(REPO, "tests", "hosts", "inventory.sh"), str(host_n)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        self.inventory = os.path.join(state_dir, "inventory.ini")
        with open(self.inventory, "w") as f:
            f.write(inv)
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=os.path.join(state_dir, "state"),
                        ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])

    def play(self, playbook, *args):
        t0 = time.perf_counter()
        proc = subprocess.run(["ansible-playbook", "-i", self.inventory, os.path.join(REPO, "playbooks", playbook), *args],
                              cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode:
            sys.exit("%s failed:\n%s" % (playbook, proc.stdout[-4000:]))
        return took

    def ssh_python(self, script, *args):
        t0 = time.perf_counter()
        proc = subprocess.run([TESTHOST, "ssh", str(self.n), "/usr/bin/python3 - " + " ".join(args)], input=script,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
        took = time.perf_counter() - t0
        if proc.returncode:
            sys.exit("floor script failed: %s %s" % (proc.stdout, proc.stderr))
        return took, proc.stdout

    def query(self, sql, *params):
        import sqlite3
        with sqlite3.connect(os.path.join(self.env["BOOTFLOW_STATE_DIR"], "bootflow.db")) as conn:
            return conn.execute(sql, params).fetchall()


def summary(label, values, base=None):
    med = statistics.median(values)
    ratio = "" if base is None else "  ratio %.2f (+%.2f s)" % (med / base, med - base)
    return "%-10s median %.2f s  min %.2f  max %.2f  n=%d%s" % (label, med, min(values), max(values), len(values), ratio)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--host", type=int, default=71)
    opts = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bootflow-bench-")
    subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)
    subprocess.run([TESTHOST, "start", str(opts.host)], check=True, stdout=subprocess.DEVNULL)
    bench = Bench(opts.host, work)
    try:
        bench.play("bootstrap.yml")
        bench.play("hypervisors.yml")
        # warm-up boot (untimed): fills the host's image cache, starts dnsmasq, warms SSH
        bench.play("boot.yml", "-e", "bootflow_instance_name=warmup")
        base_file = bench.query("SELECT id FROM images WHERE name='bootflow-guest'")[0][0]
        import hashlib
        base = "/var/lib/bootflow/instances/_base/" + hashlib.sha1(base_file.encode()).hexdigest()
        net_id, bridge = bench.query("SELECT id, bridge FROM networks WHERE name='private'")[0]
        dhcp_dir = "/var/lib/bootflow/dhcp/" + net_id
        floor, boot, delete = [], [], []
        for i in range(opts.rounds):
            args = ("bench-floor", "fa:16:3e:be:0c:%02x" % i, "10.99.0.%d" % (250 - i))
            took, _out = bench.ssh_python(FLOOR_SCRIPT, *args[:3], base, dhcp_dir, bridge)
            floor.append(took)
            bench.ssh_python(FLOOR_CLEANUP, *args, dhcp_dir, bridge)
            boot.append(bench.play("boot.yml", "-e", "bootflow_instance_name=bench-%d" % i))
            delete.append(bench.play("delete.yml", "-e", "bootflow_instance_name=bench-%d" % i))
            print("round %d: floor %.2f s, boot.yml %.2f s, delete.yml %.2f s" % (i + 1, floor[-1], boot[-1], delete[-1]),
                  flush=True)
        bench.play("delete.yml", "-e", "bootflow_instance_name=warmup")
        base_med = statistics.median(floor)
        print(summary("floor", floor))
        print(summary("boot.yml", boot, base_med))
        print(summary("delete.yml", delete))
        print(json.dumps({"floor": floor, "boot": boot, "delete": delete}))
    finally:
        subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
