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
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import uuid as _uuid

import pytest
import sqlalchemy as sa
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "bench"))
import pgserver  # noqa: E402  # bench/pgserver.py
TESTHOST = os.path.join(REPO, "tests", "hosts", "testhost.sh")
INVENTORY_SH = os.path.join(REPO, "tests", "hosts", "inventory.sh")
# test host numbers for this suite (the demo uses 1, the Molecule scenarios 31-36)
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


def process_tree(pid):
    """``ps`` lines of ``pid`` and its descendants (ansible's workers and their ssh children)."""
    rows = subprocess.run(["ps", "-e", "-ww", "-o", "pid=,ppid=,etimes=,args="], stdout=subprocess.PIPE, text=True,
                          check=False).stdout.splitlines()
    children, lines = {}, {}
    for row in rows:
        fields = row.split(None, 3)
        if len(fields) == 4:
            children.setdefault(int(fields[1]), []).append(int(fields[0]))
            lines[int(fields[0])] = "%s %ss %s" % (fields[0], fields[2], fields[3][:300])
    out, todo = [], [(pid, 0)]
    while todo:
        p, depth = todo.pop()
        out.append("  " * depth + lines.get(p, str(p)))
        todo.extend((c, depth + 1) for c in children.get(p, []))
    return "\n".join(out)


def run_playbook(cmd, env, timeout=600):
    """``ansible-playbook`` from the repo as a PlayResult. A run still going after ``timeout`` is killed
    with everything it started, and the error shows what it was doing: the output's tail and its
    process tree (which host an SSH child was waiting on), which a bare TimeoutExpired hides."""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out = proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        tree = process_tree(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[0]
        raise AssertionError("%s still running after %d s, killed. Its processes:\n%s\nIts output's tail:\n%s"
                             % (" ".join(cmd[:4]), timeout, tree, out[-6000:])) from None
    return PlayResult(proc.returncode, out)


class Env:
    """The controller side of one test session: its state dir and its database - the SQLite file in the
    state dir, or with ``db_url`` a PostgreSQL database (the playbooks get it as BOOTFLOW_DB_URL)."""

    def __init__(self, state_dir, inventory, host_n, db_url=None):
        self.state_dir = state_dir
        self.inventory = inventory
        self.host_n = host_n
        self.host = "bfhv%d" % host_n
        self.db_url = db_url
        self.backend = "postgresql" if db_url else "sqlite"
        self._engine = None
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=str(state_dir), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
                        ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
        self.env.pop("BOOTFLOW_DB_URL", None)
        if db_url:
            self.env["BOOTFLOW_DB_URL"] = db_url   # _db.resolve_db_url honours it in every action plugin

    def play(self, playbook, *args, check=True):
        cmd = ["ansible-playbook", "-i", str(self.inventory), os.path.join(REPO, "playbooks", playbook), *args]
        res = run_playbook(cmd, self.env)
        if check and res.rc != 0:
            raise AssertionError("%s failed (rc=%d):\n%s" % (playbook, res.rc, res.out[-6000:]))
        return res

    def ssh(self, command, check=True):
        proc = subprocess.run([TESTHOST, "ssh", str(self.host_n), command], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False)
        if check and proc.returncode != 0:
            raise AssertionError("ssh %s %r failed: %s %s" % (self.host, command, proc.stdout, proc.stderr))
        return proc.stdout

    def db(self):
        """A sqlite3 connection to the SQLite DB (SQLite only: on both, use query/execute)."""
        assert self.db_url is None, "Env.db() is SQLite only; use Env.query / Env.execute"
        conn = sqlite3.connect(os.path.join(str(self.state_dir), "bootflow.db"))
        conn.row_factory = sqlite3.Row
        return conn

    def engine(self):
        if self._engine is None:
            self._engine = sa.create_engine(self.db_url, poolclass=sa.pool.NullPool)
        return self._engine

    @staticmethod
    def _text(sql, params):
        """sqlite3's ``?`` placeholders as SQLAlchemy binds (:p0, :p1, ...)."""
        parts = sql.split("?")
        assert len(parts) == len(params) + 1, (sql, params)
        text = parts[0] + "".join(":p%d%s" % (i, part) for i, part in enumerate(parts[1:]))
        return sa.text(text), {"p%d" % i: v for i, v in enumerate(params)}

    def query(self, sql, *params):
        """Rows as dicts; ``?`` placeholders on either backend."""
        if self.db_url is None:
            with self.db() as conn:
                return [dict(r) for r in conn.execute(sql, params)]
        with self.engine().connect() as conn:
            return [dict(r._mapping) for r in conn.execute(*self._text(sql, params))]  # pylint: disable=protected-access

    def execute(self, sql, *params):
        """One write statement, committed."""
        if self.db_url is None:
            with self.db() as conn:
                conn.execute(sql, params)
            return
        with self.engine().begin() as conn:
            conn.execute(*self._text(sql, params))

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
        if self.db_url is None:
            with self.db() as conn:
                tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
                return {t: sorted(repr(tuple(r)) for r in conn.execute("SELECT * FROM \"%s\"" % t)) for t in tables}
        with self.engine().connect() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            return {t: sorted(repr(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM \"%s\"" % t))) for t in tables}

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
def host_session(tmp_path_factory, host_n, label, db_url=None, inventory_text=None):
    """Test host ``host_n`` started clean (whatever an earlier failed run left is purged first), its
    own controller state dir (and ``db_url``: its PostgreSQL database), bootstrap.yml + hypervisors.yml
    applied; purged again at the end. ``inventory_text``: a function that may rewrite the inventory."""
    base = tmp_path_factory.mktemp(label)
    subprocess.run([TESTHOST, "purge", str(host_n)], check=False, timeout=120)
    subprocess.run([TESTHOST, "start", str(host_n)], check=True, timeout=120)
    inventory = base / "inventory.ini"
    text = subprocess.run([INVENTORY_SH, str(host_n)], check=True, stdout=subprocess.PIPE, text=True).stdout
    inventory.write_text(inventory_text(text, base) if inventory_text else text)
    env = Env(base / "state", inventory, host_n, db_url=db_url)
    env.base = base
    try:
        env.play("bootstrap.yml")
        env.play("hypervisors.yml")
        yield env
    finally:
        subprocess.run([TESTHOST, "purge", str(host_n)], check=False, timeout=120)


@pytest.fixture(scope="session")
def pg_server():
    """This worker's private PostgreSQL server (bench/pgserver.py: initdb in a temp dir, 127.0.0.1 and a
    free port, stopped by its pid), started when a test first asks for it. Before it stops, the residue
    check looks into every database on it (pg_server_residue)."""
    server = pgserver.PgServer(fast=True)
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.fail("cannot start a private PostgreSQL server (scripts/setup.sh installs the postgresql "
                    "package): %s" % exc)
    yield server
    server.stop()


def fresh_pg_url(server, label):
    """A new, empty database on ``server`` for one controller: its SQLAlchemy URL."""
    return server.create_database("%s_%s" % (re.sub(r"\W", "_", label), _uuid.uuid4().hex[:8]))


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
# first, so that the two workers end at about the same time (test_molecule.py, ~600 s, used to start
# late and end alone). Other files follow in their usual order.
SLOWEST_FIRST = ("test_scheduling_race.py", "test_molecule.py", "test_crash.py", "test_fleet.py", "test_bad_input.py",
                 "test_faults.py", "test_server_groups.py", "test_scheduling.py", "test_network.py", "test_glance.py",
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


DB_RESIDUE_CHECKS = (
    ("live instance", "SELECT name || ' ' || uuid || ' ' || vm_state FROM instances WHERE deleted = 0"),
    ("port (IP)", "SELECT ip || ' ' || mac || ' instance ' || COALESCE(instance_uuid, '-') FROM ports"),
    ("claim", "SELECT consumer_id FROM allocations"),
    ("volume", "SELECT name || ' ' || status FROM volumes WHERE status != 'deleted'"),
    ("half-made image", "SELECT name || ' ' || status FROM images WHERE status IN ('queued', 'saving', 'importing')"),
)


def db_residue(target):
    """Live rows a clean suite leaves none of: instances, ports (IPs), claims, volumes, half-made images.
    ``target``: a SQLite file's path, or a database URL (PostgreSQL)."""
    out = []
    if "://" not in target:
        conn = sqlite3.connect("file:%s?mode=ro" % target, uri=True)
        try:
            for what, sql in DB_RESIDUE_CHECKS:
                try:
                    rows = conn.execute(sql).fetchall()
                except sqlite3.OperationalError:
                    continue   # a DB that never got that table
                out.extend("%s: %s %s" % (target, what, r[0]) for r in rows)
        finally:
            conn.close()
        return out
    engine = sa.create_engine(target, poolclass=sa.pool.NullPool)
    try:
        tables = set(sa.inspect(engine).get_table_names())
        with engine.connect() as conn:
            for what, sql in DB_RESIDUE_CHECKS:
                if re.search(r"FROM (\w+)", sql).group(1) in tables:   # a DB that never got that table
                    out.extend("%s: %s %s" % (target, what, r[0]) for r in conn.execute(sa.text(sql)))
    finally:
        engine.dispose()
    return out


def pg_server_residue(server):
    """db_residue of every database on a running PostgreSQL server (bench/pgserver.PgServer) but its own."""
    engine = sa.create_engine(server.url("postgres"), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            names = [r[0] for r in conn.execute(sa.text(
                "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname != 'postgres' ORDER BY datname"))]
    finally:
        engine.dispose()
    out = []
    for name in names:
        out.extend(db_residue(server.url(name)))
    return out


PG_RESIDUE = []   # found in the PostgreSQL servers of this session, just before each stopped


PG_CHECKED = [0]  # how many servers were looked into


def _pg_before_stop(server):
    PG_CHECKED[0] += 1
    try:
        PG_RESIDUE.extend(pg_server_residue(server))
    except Exception as exc:  # pylint: disable=broad-except  # a check that cannot look is a finding
        PG_RESIDUE.append("PostgreSQL server on port %s: cannot look for residue: %s" % (server.port, exc))


def placement_residue(path):
    """A real Placement's leftovers in its SQLite DB (tests/openstack/placement.sh: DIR/placement.db):
    allocations and consumers (Placement drops a consumer with its last allocation)."""
    checks = (("Placement allocation", "SELECT consumer_id || ' ' || used FROM allocations"),
              ("Placement consumer", "SELECT uuid FROM consumers"))
    out = []
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        for what, sql in checks:
            try:
                rows = conn.execute(sql).fetchall()
            except sqlite3.OperationalError:
                continue
            out.extend("%s: %s %s" % (path, what, r[0]) for r in rows)
    finally:
        conn.close()
    return out


def suite_placement_dbs(basetemp):
    """The Placement DBs the suite's PlacementServers made (under pytest's basetemp)."""
    return sorted({os.path.realpath(p) for p in glob.glob(os.path.join(str(basetemp), "**", "placement.db"), recursive=True)})


# The Molecule scenarios (extensions/molecule/<scenario>/): the test hosts of each (the hypervisors of its
# inventory/hosts.yml) and its controller state dir (BOOTFLOW_STATE_DIR in extensions/molecule/config.yml).
MOLECULE_DIR = os.path.join(REPO, "extensions", "molecule")
MOLECULE_STATE_ROOT = "/var/tmp/bootflow-molecule"
MOLECULE_RAN = []   # test_molecule.py appends when it ran the scenarios in this process


def molecule_scenarios(molecule_dir=MOLECULE_DIR):
    """{scenario: its test host numbers}: each directory of ``molecule_dir`` with a molecule.yml, its hosts
    read from the group hypervisors of its inventory/hosts.yml (host bfhvN is tests/hosts/testhost.sh N)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(molecule_dir, "*", "molecule.yml"))):
        sdir = os.path.dirname(path)
        with open(os.path.join(sdir, "inventory", "hosts.yml")) as f:
            hosts = yaml.safe_load(f)["all"]["children"]["hypervisors"]["hosts"]
        out[os.path.basename(sdir)] = sorted(int(h[len("bfhv"):]) for h in hosts)
    return out


def molecule_ephemeral_dir(scenario):
    """Where Molecule keeps a scenario's state.yml (molecule.scenario.Scenario.ephemeral_directory)."""
    from ansible_compat.prerun import get_cache_dir  # pylint: disable=import-outside-toplevel  # Molecule's deps
    from molecule.text import checksum  # pylint: disable=import-outside-toplevel
    return os.path.join(str(get_cache_dir(pathlib.Path(REPO), isolated=False)), "tmp",
                        "molecule.%s.%s" % (checksum(os.path.basename(REPO), 4), scenario))


def molecule_host_residue(host_n, hosts_root=None):
    """What a scenario's destroy must have removed of test host ``host_n``: its namespace, veth and processes,
    and its per-host dir (with domain definitions and /var/lib/bootflow)."""
    host = "bfhv%d" % host_n
    out = ["molecule: " + r for r in machine_residue({host})]
    hdir = os.path.join(hosts_root or os.environ.get("BOOTFLOW_TESTHOSTS", "/var/tmp/bootflow-hosts"), "host%d" % host_n)
    if os.path.isdir(hdir):
        out.append("molecule: %s: test host dir %s not purged" % (host, hdir))
        for xml in sorted(glob.glob(os.path.join(hdir, "etc", "qemu", "*.xml"))):
            out.append("molecule: %s: libvirt domain %s" % (host, os.path.basename(xml)[:-4]))
        lines = []
        bdir = os.path.join(hdir, "bootflow")
        for root, dirs, files in os.walk(bdir):
            for name in dirs + files:
                lines.append("path " + os.path.relpath(os.path.join(root, name), bdir))
        for f in glob.glob(os.path.join(bdir, "dhcp", "*", "*")):
            if os.path.basename(f) in ("host", "ports", "leases"):
                with open(f) as fh:
                    lines.extend("line %s %s" % (os.path.relpath(f, bdir), x.rstrip("\n")) for x in fh)
        out.extend("molecule: " + r for r in host_residue(host, lines))
    return out


def molecule_residue(scenarios=None, state_root=MOLECULE_STATE_ROOT, hosts_root=None, ephemeral_dirs=None):
    """What the scenarios' destroy steps must have removed: every scenario's test hosts, its controller state
    dir ``state_root``/<scenario> (with the live rows of its DB) and then ``state_root`` itself, and Molecule's
    own record of a created instance (``ephemeral_dirs``: {scenario: dir}, default Molecule's)."""
    scenarios = molecule_scenarios() if scenarios is None else scenarios
    out = []
    for scenario, hosts in sorted(scenarios.items()):
        for n in hosts:
            out.extend(molecule_host_residue(n, hosts_root))
        state_dir = os.path.join(state_root, scenario)
        if os.path.exists(state_dir):
            out.append("molecule: %s: controller state dir %s not removed" % (scenario, state_dir))
            db = os.path.join(state_dir, "bootflow.db")
            if os.path.exists(db):
                out.extend("molecule: %s: %s" % (scenario, r) for r in db_residue(db))
        eph = (ephemeral_dirs or {}).get(scenario) or molecule_ephemeral_dir(scenario)
        state_yml = os.path.join(eph, "state.yml")
        if os.path.exists(state_yml):
            with open(state_yml) as f:
                if re.search(r"^created:\s*true\s*$", f.read(), re.M):
                    out.append("molecule: %s: %s says the instances are still created (destroy did not finish)"
                               % (scenario, state_yml))
    if os.path.isdir(state_root):
        out.append("molecule: state dirs' parent %s not removed (holds %s)" % (state_root, sorted(os.listdir(state_root))))
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


def find_residue(log_path, basetemp, pg_found=(), molecule=False):
    """Every leftover: the test hosts' (residue log), the controller DBs' (SQLite files under basetemp;
    ``pg_found``: what pg_server_residue found on the PostgreSQL servers), the real Placements',
    the machine's, and with ``molecule`` the Molecule scenarios'."""
    started, found = read_residue_log(log_path)
    for db in suite_dbs(basetemp):
        found.extend(db_residue(db))
    found.extend(pg_found)
    for db in suite_placement_dbs(basetemp):
        found.extend(placement_residue(db))
    found.extend(machine_residue(started))
    if molecule:
        found.extend(molecule_residue())
    return [r for r in found if not any(rx.search(r) for rx, _why in INTENDED_RESIDUE)], started


@pytest.fixture(scope="session", autouse=True)
def residue_check(tmp_path_factory):
    """Fails the session (an error at teardown, with the list) when the suite left residue."""
    basetemp = tmp_path_factory.getbasetemp()
    log = os.path.join(str(basetemp), "residue.log")
    old = os.environ.get(RESIDUE_LOG_ENV)
    os.environ[RESIDUE_LOG_ENV] = log
    # every PostgreSQL server of the session (this conftest's pg_server, test files' own PgServers) is
    # looked into just before it stops: its databases go with it
    pgserver.PgServer.before_stop.append(_pg_before_stop)
    try:
        yield log
    finally:
        pgserver.PgServer.before_stop.remove(_pg_before_stop)
        if old is None:
            os.environ.pop(RESIDUE_LOG_ENV, None)
        else:
            os.environ[RESIDUE_LOG_ENV] = old
    residue, hosts = find_residue(log, basetemp, PG_RESIDUE, molecule=bool(MOLECULE_RAN))
    print("\nresidue check: %d test host(s) (%s), %d DB(s), %d PostgreSQL server(s), %d Placement DB(s)%s: %s" % (
        len(hosts), ", ".join(sorted(hosts)) or "none",
        len(suite_dbs(basetemp)), PG_CHECKED[0], len(suite_placement_dbs(basetemp)),
        ", the Molecule scenarios" if MOLECULE_RAN else "",
        "clean" if not residue else "%d leftover(s)" % len(residue)))
    assert not residue, "RESIDUE after the suite (%d):\n  %s" % (len(residue), "\n  ".join(residue))
