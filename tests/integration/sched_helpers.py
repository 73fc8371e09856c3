# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the multi-host integration tests (test_scheduling, test_scheduling_race, test_server_groups) share:
their controller (``Cloud``: its own state dir, SQLite or PostgreSQL, optionally a real Placement), the
inventory of their hosts with capacity overrides, and reading results and hosts.

Each test file has its own test hosts (so the files can run at the same time, in different pytest-xdist
workers); every helper here takes the host numbers it works on.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import sqlalchemy as sa

from conftest import INVENTORY_SH, REPO, TESTHOST, run_playbook

RESERVED_MB = 512
SCHEDULE_TASK = "8-12 | nova-scheduler: filter, weigh and claim a host"
SCHED_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "scheduling.yml")


def hostname(n):
    return "bfhv%d" % n


def write_inventory(path, hosts, guest_mb, host_vars=None):
    """tests/hosts/inventory.sh for ``hosts``, each with its bootflow_memory_mb override (and more vars)."""
    text = subprocess.run([INVENTORY_SH, *map(str, hosts)], check=True, stdout=subprocess.PIPE, text=True).stdout
    out = []
    for line in text.splitlines():
        m = re.match(r"^bfhv(\d+) ", line)
        if m:
            line += " bootflow_memory_mb=%d" % (RESERVED_MB + guest_mb[int(m.group(1))])
            if (host_vars or {}).get(int(m.group(1))):
                line += " " + host_vars[int(m.group(1))]
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


def ssh(n, command):
    proc = subprocess.run([TESTHOST, "ssh", str(n), command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, "ssh %s %r: %s %s" % (hostname(n), command, proc.stdout, proc.stderr)
    return proc.stdout


def host_contents(n):
    """What boots leave on a host: domains, pool volumes, instance dirs, DHCP reservations."""
    out = ssh(n, "virsh -c qemu:///system list --all --name | sort; echo ---;"
                 "ls -1 /var/lib/bootflow/volumes 2>/dev/null | sort; echo ---;"
                 "ls -1 /var/lib/bootflow/instances 2>/dev/null | grep -v -e '^_base$' -e '^locks$' | sort; echo ---;"
                 "cat /var/lib/bootflow/dhcp/*/host 2>/dev/null | sort")
    parts = [[x for x in part.strip().splitlines() if x] for part in out.split("---")]
    return dict(zip(("domains", "volumes", "instances", "dhcp_hosts"), parts))


def running_domains(n):
    return sorted(ssh(n, "virsh -c qemu:///system list --state-running --name").split())


EMPTY = {"domains": [], "volumes": [], "instances": [], "dhcp_hosts": []}


class Cloud:
    """One controller: its own state dir and database (SQLite file, or a PostgreSQL database by URL)."""

    def __init__(self, base, db_url=None, placement=None):
        self.base = base
        self.state_dir = base / "state"
        self.db_url = db_url
        self.placement = placement
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=str(self.state_dir), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json")
        self.env.pop("BOOTFLOW_DB_URL", None)
        if db_url:
            self.env["BOOTFLOW_DB_URL"] = db_url   # _db.resolve_db_url honours it in every action plugin
        for name in ("BOOTFLOW_PLACEMENT_BACKEND", "BOOTFLOW_PLACEMENT_URL"):
            self.env.pop(name, None)
        if placement is not None:
            # every step's placement_backend / placement_url default (compute_node, schedule, delete)
            self.env.update(BOOTFLOW_PLACEMENT_BACKEND="placement", BOOTFLOW_PLACEMENT_URL=placement.url)
        url = db_url or "sqlite:///%s" % (self.state_dir / "bootflow.db")
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)

    def cmd(self, playbook, inventory, *args):
        path = playbook if os.path.isabs(playbook) else os.path.join(REPO, "playbooks", playbook)
        return ["ansible-playbook", "-i", str(inventory), path, *args]

    def play(self, playbook, inventory, *args, check=True):
        res = run_playbook(self.cmd(playbook, inventory, *args), self.env)
        if check and res.rc != 0:
            raise AssertionError("%s failed (rc=%d):\n%s\n[...]\n%s" % (
                playbook, res.rc, "\n".join(fatal_lines(res.out)), res.out[-6000:]))
        return res

    def query(self, sql, **params):
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]  # pylint: disable=protected-access

    def query_exec(self, sql, **params):
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params)

    def capacity(self):
        """hostname -> (guest memory MB, used MB, allocation count), from compute_nodes + allocations."""
        rows = self.query("SELECT n.hostname, n.memory_mb, n.reserved_host_memory_mb, n.ram_allocation_ratio, "
                          "COALESCE(SUM(a.memory_mb), 0) AS used, COUNT(a.id) AS n FROM compute_nodes n "
                          "LEFT JOIN allocations a ON a.compute_node_id = n.id "
                          "GROUP BY n.hostname, n.memory_mb, n.reserved_host_memory_mb, n.ram_allocation_ratio")
        return {r["hostname"]: ((r["memory_mb"] - r["reserved_host_memory_mb"]) * r["ram_allocation_ratio"],
                                int(r["used"]), int(r["n"])) for r in rows}

    def close(self):
        self.engine.dispose()


def task_result(out, task):
    """(status, result dict) of the task named ``task`` in ``ansible-playbook -v`` output."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("TASK [") and task in line:
            for nxt in lines[i + 1:]:
                m = re.match(r"^(ok|changed|fatal): \[localhost\](?:: FAILED!)? => (\{.*\})\s*$", nxt)
                if m:
                    return m.group(1), json.loads(m.group(2))
                if nxt.startswith("TASK [") or nxt.startswith("PLAY "):
                    break
    raise AssertionError("no result of task %r in:\n%s" % (task, out[-4000:]))


def fatal_lines(out):
    """Why a run failed, short: ansible's '[ERROR]: Task failed: ...', 'fatal: [...]' and 'failed: [...]' lines."""
    found = [line[:500] for line in out.splitlines() if line.startswith(("[ERROR]:", "fatal: [", "failed: ["))]
    return found or [out[-1500:]]


def fresh_hosts(hosts):
    """Test ``hosts``, purged and started again (in parallel): nothing of an earlier test on them."""
    purge(hosts)
    starts = [subprocess.Popen([TESTHOST, "start", str(n)]) for n in hosts]
    assert [p.wait(180) for p in starts] == [0] * len(hosts)
    for n in hosts:
        assert host_contents(n) == EMPTY, hostname(n)


def purge(hosts):
    for n in hosts:
        subprocess.run([TESTHOST, "purge", str(n)], check=False, timeout=120)


def run_parallel(cloud, commands, logdir, label, timeout):
    """Start every command at once (one ansible-playbook process each); returns [(rc, output)]."""
    procs = []
    for i, cmd in enumerate(commands):
        log = open(logdir / ("%s-%02d.log" % (label, i)), "w+")  # pylint: disable=consider-using-with
        procs.append((subprocess.Popen(cmd, cwd=REPO, env=cloud.env, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True), log))
    deadline = time.monotonic() + timeout
    out = []
    for proc, log in procs:
        try:
            proc.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)    # our own child's process group
            proc.wait(30)
        log.seek(0)
        out.append((proc.returncode, log.read()))
        log.close()
    return out


# --- faults injected into a test host's libvirt -------------------------------------------------------
# /etc/libvirt/hooks/qemu (per host: /etc/libvirt is the host's own) runs at every domain start. It fails
# the ``prepare`` phase while the flag file ``fail-start`` exists (libvirt then refuses to start the domain:
# "Hook script execution failed"), and on ``started`` kills the network's dnsmasq once while
# ``kill-dnsmasq`` exists.
TESTHOSTS_ROOT = os.environ.get("BOOTFLOW_TESTHOSTS", "/var/tmp/bootflow-hosts")

FAULT_HOOK = r"""#!/bin/sh
# test_faults.py, test_fleet.py, test_server_actions.py: faults injected into this test host's libvirt, switched by
# flag files
cat >/dev/null   # the domain XML
case "$2" in
prepare)
  if [ -e /etc/libvirt/hooks/fail-start-once ]; then
    rm -f /etc/libvirt/hooks/fail-start-once
    echo "injected fault: this host refuses to start QEMU this once ($(hostname))" >&2
    exit 1
  fi
  if [ -e /etc/libvirt/hooks/fail-start ]; then
    echo "injected fault: this host refuses to start QEMU ($(hostname))" >&2
    exit 1
  fi ;;
started)
  if [ -e /etc/libvirt/hooks/kill-dnsmasq ]; then
    rm -f /etc/libvirt/hooks/kill-dnsmasq
    for f in /var/lib/bootflow/dhcp/*/pid; do
      pid=$(cat "$f" 2>/dev/null) || continue
      [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dnsmasq ] && kill "$pid"
    done
  fi ;;
esac
exit 0
"""


def flag(n, name, on=True):
    path = os.path.join(TESTHOSTS_ROOT, "host%d" % n, "etc", "hooks", name)
    if on:
        open(path, "w").close()
    elif os.path.exists(path):
        os.unlink(path)


def install_fault_hook(n):
    """Put FAULT_HOOK into started test host n, then restart it: libvirtd looks for hooks when it starts."""
    hooks = os.path.join(TESTHOSTS_ROOT, "host%d" % n, "etc", "hooks")
    os.makedirs(hooks, exist_ok=True)
    with open(os.path.join(hooks, "qemu"), "w") as f:
        f.write(FAULT_HOOK)
    os.chmod(os.path.join(hooks, "qemu"), 0o755)
    for action in ("stop", "start"):
        subprocess.run([TESTHOST, action, str(n)], check=True, timeout=180, stdout=subprocess.DEVNULL)
