# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Keystone for a test session (tests/openstack/keystone.sh): set up on SQLite in a temp
dir, uwsgi on 127.0.0.1 and a free port, stopped by its PID.

``KeystoneServer(base).start()`` bootstraps admin/admin/admin (password in ``base/admin-password``,
0600), then creates project ``demo`` with user ``member`` (role member) and user ``reader`` (role
reader), passwords in ``base/users.json`` (0600). ``serve(expiration)`` starts one more server on the
same database and keys (e.g. one issuing tokens that expire after a few seconds). ``stop()`` sends
SIGTERM to every server it started (by PID) and waits for it to exit.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "keystone.sh")
VENV = os.environ.get("BOOTFLOW_OPENSTACK_VENV", "/var/tmp/bootflow-openstack/venv")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log
        self.url = "http://127.0.0.1:%d/v3" % port

    @property
    def pid(self):
        return self.proc.pid

    def request_log(self):
        """uwsgi's request log lines (one per HTTP request), e.g. to count validations."""
        with open(self.log) as f:
            return [line for line in f if "} [" in line and " => generated " in line]


class KeystoneServer:
    def __init__(self, base):
        self.base = str(base)
        self.dir = os.path.join(self.base, "keystone")
        self.servers = []
        self.timings = {}
        self.users = {}

    @property
    def url(self):
        return self.servers[0].url

    @property
    def admin_password(self):
        with open(os.path.join(self.dir, "admin-password")) as f:
            return f.read().strip()

    def setup(self):
        t0 = time.monotonic()
        proc = subprocess.run(["bash", SCRIPT, "setup", self.dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError("keystone.sh setup failed (rc=%d):\n%s" % (proc.returncode, proc.stdout[-4000:]))
        self.timings["setup"] = time.monotonic() - t0

    def serve(self, expiration=3600, timeout=120):
        """Start one uwsgi server on a free loopback port; returns it once GET /v3 answers."""
        port = free_port()
        log = os.path.join(self.dir, "uwsgi-%d.log" % port)
        t0 = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(["bash", SCRIPT, "serve", self.dir, str(port), str(expiration)],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        server = Server(proc, port, log)
        self.servers.append(server)
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError("keystone (uwsgi) exited with %s before serving; log %s:\n%s"
                                   % (proc.returncode, log, _tail(log)))
            try:
                with urllib.request.urlopen(server.url + "/", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("keystone on port %d not serving after %d s; log %s:\n%s" % (port, timeout, log, _tail(log)))
            time.sleep(0.1)
        self.timings.setdefault("serve", time.monotonic() - t0)
        return server

    def start(self):
        self.setup()
        self.serve()
        t0 = time.monotonic()
        self._create_demo_project()
        self.timings["users"] = time.monotonic() - t0
        return self

    # --- admin calls through the REST API ------------------------------------------------------------

    def _call(self, method, path, token=None, body=None, headers=None):
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers=dict({"Content-Type": "application/json"}, **(headers or {})))
        if token:
            req.add_header("X-Auth-Token", token)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = resp.read()
                return resp.status, dict(resp.headers), json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode(errors="replace")

    def password_token(self, user, password, project):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
        status, headers, data = self._call("POST", "/auth/tokens", body=body)
        if status != 201:
            raise RuntimeError("keystone token for %s: %s %s" % (user, status, data))
        return headers["X-Subject-Token"]

    def admin_token(self):
        return self.password_token("admin", self.admin_password, "admin")

    def admin(self, method, path, body=None, expect=(200, 201, 204)):
        status, _h, data = self._call(method, path, self.admin_token(), body)
        if status not in expect:
            raise RuntimeError("keystone %s %s: %s %s" % (method, path, status, data))
        return data

    def role_id(self, name):
        return self.admin("GET", "/roles?name=%s" % name)["roles"][0]["id"]

    def project_id(self, name):
        return self.admin("GET", "/projects?name=%s" % name)["projects"][0]["id"]

    def user_id(self, name):
        return self.admin("GET", "/users?name=%s" % name)["users"][0]["id"]

    def _create_demo_project(self):
        token = self.admin_token()

        def call(method, path, body=None):
            status, _h, data = self._call(method, path, token, body)
            if status not in (200, 201, 204):
                raise RuntimeError("keystone %s %s: %s %s" % (method, path, status, data))
            return data

        project = call("POST", "/projects", {"project": {"name": "demo", "domain_id": "default"}})["project"]
        for name in ("member", "reader"):
            password = secrets.token_urlsafe(18)
            user = call("POST", "/users", {"user": {"name": name, "password": password, "domain_id": "default",
                                                    "default_project_id": project["id"]}})["user"]
            role = call("GET", "/roles?name=%s" % name)["roles"][0]
            call("PUT", "/projects/%s/users/%s/roles/%s" % (project["id"], user["id"], role["id"]))
            self.users[name] = {"id": user["id"], "password": password, "project": "demo", "project_id": project["id"]}
        fd = os.open(os.path.join(self.dir, "users.json"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(self.users, f)

    def register_service(self, user, password, name, service_type, url):
        """A service user (roles admin + service on project ``service``) and the service's public/internal/
        admin endpoints in the catalog, plus Keystone's own identity endpoints (keystonemiddleware finds
        Keystone through the catalog). Idempotent: endpoints that exist get ``url``."""
        def one(path, key, create):
            found = self.admin("GET", path)[key]
            return found[0] if found else self.admin("POST", "/" + key, {key[:-1]: create})[key[:-1]]

        project = one("/projects?name=service", "projects", {"name": "service", "domain_id": "default"})
        account = one("/users?name=%s" % user, "users", {"name": user, "password": password, "domain_id": "default"})
        for role_name in ("admin", "service"):
            role = one("/roles?name=%s" % role_name, "roles", {"name": role_name})
            self.admin("PUT", "/projects/%s/users/%s/roles/%s" % (project["id"], account["id"], role["id"]))
        if "RegionOne" not in [r["id"] for r in self.admin("GET", "/regions")["regions"]]:
            self.admin("POST", "/regions", {"region": {"id": "RegionOne"}})
        for svc_name, svc_type, svc_url in (("keystone", "identity", self.url), (name, service_type, url)):
            service = one("/services?type=%s" % svc_type, "services", {"name": svc_name, "type": svc_type})
            have = {e["interface"]: e["id"] for e in self.admin("GET", "/endpoints?service_id=%s" % service["id"])["endpoints"]}
            for interface in ("public", "internal", "admin"):
                if interface in have:
                    self.admin("PATCH", "/endpoints/%s" % have[interface], {"endpoint": {"url": svc_url}})
                else:
                    self.admin("POST", "/endpoints", {"endpoint": {"service_id": service["id"], "interface": interface,
                                                                   "url": svc_url, "region_id": "RegionOne"}})

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self):
        """SIGTERM every server we started (uwsgi --die-on-term takes ~2-3 s), then wait; SIGKILL after 20 s."""
        for server in self.servers:
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        for server in self.servers:
            try:
                server.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait(timeout=10)

    def all_stopped(self):
        return all(s.proc.poll() is not None for s in self.servers)


def wait_serving(proc, url, log, what, timeout=120):
    """Wait until ``GET url`` answers 200 (a uwsgi server just started as ``proc``); RuntimeError with the
    log's tail when the process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError("%s (uwsgi) exited with %s before serving; log %s:\n%s" % (what, proc.returncode, log, _tail(log)))
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("%s at %s not serving after %d s; log %s:\n%s" % (what, url, timeout, log, _tail(log)))
        time.sleep(0.1)


def _tail(path, n=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-n:]
    except OSError as exc:
        return str(exc)
