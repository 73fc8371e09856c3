# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Integration fixtures: a real test hypervisor host (netns + libvirtd + sshd), a fresh
controller state dir (SQLite), and helpers to run playbooks and look at the host.

Nothing here is mocked: playbooks run with ansible-playbook, modules run on the host over SSH,
guests boot under QEMU TCG and get their address from dnsmasq.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import sqlite3
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
INVENTORY_SH = os.path.join(REPO, "tests", "hosts", "inventory.sh")
# test host numbers for this suite (the demo uses 1, molecule 31)
HOST_N = int(os.environ.get("BOOTFLOW_IT_HOST", "21"))

RECAP_RE = re.compile(r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
                      r"\s+failed=(?P<failed>\d+)", re.M)


@dataclasses.dataclass
class PlayResult:
    rc: int
    out: str

    def recap(self):
        return {m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
                for m in RECAP_RE.finditer(self.out)}


class Env:
    """The controller side of one test session."""

    def __init__(self, state_dir, inventory, host_n):
        self.state_dir = state_dir
        self.inventory = inventory
        self.host_n = host_n
        self.host = "bfhv%d" % host_n
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=str(state_dir), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")

    def play(self, playbook, *args, check=True):
        cmd = ["ansible-playbook", "-i", str(self.inventory), os.path.join(REPO, "playbooks", playbook), *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=600, check=False)
        res = PlayResult(proc.returncode, proc.stdout)
        if check and proc.returncode != 0:
            raise AssertionError("%s failed (rc=%d):\n%s" % (playbook, proc.returncode, proc.stdout[-6000:]))
        return res

    def ssh(self, command, check=True):
        proc = subprocess.run([TESTHOST, "ssh", str(self.host_n), command], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("ssh %s %r failed: %s %s" % (self.host, command, proc.stdout, proc.stderr))
        return proc.stdout

    def db(self):
        conn = sqlite3.connect(os.path.join(str(self.state_dir), "bootflow.db"))
        conn.row_factory = sqlite3.Row
        return conn

    def query(self, sql, *params):
        with self.db() as conn:
            return [dict(r) for r in conn.execute(sql, params)]

    def host_snapshot(self):
        """Everything on the host a boot may create: domains, pool volumes, instance dirs, DHCP files."""
        out = self.ssh(
            "virsh -c qemu:///system list --all --name | sort; echo ---;"
            "ls -1 /var/lib/bootflow/volumes 2>/dev/null | sort; echo ---;"
            "ls -1 /var/lib/bootflow/instances 2>/dev/null | grep -v -e '^_base$' -e '^locks$' | sort; echo ---;"
            "cat /var/lib/bootflow/dhcp/*/host 2>/dev/null | sort")
        domains, volumes, instances, hosts = (part.strip().splitlines() for part in out.split("---"))
        return {"domains": [d for d in domains if d], "volumes": volumes, "instances": instances, "dhcp_hosts": hosts}

    def db_snapshot(self):
        tables = ("instances", "ports", "allocations", "volumes", "instance_steps")
        return {t: self.query("SELECT * FROM %s" % t) for t in tables}


@contextlib.contextmanager
def host_session(tmp_path_factory, host_n, label):
    """Test host ``host_n`` started clean (whatever an earlier failed run left is purged first), its
    own controller state dir, bootstrap.yml + hypervisors.yml applied; purged again at the end."""
    base = tmp_path_factory.mktemp(label)
    subprocess.run([TESTHOST, "purge", str(host_n)], check=False, timeout=120)
    subprocess.run([TESTHOST, "start", str(host_n)], check=True, timeout=120)
    inventory = base / "inventory.ini"
    inventory.write_text(subprocess.run([INVENTORY_SH, str(host_n)], check=True, stdout=subprocess.PIPE,
                                        text=True).stdout)
    env = Env(base / "state", inventory, host_n)
    try:
        env.play("bootstrap.yml")
        env.play("hypervisors.yml")
        yield env
    finally:
        subprocess.run([TESTHOST, "purge", str(host_n)], check=False, timeout=120)


@pytest.fixture(scope="session")
def it_env(tmp_path_factory):
    """The suite's shared test host (bfhv21 unless BOOTFLOW_IT_HOST says otherwise)."""
    with host_session(tmp_path_factory, HOST_N, "bootflow-it") as env:
        yield env


def console(env, uuid):
    return env.ssh("cat /var/lib/bootflow/instances/%s/console.log 2>/dev/null || true" % uuid, check=False)


def wait_console(env, uuid, pattern, timeout=90):
    """Wait until the guest printed ``pattern`` on its serial console; returns the match."""
    rx = re.compile(pattern, re.M)
    out = env.ssh("for i in $(seq 1 %d); do grep -E %s /var/lib/bootflow/instances/%s/console.log && exit 0; sleep 0.5; done; exit 1"
                  % (timeout * 2, json.dumps(pattern), uuid), check=False)
    m = rx.search(out)
    assert m, "guest %s never printed %r; console:\n%s" % (uuid, pattern, console(env, uuid)[-3000:])
    return m
