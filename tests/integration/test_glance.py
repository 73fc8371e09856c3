# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The playbooks, unchanged, with ``image_backend: glance`` against a REAL Glance and a REAL Keystone.

Keystone 30 and Glance 33 (from PyPI, tests/openstack/keystone.sh + glance.sh) run on SQLite under
uwsgi on 127.0.0.1 for this module; Glance validates every token with Keystone (keystonemiddleware,
service user ``glance``) and is registered in Keystone's catalog. The collection finds both only
through the controller's environment: BOOTFLOW_AUTH_BACKEND=keystone + OS_CLOUD (a 0600 clouds.yaml),
BOOTFLOW_IMAGE_BACKEND=glance, and no Glance URL at all: the image endpoint comes from the catalog.
Glance listens on loopback; the test host (bfhv111, its own network namespace) cannot reach it, so the
controller downloads and sends the image, as it does from its local store.

In file order: bootstrap.yml registers the test image in Glance; two boot.yml runs of that image AT
THE SAME TIME (held at the controller's per-host lock until both have looked at the empty cache) both
get ACTIVE guests with their leases while Glance serves the image once; a corrupted Glance file and an
image Glance accepted with a lying disk_format are refused (the cache and the DB stay as they were;
the lying one also through boot.yml: instance ERROR with the reason); a qcow2 with a backing file
never gets into Glance; flavors below min_ram / min_disk are refused before anything is written; a
snapshot of gl-a goes into Glance and a new instance boots from it; the image is deleted in Glance,
then delete.yml + image_cache.yml leave no instance and an empty cache. Glance and Keystone are stopped
by PID.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import INVENTORY_SH, REPO, TESTHOST, Env, wait_console
from image_helpers import (GUEST_QCOW2, INSTANCES, MEANWHILE_RE, TRANSFER_RE, base_files, cache_name, cache_snapshot,
                           controller_fetch_lock, db_dump, finish_boot, flock_waiters, image_ops, image_row, instance,
                           sha512, start_boot, write_secret)

sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
import glance_server  # noqa: E402  # tests/openstack/glance_server.py
import keystone_server  # noqa: E402  # tests/openstack/keystone_server.py

HOST_N = int(os.environ.get("BOOTFLOW_IT_GLANCE_HOST", "111"))
CLOUD = "bootflow-glance-it"
PAIR = ("gl-a", "gl-b")
OPENRC = ("OS_AUTH_URL", "OS_CLOUD", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
          "OS_PROJECT_DOMAIN_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE", "OS_CACERT", "OS_PROJECT_ID",
          "BOOTFLOW_GLANCE_URL", "BOOTFLOW_FORCE_RAW_IMAGES")


class GlanceAdmin:
    """Glance as Keystone's admin, straight through the image API (what another tool would do)."""

    def __init__(self, keystone, glance):
        self.keystone, self.glance = keystone, glance

    def call(self, method, path, body=None, data=None, ctype="application/json"):
        import urllib.request
        import urllib.error
        req = urllib.request.Request(self.glance.url + "/v2" + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else data,
                                     headers={"X-Auth-Token": self.keystone.admin_token(), "Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                text = resp.read()
                return resp.status, json.loads(text) if text else None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    def upload(self, name, path, disk_format):
        status, image = self.call("POST", "/images", {"name": name, "disk_format": disk_format,
                                                      "container_format": "bare", "visibility": "public"})
        assert status == 201, image
        with open(path, "rb") as f:
            status, body = self.call("PUT", "/images/%s/file" % image["id"], data=f.read(), ctype="application/octet-stream")
        return image["id"], status, body

    def image(self, image_id):
        return self.call("GET", "/images/%s" % image_id)[1]

    def named(self, name):
        return self.call("GET", "/images?name=%s" % name)[1]["images"]


@pytest.fixture(scope="module")
def gl_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("bootflow-glance-it")
    keystone = keystone_server.KeystoneServer(base)
    glance = glance_server.GlanceServer(base, keystone=keystone)
    subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
    try:
        t0 = time.monotonic()
        keystone.start()
        glance.start()
        print("\nkeystone + glance up in %.1f s (glance: %s)" % (
            time.monotonic() - t0, ", ".join("%s %.1f s" % kv for kv in glance.timings.items())))
        clouds = write_secret(base / "clouds.yaml", json.dumps({"clouds": {CLOUD: {"auth": {
            "auth_url": keystone.url, "username": "admin", "password": keystone.admin_password,
            "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"}}}}))
        subprocess.run([TESTHOST, "start", str(HOST_N)], check=True, timeout=120)
        inventory = base / "inventory.ini"
        inventory.write_text(subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE,
                                            text=True).stdout)
        env = Env(base / "state", inventory, HOST_N)
        for name in OPENRC:
            env.env.pop(name, None)
        env.env.update(BOOTFLOW_AUTH_BACKEND="keystone", OS_CLOUD=CLOUD, OS_CLIENT_CONFIG_FILE=clouds,
                       BOOTFLOW_IMAGE_BACKEND="glance")
        env.keystone, env.glance, env.base = keystone, glance, base
        env.admin = GlanceAdmin(keystone, glance)
        env.play("bootstrap.yml")
        env.play("hypervisors.yml")
        yield env
    finally:
        subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
        glance.stop()
        keystone.stop()
        assert glance.stopped() and keystone.all_stopped()


def store_files(env):
    """The controller's local image store (unused with the glance backend but for temporary downloads)."""
    path = os.path.join(str(env.state_dir), "images")
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def test_bootstrap_registered_the_guest_in_glance(gl_env):
    env = gl_env
    row = image_row(env, "bootflow-guest")
    image = env.admin.image(row["id"])
    assert (image["status"], image["visibility"], image["disk_format"]) == ("active", "public", "qcow2")
    assert image["owner"] == env.keystone.project_id("admin")
    assert image["os_hash_algo"] == "sha512" and image["os_hash_value"] == sha512(GUEST_QCOW2)
    assert os.path.getsize(os.path.join(env.glance.store_dir, row["id"])) == image["size"]
    # bootflow keeps Glance's record under Glance's id; the file is Glance's, not in the controller's store
    assert (row["owner"], row["os_hash_value"], row["size"]) == (image["owner"], image["os_hash_value"], image["size"])
    assert row["location"] == "glance+%s/v2/images/%s" % (env.glance.url, row["id"])
    assert store_files(env) == []
    assert "BOOTFLOW_GLANCE_URL" not in env.env       # found through Keystone's catalog


@pytest.fixture(scope="module")
def pair(gl_env, tmp_path_factory):
    """gl-a and gl-b booted at the same time on an empty cache: the test holds the controller's lock for
    (bfhv111, image) until both boots have looked at the host's cache and wait for it."""
    env = gl_env
    image = image_row(env, "bootflow-guest")
    logs = tmp_path_factory.mktemp("glance-pair")
    downloads_before = env.glance.downloads(image["id"])
    assert base_files(env) == []
    lock = controller_fetch_lock(env, env.host, image["id"])
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    procs = {}
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        for name in PAIR:
            procs[name] = start_boot(env, name, logs / ("%s.log" % name))
        deadline = time.monotonic() + 300
        while flock_waiters(lock) < 2:
            for name, proc in procs.items():
                assert proc.poll() is None, "%s ended before image_fetch waited:\n%s" % (
                    name, (logs / ("%s.log" % name)).read_text()[-4000:])
            assert time.monotonic() < deadline, "the two boots never both waited for the image lock"
            time.sleep(0.2)
        held_with_waiters = flock_waiters(lock)
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    plays = {name: finish_boot(proc, logs / ("%s.log" % name)) for name, proc in procs.items()}
    return {"image": image, "plays": plays, "waiters": held_with_waiters,
            "downloads": env.glance.downloads(image["id"]) - downloads_before}


def test_two_boots_at_the_same_time_download_once(gl_env, pair):
    env, image = gl_env, pair["image"]
    for name, play in pair["plays"].items():
        assert play.rc == 0, "%s:\n%s" % (name, play.out[-5000:])
    assert pair["waiters"] == 2
    outputs = "\n".join(p.out for p in pair["plays"].values())
    transfers = TRANSFER_RE.findall(outputs)
    meanwhile = MEANWHILE_RE.findall(outputs)
    # one boot downloaded it from Glance (verified on the controller) and sent it; the other, which had
    # also found the cache empty, looked again after the lock and only made its overlay
    assert [(t[1], t[3]) for t in transfers] == [(image["id"], "glance")], outputs[-4000:]
    assert [m[1] for m in meanwhile] == [image["id"]]
    assert pair["downloads"] == 1
    served = [line for line in env.glance.requests() if line[0] == "GET" and line[1] == "/v2/images/%s/file" % image["id"]]
    assert [status for _m, _p, status in served] == [200]
    name = cache_name(image["id"])
    assert base_files(env) == [name, name + ".info"]
    assert env.ssh("sha512sum %s/_base/%s" % (INSTANCES, name)).split()[0] == image["os_hash_value"]


def test_both_guests_are_active_with_their_leases(gl_env, pair):
    env = gl_env
    for name in PAIR:
        inst = instance(env, name)
        assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == ("active", None, "RUNNING")
        assert inst["image_id"] == pair["image"]["id"]
        port = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
        assert wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)").group(1) == port["ip"]
        assert "REQUEST FLOW [%s]" % name in pair["plays"][name].out


def test_corrupted_glance_file_is_refused_on_the_controller(gl_env, pair, tmp_path):
    env = gl_env
    registered, _f = image_ops(env, tmp_path, register=[{"name": "gl-corrupt", "filename": GUEST_QCOW2}])
    image = registered["gl-corrupt"]["image"]
    with open(os.path.join(env.glance.store_dir, image["id"]), "r+b") as f:     # Glance's copy rots
        f.seek(1 << 20)
        f.write(b"\xde\xad\xbe\xef")
    before = {"host": cache_snapshot(env), "db": db_dump(env)}
    downloads = env.glance.downloads(image["id"])
    _r, fetched = image_ops(env, tmp_path, fetch=[image["id"]])
    result = fetched[image["id"]]
    assert result["failed"] and re.match(
        r"^checksum mismatch \(sha512\) downloading image %s from Glance: expected %s got [0-9a-f]{128}; refusing it$"
        % (image["id"], image["os_hash_value"]), result["msg"]), result
    assert env.glance.downloads(image["id"]) == downloads + 1      # Glance served the bad bytes...
    assert {"host": cache_snapshot(env), "db": db_dump(env)} == before   # ...they never reached the host
    assert store_files(env) == []                                  # (no temporary download left either)


def test_lying_disk_format_accepted_by_glance_is_refused_on_the_host(gl_env, pair, tmp_path):
    env = gl_env
    # Glance 33 inspects uploads, but lets a qcow2 through as disk_format raw (it cannot tell a raw
    # disk that happens to start like a qcow2): the host's format check is what stops it
    image_id, status, _body = env.admin.upload("gl-liar", GUEST_QCOW2, "raw")
    assert status == 204 and env.admin.image(image_id)["status"] == "active"
    cache_before = cache_snapshot(env)
    res = env.play("boot.yml", "-e", "bootflow_instance_name=gl-liar", "-e", "bootflow_image=gl-liar", check=False)
    assert res.rc != 0
    inst = instance(env, "gl-liar")
    assert inst["vm_state"] == "error"
    fault = env.query("SELECT * FROM instances WHERE uuid=?", inst["uuid"])[0]
    assert "image format mismatch: declared raw but the content is qcow2; refusing it" in json.dumps(fault)
    assert cache_snapshot(env) == cache_before
    env.play("delete.yml", "-e", "bootflow_instance_name=gl-liar")
    # the image step alone, DB and cache diffed
    before = {"host": cache_snapshot(env), "db": db_dump(env)}
    _r, fetched = image_ops(env, tmp_path, fetch=[image_id])
    assert fetched[image_id]["failed"]
    assert fetched[image_id]["msg"] == "image format mismatch: declared raw but the content is qcow2; refusing it"
    assert {"host": cache_snapshot(env), "db": db_dump(env)} == before


def test_qcow2_with_a_backing_file_never_gets_into_glance(gl_env, tmp_path):
    env = gl_env
    bad = str(tmp_path / "backed.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", bad], check=True)
    before = db_dump(env)
    registered, _f = image_ops(env, tmp_path, register=[{"name": "gl-backed", "filename": bad}])
    assert registered["gl-backed"]["failed"]
    assert registered["gl-backed"]["msg"] == ("Image file %s is a qcow2 with a backing file (/etc/hostname); upload a "
                                              "self-contained image." % bad)
    assert env.admin.named("gl-backed") == [] and db_dump(env) == before      # refused before Glance was asked
    # and Glance itself refuses the upload (its own safety check): the image stays without data
    image_id, status, body = env.admin.upload("gl-backed-direct", bad, "qcow2")
    assert status == 415 and env.admin.image(image_id)["status"] == "queued", body
    env.admin.call("DELETE", "/images/%s" % image_id)


@pytest.mark.parametrize("option,value,message", [
    ("min_ram", 4096, "Flavor m1.tiny's memory (128 MB) is smaller than the image's min_ram (4096 MB)."),
    ("min_disk", 5, "Flavor m1.tiny's disk (1 GB) is smaller than the image's min_disk (5 GB)."),
])
def test_flavor_below_the_image_minimum_is_refused_before_anything_is_written(gl_env, pair, tmp_path, option, value, message):
    env = gl_env
    name = "gl-%s" % option.replace("_", "-")
    image_ops(env, tmp_path, register=[{"name": name, "filename": GUEST_QCOW2, option: value}])
    assert env.admin.named(name)[0][option] == value
    before = {"host": cache_snapshot(env), "db": db_dump(env)}
    res = env.play("boot.yml", "-e", "bootflow_instance_name=gl-small", "-e", "bootflow_image=%s" % name, check=False)
    assert res.rc != 0 and message in res.out, res.out[-3000:]
    assert {"host": cache_snapshot(env), "db": db_dump(env)} == before


def test_a_snapshot_goes_into_glance_and_a_new_instance_boots_from_it(gl_env, pair):
    """server_action.yml's snapshot with the glance backend: the host's copy is uploaded into Glance (Glance computes
    the hashes), the controller keeps no staging copy, and boot.yml boots the snapshot from Glance."""
    env = gl_env
    source = instance(env, PAIR[0])
    env.play("server_action.yml", "-e", json.dumps({"bootflow_instance_name": PAIR[0], "bootflow_action": "snapshot",
                                                    "bootflow_snapshot_name": "gl-snap"}))
    row = image_row(env, "gl-snap")
    image = env.admin.image(row["id"])
    assert (image["status"], image["visibility"], image["disk_format"]) == ("active", "private", "qcow2")
    assert (image["image_type"], image["instance_uuid"], image["base_image_ref"]) == (
        "snapshot", source["uuid"], pair["image"]["id"])
    assert image["os_hash_value"] == sha512(os.path.join(env.glance.store_dir, row["id"])) == row["os_hash_value"]
    assert store_files(env) == []
    assert "snapshot.qcow2" not in env.ssh("ls %s/%s" % (INSTANCES, source["uuid"]))
    env.play("boot.yml", "-e", json.dumps({"bootflow_instance_name": "gl-snap-vm", "bootflow_image": "gl-snap"}))
    try:
        vm = instance(env, "gl-snap-vm")
        assert (vm["image_id"], vm["vm_state"]) == (row["id"], "active")
        wait_console(env, vm["uuid"], r"GUEST-DHCP-LEASE: ")
    finally:
        env.play("delete.yml", "-e", "bootflow_instance_name=gl-snap-vm")


def test_delete_and_cache_cleanup_leave_nothing(gl_env, pair):
    env = gl_env
    # the image goes away in Glance first (someone else deleted it): deleting its instances still works
    status, _body = env.admin.call("DELETE", "/images/%s" % pair["image"]["id"])
    assert status == 204
    for name in PAIR:
        env.play("delete.yml", "-e", "bootflow_instance_name=%s" % name)
    assert env.host_snapshot()["instances"] == []
    assert env.query("SELECT name FROM instances WHERE deleted=0") == []
    env.play("image_cache.yml", "-e", "bootflow_image_cache_max_age=0")
    assert base_files(env) == []
