# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image upload from an http(s) URL (``bootflow.cloud.image`` with ``url``), through real
ansible-playbook runs of the module against a real HTTP server on 127.0.0.1 (this test's own,
stopped at the end): the download is streamed into the store, hashed like a file upload, and a bad
URL, an HTTP error or a lying format leaves no image row and no file in the store.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
GUEST_QCOW2 = os.path.join(os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest"), "disk.qcow2")

PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - bootflow.cloud.identity_bootstrap:
        username: admin
        project: admin
    - bootflow.cloud.token: {}
      register: tok
      no_log: true
    - bootflow.cloud.image:
        auth_token: "{{ tok.token }}"
        name: "{{ image_name }}"
        url: "{{ image_url }}"
        disk_format: "{{ image_format | default('qcow2') }}"
      register: result
    - ansible.builtin.copy:
        content: "{{ result | to_json }}"
        dest: "{{ out }}"
        mode: "0600"
"""


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)

    def do_GET(self):
        if self.path == "/redirect-to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture(scope="module")
def http_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    os.symlink(GUEST_QCOW2, root / "guest.qcow2")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1], server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def operator_allows_the_test_server(http_dir, tmp_path, monkeypatch):
    """The operator opts in to downloads from this test's loopback server (its port, 127.0.0.1): without
    that, the import filters refuse it (tests/unit/.../test_security_image.py)."""
    port = int(http_dir[0].rsplit(":", 1)[1])
    config = tmp_path / "operator.bootflow.yml"
    config.write_text("image:\n  url_allowed_ports: [80, 443, %d]\n  url_allowed_hosts: [127.0.0.1]\n" % port)
    config.chmod(0o600)
    monkeypatch.setenv("BOOTFLOW_CONFIG", str(config))


def _run(tmp_path, name, url, fmt="qcow2"):
    state = tmp_path / "state"
    play = tmp_path / "play.yml"
    play.write_text(PLAY)
    out = tmp_path / "result.json"
    if out.exists():
        out.unlink()
    env = dict(os.environ, BOOTFLOW_STATE_DIR=str(state), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", json.dumps({"image_name": name, "image_url": url, "image_format": fmt, "out": str(out),
                          "ansible_python_interpreter": sys.executable})],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    return proc, (json.loads(out.read_text()) if out.exists() else None), state


def _store(state):
    path = state / "images"
    return sorted(os.listdir(path)) if path.exists() else []


def _rows(state):
    db = _db.open_db(None, str(state))
    try:
        with db.tx() as conn:
            return [tuple(r) for r in conn.execute(_db.sa.text("SELECT name, status FROM images ORDER BY name"))]
    finally:
        db.dispose()


def test_url_upload_streams_hashes_and_is_idempotent(tmp_path, http_dir):
    base, server = http_dir
    proc, result, state = _run(tmp_path, "from-url", base + "/guest.qcow2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    with open(GUEST_QCOW2, "rb") as f:
        data = f.read()
    image = result["image"]
    assert result["changed"] is True and image["status"] == "active"
    assert image["checksum"] == hashlib.md5(data).hexdigest()  # Glance's legacy checksum, not security
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest() and image["size"] == len(data)
    assert _store(state) == [image["id"]]       # the staging download is gone
    assert oct(os.stat(state / "images" / image["id"]).st_mode & 0o777) == "0o600"
    # same name, same bytes: no change, nothing new in the store
    proc, result, state = _run(tmp_path, "from-url", base + "/guest.qcow2")
    assert proc.returncode == 0 and result["changed"] is False and result["image"]["id"] == image["id"]
    assert _store(state) == [image["id"]]
    assert server.requests.count("/guest.qcow2") == 2


@pytest.mark.parametrize("path, fmt, message", [
    ("/missing.qcow2", "qcow2", "HTTP 404"),
    ("/guest.qcow2", "raw", "is qcow2 but disk_format says raw"),
    ("/redirect-to-file", "qcow2", "Downloading the image from"),
])
def test_url_failures_leave_nothing(tmp_path, http_dir, path, fmt, message):
    base, _server = http_dir
    proc, _result, state = _run(tmp_path, "bad", base + path, fmt)
    assert proc.returncode != 0
    assert message in proc.stdout, proc.stdout[-3000:]
    assert _store(state) == [] and _rows(state) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x.qcow2", "/etc/passwd", "http:///x",
                                 "../../etc/passwd"])
def test_only_http_urls_with_a_host_are_downloaded(tmp_path, url):
    with pytest.raises(InvalidRequest, match="url must be an http:// or https:// URL"):
        _images.download_url(url, str(tmp_path))
    assert _store(tmp_path) == []


def test_credentials_in_the_url_never_reach_the_message(tmp_path):
    with pytest.raises(InvalidRequest) as exc:
        _images.download_url("http://user:s3cret@127.0.0.1:9/x.qcow2", str(tmp_path), timeout=5)
    assert "s3cret" not in str(exc.value) and "127.0.0.1:9/x.qcow2" in str(exc.value)
    assert _store(tmp_path) == []
