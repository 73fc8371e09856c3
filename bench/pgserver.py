# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway PostgreSQL server for the tests and the benchmark (Debian's postgresql-15).

``PgServer().start()`` runs ``initdb`` into a new temp dir (owned by the ``postgres`` user when run as
root: initdb refuses root), then starts ``postgres`` itself as a child of this process, on
127.0.0.1 and a free port, with its unix socket in the temp dir. ``stop()`` ends exactly that
process by its pid (SIGINT = fast shutdown, reaped with ``wait()``) and removes the temp dir. No
other PostgreSQL on the machine is looked at or touched.

Needs ``psycopg2`` (requirements-dev.txt) for the readiness check and ``create_database()``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["PgServer", "find_bindir"]


def find_bindir():
    """Directory of initdb/postgres (the newest /usr/lib/postgresql/N/bin), or None."""
    env = os.environ.get("BOOTFLOW_PG_BINDIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    """One private PostgreSQL server: ``start()``, ``url(db)``, ``create_database(name)``, ``stop()``."""

    # functions called with the server just before a running server stops (the integration suite's
    # residue check looks into its databases there: they go with it)
    before_stop = []

    def __init__(self, bindir=None, fast=True):
        self.bindir = bindir or find_bindir()
        # fast: no fsync (tests); the benchmark passes fast=False to measure with real commits
        self.fast = fast
        self.base = None
        self.port = None
        self.proc = None
        self.log_path = None

    def _run_as(self):
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam("postgres")
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self, timeout=60):
        if not self.bindir or not os.path.exists(os.path.join(self.bindir, "postgres")):
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql; "
                               "or set BOOTFLOW_PG_BINDIR)")
        as_user = self._run_as()
        self.base = tempfile.mkdtemp(prefix="bootflow-pg-")
        data, sock = os.path.join(self.base, "data"), os.path.join(self.base, "sock")
        os.makedirs(sock)
        if as_user:
            for path in (self.base, sock):
                os.chown(path, as_user["user"], as_user["group"])
        self.log_path = os.path.join(self.base, "postgres.log")
        with open(self.log_path, "wb") as log:
            if as_user:
                os.fchown(log.fileno(), as_user["user"], as_user["group"])
            subprocess.run([os.path.join(self.bindir, "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
                           stdout=log, stderr=subprocess.STDOUT, check=True, cwd=self.base, timeout=120, **as_user)
            self.port = _free_port()
            opts = ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=%s" % sock,
                    "-c", "max_connections=200", "-c", "shared_buffers=128MB"]
            if self.fast:
                opts += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
            # our child: its pid is ours to stop and to reap
            self.proc = subprocess.Popen([os.path.join(self.bindir, "postgres"), "-D", data, "-p", str(self.port)] + opts,
                                         stdout=log, stderr=subprocess.STDOUT, cwd=self.base,
                                         start_new_session=True, **as_user)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                out = self.log_tail()
                self.stop()
                raise RuntimeError("postgres exited with %s:\n%s" % (self.proc.returncode, out))
            try:
                self._connect("postgres").close()
                return self
            except Exception:  # pylint: disable=broad-except  # not accepting connections yet
                if time.monotonic() > deadline:
                    out = self.log_tail()
                    self.stop()
                    raise RuntimeError("postgres did not come up in %ss:\n%s" % (timeout, out)) from None
                time.sleep(0.1)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def _connect(self, dbname):
        import psycopg2  # pylint: disable=import-outside-toplevel
        return psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, connect_timeout=5)

    def url(self, dbname="postgres"):
        return "postgresql+psycopg2://postgres@127.0.0.1:%d/%s" % (self.port, dbname)

    def create_database(self, name):
        """Create an empty database and return its SQLAlchemy URL."""
        conn = self._connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('CREATE DATABASE "%s"' % name.replace('"', ""))
        finally:
            conn.close()
        return self.url(name)

    def drop_database(self, name):
        conn = self._connect("postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name.replace('"', ""))
        finally:
            conn.close()

    def stop(self):
        """Fast shutdown of our server (by its pid), then remove its temp dir. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                for hook in list(PgServer.before_stop):
                    hook(self)
            finally:
                self._shutdown()
        if self.base and os.path.isdir(self.base):
            shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    def _shutdown(self):
        """SIGINT (fast shutdown: disconnect clients, stop), then SIGQUIT, then SIGKILL; reaped."""
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGQUIT)   # immediate shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
