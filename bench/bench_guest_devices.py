#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): what each of the guest's devices adds to its boot, QEMU start -> DHCP lease.

The same test guest boots on one test host with bare libvirt-python (like bench_boot.py's floor), one
device set per case, cases interleaved round by round. Inside the host a 20 ms watcher stamps, from
the domain's start (``create()`` returned: QEMU runs), the first console line of each GUEST-* kind
and the guest's MAC in dnsmasq's leases file.

  floor        the root disk (virtio) and the NIC only
  cd-probe     + an IDE CD-ROM with an ISO that is NOT labelled cidata (the probe, nothing read)
  cd-iso       + the config drive as ISO 9660 on an IDE CD-ROM (hdd): what boot.yml attached so far
  vfat-disk    + the config drive as vfat on a virtio disk (Nova's config_drive_format=vfat)
  volume       + an empty 1 GiB qcow2 data volume on virtio (vdb)
  vol+cd-iso   volume and the ISO CD-ROM
  vol+vfat     volume and the vfat disk

Each phase is printed in wall seconds and in QEMU's CPU seconds (the guest's work under TCG, which a
busy machine stretches less than the wall clock; waits such as a device probe's timeouts show in wall
time only).

usage: .venv/bin/python bench/bench_guest_devices.py [--rounds 5] [--host 176] [--cases floor,cd-iso,...]
       [--json all.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

import bench_boot   # bench/, the script's own directory: the in-host DHCP reservation and its release

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
CASES = ("floor", "cd-probe", "cd-iso", "vfat-disk", "volume", "vol+cd-iso", "vol+vfat")
KINDS = ("GUEST-INIT", "GUEST-BLOCK", "GUEST-HOSTNAME", "GUEST-SSH-KEYS", "GUEST-DHCP-LEASE")

# One boot on the host: make the devices, define + start, watch console and leases, tear down.
GUEST_SCRIPT = r'''
import json, os, shutil, signal, subprocess, sys, time
import libvirt
case, mac, ip, base, dhcp_dir, bridge = sys.argv[1:7]
name = "bench-dev"
inst = "/var/lib/bootflow/bench/" + name
shutil.rmtree(inst, ignore_errors=True)
os.makedirs(inst + "/files")
run = lambda *a: subprocess.run(list(a), check=True, stdout=subprocess.DEVNULL)
run("qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", inst + "/disk")
files = {"meta-data": "instance-id: 3f0c7a6e-0000-4000-8000-000000000001\nlocal-hostname: bench-dev\n",
         "user-data": "#cloud-config\n{}\n",
         "network-config": "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"%s\"\n    dhcp4: true\n" % mac}
paths = []
for fname, text in sorted(files.items()):
    with open(inst + "/files/" + fname, "w") as f:
        f.write(text)
    paths.append(inst + "/files/" + fname)
disks = ["<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s/disk'/>"
         "<target dev='vda' bus='virtio'/></disk>" % inst]
if case.startswith("vol"):
    run("qemu-img", "create", "-q", "-f", "qcow2", inst + "/vol", "1G")
    disks.append("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s/vol'/>"
                 "<target dev='vdb' bus='virtio'/></disk>" % inst)
if case in ("cd-probe", "cd-iso", "vol+cd-iso"):
    label = "other" if case == "cd-probe" else "cidata"
    run("genisoimage", "-output", inst + "/disk.config", "-volid", label, "-joliet", "-rock", "-quiet",
        "-input-charset", "utf-8", *paths)
    disks.append("<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='%s/disk.config'/>"
                 "<target dev='hdd' bus='ide'/><readonly/></disk>" % inst)
if "vfat" in case:
    run("mkfs.vfat", "-C", "-n", "CIDATA", inst + "/disk.config", "1024")
    run("mcopy", "-i", inst + "/disk.config", *paths, "::/")
    dev = "vdc" if case.startswith("vol") else "vdb"
    disks.append("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='%s/disk.config'/>"
                 "<target dev='%s' bus='virtio'/><readonly/></disk>" % (inst, dev))
''' + bench_boot.ADD_RESERVATION + r'''console = inst + "/console.log"
xml = """<domain type='qemu'><name>%s</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>
<devices>%s<interface type='bridge'><source bridge='%s'/><mac address='%s'/>
<model type='virtio'/></interface><serial type='file'><source path='%s'/></serial>
<memballoon model='none'/></devices></domain>""" % (name, "".join(disks), bridge, mac, console)
conn = libvirt.open("qemu:///system")
dom = conn.defineXML(xml)
dom.create()
t0 = time.monotonic()
qemu_pid = int(open("/run/libvirt/qemu/%s.pid" % name).read())
tick = os.sysconf("SC_CLK_TCK")


def cpu_s():
    """QEMU's CPU time so far (user + system): the guest's work, less sensitive to a busy machine than wall time."""
    fields = open("/proc/%d/stat" % qemu_pid).read().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / tick, 3)


cpu = {}
seen, lines_out = {}, {}
kinds = ('GUEST-INIT', 'GUEST-BLOCK', 'GUEST-HOSTNAME', 'GUEST-SSH-KEYS', 'GUEST-DHCP-LEASE')
lease = None
while time.monotonic() - t0 < 120:
    now = time.monotonic() - t0
    try:
        text = open(console, errors="replace").read()
    except OSError:
        text = ""
    for line in text.splitlines():
        k = line.split(":", 1)[0]
        if k in kinds and k not in seen:
            seen[k] = round(now, 3)
            cpu[k] = cpu_s()
            lines_out[k] = line.strip()
    if lease is None and mac in open(dhcp_dir + "/leases").read():
        lease = round(now, 3)
        cpu["lease"] = cpu_s()
    if lease is not None and "GUEST-DHCP-LEASE" in seen:
        break
    time.sleep(0.02)
time.sleep(1.5)   # the guest's 1 s block poll reports late disks too
text = open(console, errors="replace").read()
dom.destroy()
dom.undefine()
shutil.rmtree(inst, ignore_errors=True)
''' + bench_boot.RELEASE_RESERVATION + r'''print(json.dumps({"lease": lease, "seen": seen, "cpu": cpu, "lines": lines_out,
                  "console": [l for l in text.splitlines() if l.startswith("GUEST-")]}))
'''


def phases(out, key):
    """The boot's phases from ``out[key]`` (seen: wall s; cpu: QEMU's CPU s): firmware + kernel to the init,
    the init's drivers (to the first GUEST-BLOCK), the config drive (to GUEST-SSH-KEYS), DHCP (to the lease)."""
    t = out[key]
    lease = out["lease"] if key == "seen" else t.get("lease")
    marks = [0.0, t.get("GUEST-INIT"), t.get("GUEST-BLOCK"), t.get("GUEST-SSH-KEYS"), lease]
    if None in marks:
        return None
    return [b - a for a, b in zip(marks, marks[1:])] + [lease]


def report(cases, results, rounds):
    base = None
    for key, what in (("seen", "wall seconds"), ("cpu", "QEMU CPU seconds")):
        print("\n%s from the domain's start, medians of %d rounds; delta: total against %s" % (what, rounds, cases[0]))
        print("| case | to init | drivers | config drive | DHCP | total | delta |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for c in cases:
            rows = [p for p in (phases(o, key) for o in results[c]) if p]
            med = [statistics.median(col) for col in zip(*rows)]
            if c == cases[0]:
                base = med[-1]
            print("| %s | %s | %.2f | %+.2f |" % (c, " | ".join("%.2f" % v for v in med[:-1]), med[-1], med[-1] - base))


def sh(*argv, **kw):
    return subprocess.run(list(argv), check=True, stdout=subprocess.PIPE, text=True, **kw).stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--host", type=int, default=176)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--json", help="write every boot's figures to this file")
    opts = parser.parse_args()
    cases = opts.cases.split(",")
    for c in cases:
        if c not in CASES:
            sys.exit("unknown case %s (known: %s)" % (c, ", ".join(CASES)))
    work = tempfile.mkdtemp(prefix="bootflow-bench-dev-")
    subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)
    subprocess.run([TESTHOST, "start", str(opts.host)], check=True, stdout=subprocess.DEVNULL)
    inventory = os.path.join(work, "inventory.ini")
    with open(inventory, "w") as f:
        f.write(sh(os.path.join(REPO, "tests", "hosts", "inventory.sh"), str(opts.host)))
    env = dict(os.environ, BOOTFLOW_STATE_DIR=os.path.join(work, "state"), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"])

    def play(playbook, *args):
        proc = subprocess.run(["ansible-playbook", "-i", inventory, os.path.join(REPO, "playbooks", playbook), *args],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode:
            sys.exit("%s failed:\n%s" % (playbook, proc.stdout[-4000:]))

    def query(sql):
        import sqlite3
        with sqlite3.connect(os.path.join(env["BOOTFLOW_STATE_DIR"], "bootflow.db")) as conn:
            return conn.execute(sql).fetchall()

    try:
        # the network, dnsmasq and the host's image cache, as boot.yml leaves them (one boot, deleted again)
        play("bootstrap.yml")
        play("hypervisors.yml")
        play("boot.yml", "-e", "bootflow_instance_name=warmup")
        play("delete.yml", "-e", "bootflow_instance_name=warmup")
        image_id = query("SELECT id FROM images WHERE name='bootflow-guest'")[0][0]
        base = "/var/lib/bootflow/instances/_base/" + hashlib.sha1(image_id.encode()).hexdigest()
        net_id, bridge = query("SELECT id, bridge FROM networks WHERE name='private'")[0]
        dhcp_dir = "/var/lib/bootflow/dhcp/" + net_id
        results = {c: [] for c in cases}
        script = GUEST_SCRIPT
        for r in range(opts.rounds):
            order = cases[r % len(cases):] + cases[:r % len(cases)]   # rotate: no case always first
            for i, case in enumerate(order):
                mac, ip = "fa:16:3e:be:0d:%02x" % (r * 16 + i), "10.99.0.%d" % (200 + i)
                proc = subprocess.run([TESTHOST, "ssh", str(opts.host),
                                       "/usr/bin/python3 - %s %s %s %s %s %s" % (case, mac, ip, base, dhcp_dir, bridge)],
                                      input=script, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
                if proc.returncode:
                    sys.exit("boot of %s failed: %s %s" % (case, proc.stdout, proc.stderr))
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                if out["lease"] is None:
                    sys.exit("%s: no lease within 120 s: %s" % (case, out))
                if ("iso" in case or "vfat" in case) and not out["lines"].get("GUEST-HOSTNAME", "").endswith("bench-dev"):
                    sys.exit("%s: the guest did not read its config drive: %s" % (case, out["console"]))
                results[case].append(out)
            load = os.getloadavg()
            print("round %d (load %.2f %.2f %.2f): %s" % (r + 1, *load, ", ".join(
                "%s %.2f" % (c, results[c][-1]["lease"]) for c in cases)), flush=True)
        print("\nuptime: %s" % sh("uptime").strip())
        report(cases, results, opts.rounds)
        with open(opts.json or os.devnull, "w") as f:
            json.dump(results, f)
    finally:
        subprocess.run([TESTHOST, "purge", str(opts.host)], check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
