# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Helpers of the image-service integration tests (test_glance.py, test_image_cache.py): snapshots
of a test host's image cache and of the controller DB, the image_ops.yml playbook, parallel boots.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

from conftest import REPO, PlayResult

IMAGE_OPS = os.path.join(REPO, "tests", "integration", "playbooks", "image_ops.yml")
INSTANCES = "/var/lib/bootflow/instances"
GUEST_DIR = os.environ.get("BOOTFLOW_GUEST_DIR", "/var/cache/bootflow/guest")
GUEST_QCOW2 = os.path.join(GUEST_DIR, "disk.qcow2")
GUEST_RAW = os.path.join(GUEST_DIR, "disk.raw")
TRANSFER_RE = re.compile(r"\[(\S+)\] image (\S+) not cached on \S+: transferring (\d+) MiB \((glance|store)\)")
MEANWHILE_RE = re.compile(r"\[(\S+)\] image (\S+) was sent to \S+ by another boot meanwhile")


def cache_name(image_id):
    return hashlib.sha1(image_id.encode()).hexdigest()


def sha512(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha512").hexdigest()


def cache_snapshot(env, with_mtimes=True):
    """The host's instances dir: every file and dir (type, size, inode; lock files and the running guests'
    own writes left out) and, for the image cache, the md5 of each file and its mtime."""
    out = env.ssh(
        "cd %s 2>/dev/null || exit 0; "
        "find . -mindepth 1 ! -path './locks/*' ! -name console.log -printf '%%y %%P %%i %%s\\n' "
        "| awk '$2 ~ /^[^_][^\\/]*\\/disk$/ {$4 = \"-\"} {print}'; "
        "echo ==; [ -d _base ] && find _base -type f -printf '%%P %%T@\\n' -exec md5sum {} \\;; true" % INSTANCES)
    files, _sep, cache = out.partition("==\n")
    snap = {"files": sorted(files.splitlines()), "cache": sorted(cache.splitlines())}
    if not with_mtimes:
        snap["cache"] = sorted(line for line in snap["cache"] if not re.match(r"^\S+ \d+\.\d+$", line))
    return snap


def base_files(env):
    """Names in the host's _base (bases and .info sidecars; download leftovers included)."""
    return sorted(env.ssh("ls -A %s/_base 2>/dev/null || true" % INSTANCES).split())


def db_dump(env):
    """Every row of every table of the controller DB, order-independent."""
    with env.db() as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        return {t: sorted(repr(tuple(r)) for r in conn.execute('SELECT * FROM "%s"' % t)) for t in tables}


def write_secret(path, text):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return str(path)


def image_ops(env, tmp_path, register=(), fetch=()):
    """Run playbooks/image_ops.yml: register images (as admin), pre-cache images on the host; returns
    ({name: registration result}, {image id: fetch result})."""
    out = tmp_path / ("image-ops-%d.json" % time.monotonic_ns())
    extra = write_secret(tmp_path / ("image-ops-vars-%d.json" % time.monotonic_ns()), json.dumps(
        {"register_images": list(register), "fetch_images": list(fetch), "out": str(out)}))
    env.play(IMAGE_OPS, "-e", "@" + extra)
    data = json.loads(out.read_text())
    return ({r["item"]["name"]: r for r in data["registered"]}, {r["item"]: r for r in data["fetched"]})


def instance(env, name):
    rows = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)
    assert len(rows) == 1, rows
    return rows[0]


def image_row(env, name):
    rows = env.query("SELECT * FROM images WHERE name=? AND status != 'deleted'", name)
    assert len(rows) == 1, rows
    return rows[0]


def start_boot(env, name, log_path, *extra):
    """boot.yml in the background (its output in log_path); returns the Popen."""
    cmd = ["ansible-playbook", "-i", str(env.inventory), os.path.join(REPO, "playbooks", "boot.yml"),
           "-e", "bootflow_instance_name=%s" % name, *extra]
    with open(log_path, "w") as out:
        return subprocess.Popen(cmd, cwd=REPO, env=env.env, stdout=out, stderr=subprocess.STDOUT)


def finish_boot(proc, log_path, timeout=600):
    proc.wait(timeout=timeout)
    with open(log_path) as f:
        return PlayResult(proc.returncode, f.read())


def flock_waiters(path):
    """Processes blocked in flock() on ``path`` (from /proc/locks: the lines marked '->')."""
    st = os.stat(path)
    inode = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    with open("/proc/locks") as f:
        return sum(1 for line in f if "->" in line and "FLOCK" in line and line.split()[-3] == inode)


def controller_fetch_lock(env, host, image_id):
    """The controller's lock file the image_fetch action takes per host and image (plugins/action/image_fetch.py)."""
    key = "%s\0%s\0%s" % (host, INSTANCES, image_id)
    lock_dir = os.path.join(str(env.state_dir), "locks")
    os.makedirs(lock_dir, mode=0o700, exist_ok=True)
    return os.path.join(lock_dir, "image-fetch-%s.lock" % hashlib.sha1(key.encode()).hexdigest())
