# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real Glance for a test session (tests/openstack/glance.sh): SQLite + file store in a temp dir,
uwsgi on 127.0.0.1 and a free port, stopped by its PID.

``GlanceServer(base, keystone=ks).start()`` registers service user ``glance`` (roles admin and
service on project ``service``) and the ``image`` service with its endpoints in that real Keystone
(``keystone_server.KeystoneServer``), then serves with keystone auth. ``GlanceServer(base).start()``
serves without auth (noauth: the controller is trusted, see glance.sh). ``stop()`` sends SIGTERM to
the server (by PID) and waits for it to exit.

``requests()`` reads uwsgi's request log, e.g. to count image downloads (``GET /v2/images/<id>/file``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from keystone_server import free_port, wait_serving

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "glance.sh")
_REQUEST = re.compile(r"\] (GET|PUT|POST|DELETE|PATCH|HEAD) (\S+) => generated \d+ bytes in \d+ msecs \(HTTP/[\d.]+ (\d+)\)")


class GlanceServer:
    def __init__(self, base, keystone=None):
        self.base = str(base)
        self.dir = os.path.join(self.base, "glance")
        self.keystone = keystone
        self.auth = "keystone" if keystone is not None else "noauth"
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

    @property
    def store_dir(self):
        """Glance's file store (filesystem_store_datadir): one file per image, named by its id."""
        return os.path.join(self.dir, "images")

    def setup(self):
        t0 = time.monotonic()
        proc = subprocess.run(["bash", SCRIPT, "setup", self.dir], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise RuntimeError("glance.sh setup failed (rc=%d):\n%s" % (proc.returncode, proc.stdout[-4000:]))
        self.timings["setup"] = time.monotonic() - t0

    def register_in_keystone(self):
        """Service user glance (admin + service roles on project service), the identity and image services
        and their endpoints in the catalog."""
        t0 = time.monotonic()
        with open(os.path.join(self.dir, "glance-password")) as f:
            self.keystone.register_service("glance", f.read().strip(), "glance", "image", self.url)
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
        wait_serving(self.proc, self.url + "/healthcheck", self.log, "glance", timeout)
        self.timings["serve"] = time.monotonic() - t0
        return self

    def start(self):
        self.setup()
        return self.serve()

    def requests(self):
        """[(method, path, status)] of every request uwsgi answered so far."""
        with open(self.log, errors="replace") as f:
            return [(m.group(1), m.group(2), int(m.group(3))) for m in map(_REQUEST.search, f) if m]

    def downloads(self, image_id=None):
        """Number of image data downloads (GET /v2/images/<id>/file) answered, for one image or all."""
        return sum(1 for method, path, _status in self.requests()
                   if method == "GET" and path.startswith("/v2/images/") and path.endswith("/file")
                   and (image_id is None or path.split("/")[3] == image_id))

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
