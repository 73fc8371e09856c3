# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, findings 5-7 (images), replayed as a member through real ansible-playbook runs of
bootflow.cloud.image on the controller. No test host and no guest is needed: everything these attacks
could reach is on the controller (its files, its network, its image store, its database).

- 5: project B's member registers a community image "cirros": project A's member does not find it by
  name, and the admin registers the public "cirros", which A then finds;
- 6: a member's filename pointing at the state dir (admin-password, a Fernet key, the database), through a
  symlink in the upload dir or a ``..`` escape: refused;
- 7: a member's url to loopback, the metadata address, a private network, a port not allowed, file://:
  refused before any connection (a listener on 127.0.0.1 sees none); an image over the size cap, with and
  without a Content-Length: refused, nothing left; the project's image quota: refused.

Each refusal fails the task with a clear message and leaves the whole database and the state dir (the image
store included) as they were.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIB = 1024 * 1024

SETUP = """
- hosts: localhost
  gather_facts: false
  tasks:
    - bootflow.cloud.identity_bootstrap:
        username: admin
        project: admin
    - bootflow.cloud.token: {}
      register: admin
      no_log: true
    - module_defaults:
        group/bootflow.cloud.bootflow:
          auth_token: "{{ admin.token }}"
      block:
        - bootflow.cloud.project:
            name: "{{ item }}"
          loop: [sec-a, sec-b]
        - bootflow.cloud.user:
            name: "{{ item.user }}"
            password: "{{ item.user }}-pw"
            default_project: "{{ item.project }}"
          loop: &people [{user: sec-alice, project: sec-a}, {user: sec-bob, project: sec-b}]
        - bootflow.cloud.role_assignment:
            user: "{{ item.user }}"
            project: "{{ item.project }}"
            role: member
          loop: *people
    - bootflow.cloud.token:
        username: "{{ item }}"
        password: "{{ item }}-pw"
      loop: [sec-alice, sec-bob]
      register: members
      no_log: true
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ {'admin': admin.token, 'alice': members.results[0].token, 'bob': members.results[1].token} | to_json }}"
      no_log: true
"""

CASES = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Quotas first (admin)
      bootflow.cloud.quota:
        auth_token: "{{ admin_token }}"
        project: "{{ item.project }}"
        image_count_total: "{{ item.image_count_total | default(omit) }}"
        image_size_total: "{{ item.image_size_total | default(omit) }}"
      loop: "{{ quotas | default([]) }}"
      no_log: true
    - name: The cases
      bootflow.cloud.image:
        auth_token: "{{ token }}"
        name: "{{ item.name }}"
        filename: "{{ item.filename | default(omit) }}"
        url: "{{ item.url | default(omit) }}"
        url_timeout: "{{ item.url_timeout | default(omit) }}"
        disk_format: "{{ item.disk_format | default('raw') }}"
        visibility: "{{ item.visibility | default(omit) }}"
        state: "{{ item.state | default(omit) }}"
      loop: "{{ cases }}"
      register: results
      ignore_errors: true
    - ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "{{ results.results | to_json }}"
"""


def _secret(path, text):
    with open(os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(text)
    return str(path)


class World:
    def __init__(self, base):
        self.base, self.state, self.uploads = base, base / "state", base / "uploads"
        self.uploads.mkdir()
        self.env = dict(os.environ, BOOTFLOW_STATE_DIR=str(self.state), ANSIBLE_CONFIG=os.path.join(REPO, "ansible.cfg"),
                        ANSIBLE_NOCOLOR="1")
        self.env.pop("BOOTFLOW_CONFIG", None)
        self.runs = 0

    def operator(self, **image):
        """<state_dir>/bootflow.yml, the operator's configuration (section image)."""
        self.state.mkdir(mode=0o700, exist_ok=True)
        _secret(self.state / "bootflow.yml", json.dumps({"image": dict(image, upload_dir=str(self.uploads))}))

    def play(self, text, extra):
        self.runs += 1
        play = self.base / ("play-%d.yml" % self.runs)
        play.write_text(text)
        out = self.base / ("out-%d.json" % self.runs)
        extra = dict(extra, out=str(out), ansible_python_interpreter=sys.executable)
        varfile = _secret(self.base / ("vars-%d.json" % self.runs), json.dumps(extra))
        proc = subprocess.run(
            [os.path.join(REPO, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
             "-e", "@" + varfile], cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=600, check=False)
        assert proc.returncode == 0, proc.stdout[-4000:]
        return json.loads(out.read_text())

    def cases(self, who, cases, quotas=()):
        return self.play(CASES, {"token": self.tokens[who], "admin_token": self.tokens["admin"], "cases": list(cases),
                                 "quotas": list(quotas)})

    def everything(self):
        """Every row of every table, and every file of the state dir with its size (the image store included)."""
        conn = sqlite3.connect("file:%s?mode=ro" % (self.state / "bootflow.db"), uri=True)
        try:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = {t: sorted(map(repr, conn.execute('SELECT * FROM "%s"' % t))) for t in tables}
        finally:
            conn.close()
        files = sorted((os.path.relpath(os.path.join(top, f), self.state), os.path.getsize(os.path.join(top, f)))
                       for top, _d, names in os.walk(self.state) for f in names if not f.startswith("bootflow.db"))
        return rows, files


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("sec-image"))
    w.operator()
    w.tokens = w.play(SETUP, {})
    assert set(w.tokens) == {"admin", "alice", "bob"}
    for name, byte in (("cirros-b.raw", b"\1"), ("cirros-public.raw", b"\2"), ("ok.raw", b"\3")):
        (w.uploads / name).write_bytes(byte * 8192)
    return w


def refused(result, kind, message):
    assert result.get("failed") and result.get("error") == kind and message in result.get("msg", ""), result


def test_attack_community_image_squatting_a_name(world):
    w = world
    (squat,) = w.cases("bob", [{"name": "cirros", "filename": str(w.uploads / "cirros-b.raw"), "visibility": "community"}])
    assert squat["changed"] and squat["image"]["visibility"] == "community", squat
    before = w.everything()
    (lookup,) = w.cases("alice", [{"name": "cirros", "state": "deactivated"}])
    refused(lookup, "not_found", "Image cirros could not be found")
    assert w.everything() == before
    (public,) = w.cases("admin", [{"name": "cirros", "filename": str(w.uploads / "cirros-public.raw"),
                                   "visibility": "public"}])
    assert public["changed"] and public["image"]["id"] != squat["image"]["id"], public
    (found,) = w.cases("alice", [{"name": "cirros"}])        # present without a file: the lookup by name
    assert not found.get("failed") and found["image"]["id"] == public["image"]["id"], found
    (by_id,) = w.cases("alice", [{"name": squat["image"]["id"]}])
    assert not by_id.get("failed") and by_id["image"]["id"] == squat["image"]["id"], by_id


def test_attack_member_filename_in_the_state_dir(world):
    w = world
    fernet = sorted((w.state / "fernet-keys").iterdir())[0]
    link = w.uploads / "innocent.raw"
    if not link.exists():
        os.symlink(w.state / "admin-password", link)
    (w.uploads / "sub").mkdir(exist_ok=True)
    attacks = [str(w.state / "admin-password"), str(fernet), str(w.state / "bootflow.db"), str(link),
               str(w.uploads / "sub" / ".." / ".." / "state" / "admin-password")]
    before = w.everything()
    results = w.cases("alice", [{"name": "loot-%d" % i, "filename": f} for i, f in enumerate(attacks)])
    for result in results:
        refused(result, "auth", "is in bootflow's state")
    (outside,) = w.cases("alice", [{"name": "loot", "filename": "/etc/hostname"}])
    refused(outside, "auth", "is not in the upload directory")
    (admin,) = w.cases("admin", [{"name": "loot", "filename": str(w.state / "admin-password")}])
    refused(admin, "auth", "is in bootflow's state")
    assert w.everything() == before


@pytest.fixture()
def listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    seen, stop = [], threading.Event()

    def run():
        while not stop.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                continue
            seen.append(addr)
            conn.close()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield sock.getsockname()[1], seen
    stop.set()
    thread.join()
    sock.close()


def test_attack_member_url_to_internal_targets(world, listener):
    w = world
    port, seen = listener
    attacks = [
        ("http://127.0.0.1:%d/x.raw" % port, "port %d is not allowed" % port),
        ("http://localhost/x.raw", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "a link-local address"),
        ("http://10.0.0.1/x.raw", "a private address"),
        ("http://93.184.216.34:8080/x.raw", "port 8080 is not allowed"),
        ("file:///etc/passwd", "url must be an http:// or https:// URL"),
    ]
    before = w.everything()
    results = w.cases("alice", [{"name": "stolen-%d" % i, "url": url, "url_timeout": 3} for i, (url, _m) in enumerate(attacks)])
    for result, (_url, message) in zip(results, attacks):
        refused(result, "invalid", message)
    assert w.everything() == before and seen == []


class _Big(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        self.server.requests.append(self.path)

    def do_GET(self):
        self.send_response(200)
        if self.path != "/big-nolength":
            self.send_header("Content-Length", str(3 * MIB))
        self.end_headers()
        try:
            for _block in range(3 * MIB // 4096):
                self.wfile.write(b"\0" * 4096)
        except OSError:
            pass


@pytest.fixture()
def big_server(world):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Big)
    httpd.requests = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    port = httpd.server_address[1]
    # the operator opts in to this loopback server, and caps images at 1 MiB
    world.operator(url_allowed_ports=[port], url_allowed_hosts=["127.0.0.1"], image_size_cap=MIB)
    yield "http://127.0.0.1:%d" % port, httpd
    world.operator()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_attack_image_over_the_size_cap(world, big_server):
    w = world
    base, httpd = big_server
    before = w.everything()
    results = w.cases("alice", [{"name": "huge-1", "url": base + "/big"}, {"name": "huge-2", "url": base + "/big-nolength"}])
    for result in results:
        refused(result, "invalid", "larger than the image size cap (image.image_size_cap)")
    assert w.everything() == before and sorted(httpd.requests) == ["/big", "/big-nolength"]


def test_attack_image_quota_exceeded(world):
    w = world
    before_quota = w.cases("alice", [], quotas=[{"project": "sec-a", "image_count_total": 0}])
    assert before_quota == []
    before = w.everything()
    (result,) = w.cases("alice", [{"name": "one-too-many", "filename": str(w.uploads / "ok.raw")}])
    refused(result, "quota", "Quota exceeded for image_count_total")
    assert w.everything() == before
    w.cases("alice", [], quotas=[{"project": "sec-a", "image_count_total": 10, "image_size_total": 0}])
    before = w.everything()
    (result,) = w.cases("alice", [{"name": "too-big", "filename": str(w.uploads / "ok.raw")}])
    refused(result, "quota", "Quota exceeded for image_size_total")
    assert w.everything() == before
