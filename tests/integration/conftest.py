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
import glob
import hashlib
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

    def full_db_snapshot(self):
        """Every row of every table, as sorted reprs (order-independent)."""
        with self.db() as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            return {t: sorted(repr(tuple(r)) for r in conn.execute("SELECT * FROM \"%s\"" % t)) for t in tables}

    def full_host_snapshot(self):
        """Everything on the host a step may touch, one list of lines per part: libvirt domains (with a
        hash of their XML), pools and pool volumes, every path under /var/lib/bootflow (type, mode, size;
        the content hash of the small files; size and mtime of the image cache), the host's links and
        addresses, and the dnsmasq/qemu processes of its network namespace. Left out: a running guest's
        own writes (overlay size, console log), dnsmasq's log, and empty lock files (flock needs a file;
        like oslo's lock files they hold no state and may stay)."""
        return parse_sections(self.ssh(HOST_STATE_SH))

    def controller_snapshot(self):
        """The controller's state dir except the DB (keys, image store, password file): path -> md5."""
        out = {}
        for root, dirs, files in os.walk(str(self.state_dir)):
            dirs[:] = [d for d in dirs if d != "keystone-tokens"]
            for name in files:
                path = os.path.join(root, name)
                if name.startswith("bootflow.db"):
                    continue
                with open(path, "rb") as f:
                    out[os.path.relpath(path, str(self.state_dir))] = hashlib.md5(f.read()).hexdigest()
        return out

    def everything(self):
        """DB + host + controller state: what a refused request must leave exactly as it was."""
        return {"db": self.full_db_snapshot(), "host": self.full_host_snapshot(), "controller": self.controller_snapshot()}


# What a step may touch on a test host (Env.full_host_snapshot). Sections start with "== name".
HOST_STATE_SH = r"""
V='virsh -c qemu:///system -q'
B=/var/lib/bootflow
echo '== domains'
for d in $($V list --all --name); do echo "$d $($V domstate "$d") $($V dumpxml --inactive "$d" | md5sum | cut -c1-12)"; done
echo '== pools'
$V pool-list --all --name | sed '/^$/d'
echo '== pool volumes'
for p in $($V pool-list --all --name); do $V vol-list "$p" 2>/dev/null | awk -v p="$p" 'NF {print p, $1, $2}'; done
echo '== paths'
[ -d $B ] && find $B -mindepth 1 -printf '%y %m %s %P\n' | grep -v -E ' ([^ ]*/)?(dnsmasq\.log|console\.log|[^/ ]*\.lock)$' \
  | awk '$1 == "f" && $4 ~ /^instances\/[^_][^\/]*\/disk$/ {$3 = "-"} {print}'
echo '== small file contents'
[ -d $B ] && find $B -type f -size -1024k ! -name dnsmasq.log ! -name console.log ! -name '*.lock' ! -path "$B/instances/*/disk" \
  -exec md5sum {} + | awk '{print $2, substr($1, 1, 12)}'
echo '== image cache'
[ -d $B/instances/_base ] && find $B/instances/_base -type f -printf '%P %s %T@\n'
echo '== links'
ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print $2}'
echo '== addresses'
ip -o addr show | awk '{print $2, $3, $4}'
echo '== processes'
me=$(readlink /proc/self/ns/net)
for p in /proc/[0-9]*; do
  [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$me" ] || continue
  case "$(cat "$p/comm" 2>/dev/null)" in dnsmasq|qemu-system-*) echo "${p#/proc/} $(tr '\0' ' ' < "$p/cmdline" | cut -c1-160)";; esac
done
true
"""


def parse_sections(text):
    """'== name' headed sections -> {name: sorted lines}."""
    out, cur = {}, None
    for line in text.splitlines():
        if line.startswith("== "):
            cur = out.setdefault(line[3:].strip(), [])
        elif cur is not None and line.strip():
            cur.append(line.rstrip())
    return {k: sorted(v) for k, v in out.items()}


def snapshot_diff(before, after, prefix=""):
    """Human-readable differences between two nested snapshots (dicts of lists/values); [] if equal."""
    out = []
    for key in sorted(set(before) | set(after), key=str):
        a, b = before.get(key), after.get(key)
        where = "%s%s" % (prefix, key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(snapshot_diff(a, b, where + "."))
        elif isinstance(a, list) and isinstance(b, list):
            out.extend("%s: - %s" % (where, x) for x in a if x not in b)
            out.extend("%s: + %s" % (where, x) for x in b if x not in a)
        else:
            out.append("%s: %r -> %r" % (where, a, b))
    return out


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


def console(env, uuid, path=None):
    """The guest's serial console log (``path``: where it is when not under the default instances path)."""
    path = path or "/var/lib/bootflow/instances/%s/console.log" % uuid
    return env.ssh("cat %s 2>/dev/null || true" % path, check=False)


def wait_console(env, uuid, pattern, timeout=90, path=None):
    """Wait until the guest printed ``pattern`` on its serial console; returns the match."""
    rx = re.compile(pattern, re.M)
    path = path or "/var/lib/bootflow/instances/%s/console.log" % uuid
    out = env.ssh("for i in $(seq 1 %d); do grep -E %s %s && exit 0; sleep 0.5; done; exit 1"
                  % (timeout * 2, json.dumps(pattern), path), check=False)
    m = rx.search(out)
    assert m, "guest %s never printed %r; console:\n%s" % (uuid, pattern, console(env, uuid, path)[-3000:])
    return m


# --- order ------------------------------------------------------------------------------------------
# make test runs this suite in two pytest-xdist workers, one whole file per worker at a time (--dist
# loadfile: a file's module fixtures own its test hosts). The files that take longest are handed out
# first, so that the two workers end at about the same time. Other files follow in their usual order.
SLOWEST_FIRST = ("test_scheduling_race.py", "test_crash.py", "test_fleet.py", "test_bad_input.py", "test_faults.py",
                 "test_server_groups.py", "test_scheduling.py", "test_network.py", "test_glance.py",
                 "test_volumes.py", "test_keystone.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(SLOWEST_FIRST)))   # stable


# --- residue check ---------------------------------------------------------------------------------
# After the whole suite: every test host the suite started (tests/hosts/testhost.sh logs start/stop
# events and, at each stop, what the host still held to $BOOTFLOW_RESIDUE_LOG), every controller DB
# the suite made (under pytest's basetemp) and the machine (network namespaces, veths, processes of
# the test hosts) must hold nothing the suite did not mean to leave. A test that leaves something on
# purpose says so with intend_to_leave().

RESIDUE_LOG_ENV = "BOOTFLOW_RESIDUE_LOG"
INTENDED_RESIDUE = []   # (compiled regex, why)
_DHCP_FILES = {"host", "opts", "leases", "pid", "interface", "dnsmasq.log", "ports"}
_CACHE_FILE = re.compile(r"^[0-9a-f]{40}(\.info)?$")


def intend_to_leave(pattern, why):
    """Residue lines matching ``pattern`` (regex) are meant to stay (``why`` is for the reader)."""
    INTENDED_RESIDUE.append((re.compile(pattern), why))


def host_residue(host, lines):
    """What a stopping host still held (its residue-log lines) that a clean suite leaves nothing of."""
    out = []
    for line in lines:
        kind, _sep, rest = line.partition(" ")
        parts = rest.split("/")
        if kind == "domain":
            out.append("%s: libvirt domain %s" % (host, rest))
        elif kind == "line" and rest.strip():
            path, _sep, content = rest.partition(" ")
            what = {"host": "DHCP reservation", "ports": "DHCP port record", "leases": "DHCP lease"}[path.rsplit("/", 1)[1]]
            out.append("%s: %s in %s: %s" % (host, what, path, content))
        elif kind == "path" and parts[0] == "instances" and len(parts) == 2 and parts[1] not in ("_base", "locks"):
            out.append("%s: instance directory %s" % (host, rest))
        elif kind == "path" and parts[0] == "instances" and len(parts) == 3 and parts[1] == "_base" \
                and not _CACHE_FILE.match(parts[2]):
            out.append("%s: half-made image cache file %s" % (host, rest))
        elif kind == "path" and parts[0] == "volumes" and len(parts) == 2:
            out.append("%s: pool volume %s" % (host, rest))
        elif kind == "path" and parts[0] == "dhcp" and len(parts) == 3 and parts[2] not in _DHCP_FILES:
            out.append("%s: stray DHCP file %s" % (host, rest))
    return out


def db_residue(path):
    """Live rows a clean suite leaves none of: instances, ports (IPs), claims, volumes, half-made images."""
    checks = (
        ("live instance", "SELECT name || ' ' || uuid || ' ' || vm_state FROM instances WHERE deleted = 0"),
        ("port (IP)", "SELECT ip || ' ' || mac || ' instance ' || COALESCE(instance_uuid, '-') FROM ports"),
        ("claim", "SELECT consumer_id FROM allocations"),
        ("volume", "SELECT name || ' ' || status FROM volumes WHERE status != 'deleted'"),
        ("half-made image", "SELECT name || ' ' || status FROM images WHERE status IN ('queued', 'saving', 'importing')"),
    )
    out = []
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        for what, sql in checks:
            try:
                rows = conn.execute(sql).fetchall()
            except sqlite3.OperationalError:
                continue   # a DB that never got that table
            out.extend("%s: %s %s" % (path, what, r[0]) for r in rows)
    finally:
        conn.close()
    return out


def read_residue_log(path):
    """-> (hosts started in the session, residue found when they stopped)."""
    started, found, host, event = set(), [], None, None
    lines = []

    def flush():
        if host is not None and event in ("stop", "purge", "clear") and host in started:
            found.extend(host_residue(host, lines))
    if os.path.exists(path):
        with open(path) as f:
            for raw in f:
                line = raw.rstrip("\n")
                if line.startswith("@@ "):
                    flush()
                    _at, host, event, _ts = line.split(" ", 3)
                    lines = []
                    if event == "start":
                        started.add(host)
                else:
                    lines.append(line)
        flush()
    return started, found


def machine_residue(hosts):
    """Network namespaces, veths and processes of the given test hosts (after they were stopped)."""
    out = []
    for host in sorted(hosts):
        n = host[len("bfhv"):]
        if os.path.exists("/run/netns/%s" % host):
            out.append("%s: network namespace still exists (host not stopped)" % host)
        if os.path.exists("/sys/class/net/bfr%s" % n):
            out.append("%s: veth bfr%s still exists" % (host, n))
    wanted = {h[len("bfhv"):] for h in hosts if not os.path.exists("/run/netns/%s" % h)}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open("/proc/%s/mountinfo" % pid) as f:
                mounts = f.read()
            with open("/proc/%s/comm" % pid) as f:
                comm = f.read().strip()
        except OSError:
            continue
        m = re.search(r"^\S+ \S+ \S+ \S*/host(\d+)/bootflow /var/lib/bootflow ", mounts, re.M)
        if m and m.group(1) in wanted:
            out.append("bfhv%s: process %s (%s) still runs in the stopped host's namespaces" % (m.group(1), pid, comm))
    return out


def suite_dbs(basetemp):
    """The controller DBs the suite made (pytest's ``*current`` symlinks resolved away)."""
    return sorted({os.path.realpath(p) for p in glob.glob(os.path.join(str(basetemp), "**", "bootflow.db"), recursive=True)})


def find_residue(log_path, basetemp):
    started, found = read_residue_log(log_path)
    for db in suite_dbs(basetemp):
        found.extend(db_residue(db))
    found.extend(machine_residue(started))
    return [r for r in found if not any(rx.search(r) for rx, _why in INTENDED_RESIDUE)], started


@pytest.fixture(scope="session", autouse=True)
def residue_check(tmp_path_factory):
    """Fails the session (an error at teardown, with the list) when the suite left residue."""
    basetemp = tmp_path_factory.getbasetemp()
    log = os.path.join(str(basetemp), "residue.log")
    old = os.environ.get(RESIDUE_LOG_ENV)
    os.environ[RESIDUE_LOG_ENV] = log
    yield log
    if old is None:
        os.environ.pop(RESIDUE_LOG_ENV, None)
    else:
        os.environ[RESIDUE_LOG_ENV] = old
    residue, hosts = find_residue(log, basetemp)
    print("\nresidue check: %d test host(s) (%s), %d DB(s): %s" % (
        len(hosts), ", ".join(sorted(hosts)) or "none",
        len(suite_dbs(basetemp)),
        "clean" if not residue else "%d leftover(s)" % len(residue)))
    assert not residue, "RESIDUE after the suite (%d):\n  %s" % (len(residue), "\n  ".join(residue))
