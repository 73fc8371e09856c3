# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Placement for a test session (tests/openstack/placement.sh): SQLite in a temp dir, uwsgi on
127.0.0.1 and a free port, stopped by its PID.

``PlacementServer(base).start()`` serves with ``auth_strategy = noauth2`` (no Keystone; the token
``admin`` is an admin). ``PlacementServer(base, keystone=ks).start()`` first registers service user
``placement`` (roles admin and service on project ``service``) and the ``placement`` service with its
endpoints in that real Keystone (``keystone_server.KeystoneServer``), then serves with keystone auth.
``stop()`` sends SIGTERM to the server (by PID) and waits for it to exit.

``call()`` and the small readers (``providers``, ``inventories``, ``usages``, ``allocations``) let a test
look at Placement's own view, independently of the collection's client.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

from keystone_server import free_port, wait_serving

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "placement.sh")
MICROVERSION = "placement 1.39"


class PlacementServer:
    def __init__(self, base, keystone=None):
        self.base = str(base)
        self.dir = os.path.join(self.base, "placement")
        self.keystone = keystone
        self.auth = "keystone" if keystone is not None else "noauth2"
        self.proc = None
        self.port = None
        self.log = None
        self.timings = {}

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def pid(self):
        return self.proc.pid

    def setup(self):
        t0 = time.monotonic()
        proc = subprocess.run(["bash", SCRIPT, "setup", self.dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError("placement.sh setup failed (rc=%d):\n%s" % (proc.returncode, proc.stdout[-4000:]))
        self.timings["setup"] = time.monotonic() - t0

    def register_in_keystone(self):
        """Service user ``placement`` and the placement endpoints in the catalog (KeystoneServer.register_service)."""
        t0 = time.monotonic()
        with open(os.path.join(self.dir, "placement-password")) as f:
            self.keystone.register_service("placement", f.read().strip(), "placement", "placement", self.url)
        self.timings["register"] = time.monotonic() - t0

    def serve(self, timeout=120):
        self.port = free_port()
        if self.keystone is not None:
            self.register_in_keystone()
        self.log = os.path.join(self.dir, "uwsgi-%d.log" % self.port)
        argv = ["bash", SCRIPT, "serve", self.dir, str(self.port), self.auth]
        if self.keystone is not None:
            argv.append(self.keystone.url)
        t0 = time.monotonic()
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        wait_serving(self.proc, self.url + "/", self.log, "placement", timeout)
        self.timings["serve"] = time.monotonic() - t0
        return self

    def start(self):
        self.setup()
        return self.serve()

    # --- Placement's own view (admin) ----------------------------------------------------------------

    def admin_token(self):
        return self.keystone.admin_token() if self.keystone is not None else "admin"

    def call(self, method, path, body=None, token=None):
        """(status, parsed body or text) of one request with an admin token and microversion 1.39."""
        req = urllib.request.Request(self.url + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json", "Accept": "application/json",
                                              "OpenStack-API-Version": MICROVERSION,
                                              "X-Auth-Token": token or self.admin_token()})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = resp.read()
                return resp.status, json.loads(data) if data else None
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                return exc.code, json.loads(text)
            except ValueError:
                return exc.code, text

    def get(self, path):
        status, data = self.call("GET", path)
        if status != 200:
            raise RuntimeError("placement GET %s: %s %s" % (path, status, data))
        return data

    def providers(self):
        """name -> uuid of every resource provider."""
        return {p["name"]: p["uuid"] for p in self.get("/resource_providers")["resource_providers"]}

    def inventories(self, rp_uuid):
        return self.get("/resource_providers/%s/inventories" % rp_uuid)["inventories"]

    def usages(self, rp_uuid):
        return self.get("/resource_providers/%s/usages" % rp_uuid)["usages"]

    def allocations(self, consumer):
        """rp uuid -> resources of the consumer's allocations ({} when it has none)."""
        return {rp: a["resources"] for rp, a in self.get("/allocations/%s" % consumer)["allocations"].items()}

    def provider_allocations(self, rp_uuid):
        """consumer -> resources on one provider."""
        return {c: a["resources"] for c, a in self.get("/resource_providers/%s/allocations" % rp_uuid)["allocations"].items()}

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self):
        """SIGTERM (uwsgi --die-on-term takes ~2-3 s), then wait; SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stopped(self):
        return self.proc is None or self.proc.poll() is not None
