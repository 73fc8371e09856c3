# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The host image cache end to end, with the local image store (test host bfhv112).

In file order: boot.yml with force_raw_images caches the test image once, converted to raw (the
overlay's backing_fmt follows); a second instance of that image only gets its overlay; three bad
images (a corrupted store file, a qcow2 with an external backing file, a qcow2 declared raw) are
each refused on the host with a clear error and leave the host's cache and the controller DB exactly
as they were; playbooks/image_cache.yml removes an unused old base and keeps the one an instance
still uses (check mode + diff first); the last delete and a cleanup leave an empty cache.

The bad images get into the registry the way a tampered or older registry would hold them (their
file and record written directly): the image module itself refuses them at upload (unit tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid

import pytest

from conftest import host_session, wait_console
from image_helpers import (GUEST_QCOW2, GUEST_RAW, INSTANCES, TRANSFER_RE, base_files, cache_name, cache_snapshot,
                           db_dump, image_ops, image_row, instance)

HOST_N = int(os.environ.get("BOOTFLOW_IT_IMAGE_CACHE_HOST", "112"))
FIRST, SECOND = "ic-1", "ic-2"


@pytest.fixture(scope="module")
def ic_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-ic") as env:
        env.base = tmp_path_factory.mktemp("bootflow-ic-files")
        yield env


def qemu_img_info(env, path):
    return json.loads(env.ssh("qemu-img info --output=json -U %s" % path))


@pytest.fixture(scope="module")
def first(ic_env):
    env = ic_env
    saved = dict(env.env)
    env.env["BOOTFLOW_FORCE_RAW_IMAGES"] = "true"
    try:
        res = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % FIRST)
    finally:
        env.env = saved
    return {"play": res, "instance": instance(env, FIRST), "image": image_row(env, "bootflow-guest")}


def test_first_boot_caches_the_image_once_converted_to_raw(ic_env, first):
    env, inst, image = ic_env, first["instance"], first["image"]
    assert (inst["vm_state"], inst["power_state"]) == ("active", "RUNNING")
    port = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    assert wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)").group(1) == port["ip"]
    transfers = TRANSFER_RE.findall(first["play"].out)
    assert [(t[1], t[3]) for t in transfers] == [(image["id"], "store")], first["play"].out[-3000:]
    base = "%s/_base/%s" % (INSTANCES, cache_name(image["id"]))
    assert base_files(env) == [cache_name(image["id"]), cache_name(image["id"]) + ".info"]
    assert qemu_img_info(env, base)["format"] == "raw"                       # force_raw_images
    info = json.loads(env.ssh("cat %s.info" % base))
    assert (info["disk_format"], info["base_format"], info["os_hash_value"]) == ("qcow2", "raw", image["os_hash_value"])
    disk = qemu_img_info(env, "%s/%s/disk" % (INSTANCES, inst["uuid"]))
    assert (disk["format"], disk["backing-filename"], disk["backing-filename-format"]) == ("qcow2", base, "raw")
    assert disk["virtual-size"] == 1024 ** 3                                  # m1.tiny's 1 GB root disk


def test_second_instance_writes_only_its_overlay(ic_env, first):
    env, image = ic_env, first["image"]
    before = cache_snapshot(env, with_mtimes=False)
    res = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % SECOND)       # (no force_raw_images now)
    inst = instance(env, SECOND)
    assert inst["vm_state"] == "active"
    assert TRANSFER_RE.findall(res.out) == []                                   # nothing sent this time
    after = cache_snapshot(env, with_mtimes=False)
    assert after["cache"] == before["cache"]                                   # the base: same inode, size, content
    new = [line for line in after["files"] if line not in before["files"]]
    assert {line.split()[1].split("/")[0] for line in new} == {inst["uuid"]}, new
    assert [line for line in before["files"] if line not in after["files"]] == []
    disk = qemu_img_info(env, "%s/%s/disk" % (INSTANCES, inst["uuid"]))
    assert disk["backing-filename"] == "%s/_base/%s" % (INSTANCES, cache_name(image["id"]))
    assert disk["backing-filename-format"] == "raw"                            # follows the cached base


def _plant_image(env, name, path, disk_format):
    """An image record + store file written directly, as a tampered (or older) registry would hold it."""
    image_id = str(uuid.uuid4())
    store = os.path.join(str(env.state_dir), "images", image_id)
    shutil.copyfile(path, store)
    os.chmod(store, 0o600)
    admin = env.query("SELECT owner FROM images WHERE name='bootflow-guest'")[0]["owner"]
    with open(store, "rb") as f:
        data = f.read()
    with env.db() as conn:
        conn.execute("INSERT INTO images (id, name, owner, visibility, status, disk_format, container_format, size, "
                     "virtual_size, checksum, os_hash_algo, os_hash_value, location, properties, min_disk, min_ram, "
                     "created_at) VALUES (?, ?, ?, 'public', 'active', ?, 'bare', ?, ?, ?, 'sha512', ?, ?, '{}', 0, 0, "
                     "CURRENT_TIMESTAMP)",
                     (image_id, name, admin, disk_format, len(data), len(data), hashlib.md5(data).hexdigest(),
                      hashlib.sha512(data).hexdigest(), store))
    return image_id


@pytest.mark.parametrize("case", ["corrupted download", "qcow2 with an external backing file", "lying disk_format"])
def test_bad_image_is_refused_and_leaves_cache_and_db_as_they_were(ic_env, first, tmp_path, case):
    env = ic_env
    if case == "corrupted download":
        registered, _f = image_ops(env, tmp_path, register=[{"name": "ic-corrupt", "filename": GUEST_QCOW2}])
        image_id = registered["ic-corrupt"]["image"]["id"]
        store = registered["ic-corrupt"]["image"]["location"]
        with open(store, "r+b") as f:                           # the store file rots after registration
            f.seek(1 << 20)
            f.write(b"\xde\xad\xbe\xef")
        expect = r"^checksum mismatch \(md5\): expected %s got [0-9a-f]{32}$" % registered["ic-corrupt"]["image"]["checksum"]
    elif case == "qcow2 with an external backing file":
        bad = str(tmp_path / "backed.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", "/etc/hostname", bad], check=True)
        image_id = _plant_image(env, "ic-backing", bad, "qcow2")
        expect = (r"^unsafe image: qcow2 with a backing file '/etc/hostname' \(outside the cache "
                  r"/var/lib/bootflow/instances/_base\); a base image must be self-contained$")
    else:
        image_id = _plant_image(env, "ic-liar", GUEST_QCOW2, "raw")
        expect = r"^image format mismatch: declared raw but the content is qcow2; refusing it$"
    before = {"host": cache_snapshot(env), "db": db_dump(env)}
    _r, fetched = image_ops(env, tmp_path, fetch=[image_id])
    result = fetched[image_id]
    assert result["failed"], result
    assert re.match(expect, result["msg"]), result["msg"]
    after = {"host": cache_snapshot(env), "db": db_dump(env)}
    assert after == before
    assert not [n for n in base_files(env) if n.endswith(".part")]
    assert not [n for n in os.listdir(os.path.join(str(env.state_dir), "images")) if n.startswith(".")]


def test_cache_cleanup_removes_an_unused_old_base_and_keeps_the_one_in_use(ic_env, first, tmp_path):
    env, image = ic_env, first["image"]
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % SECOND)         # FIRST still uses the base
    registered, _f = image_ops(env, tmp_path, register=[{"name": "ic-old", "filename": GUEST_RAW, "disk_format": "raw"}])
    old_id = registered["ic-old"]["image"]["id"]
    _r, fetched = image_ops(env, tmp_path, fetch=[old_id])
    assert fetched[old_id]["base_downloaded"] and fetched[old_id]["transferred_bytes"] == os.path.getsize(GUEST_RAW)
    used, unused = cache_name(image["id"]), cache_name(old_id)
    assert base_files(env) == sorted([used, used + ".info", unused, unused + ".info"])
    # both last used three days ago: age alone would remove both
    env.ssh("touch -d '3 days ago' %s/_base/%s %s/_base/%s" % (INSTANCES, used, INSTANCES, unused))

    before = cache_snapshot(env)
    check = env.play("image_cache.yml", "-e", "bootflow_image_cache_max_age=3600", "--check", "--diff")
    assert "-%s\n" % unused in check.out and "-%s\n" % used not in check.out, check.out[-2000:]
    assert cache_snapshot(env) == before                                       # check mode removed nothing

    res = env.play("image_cache.yml", "-e", "bootflow_image_cache_max_age=3600")
    assert "removed ['%s'], kept ['%s']" % (old_id, image["id"]) in res.out, res.out[-2000:]
    assert base_files(env) == sorted([used, used + ".info"])
    assert res.recap()[env.host]["changed"] == 1
    again = env.play("image_cache.yml", "-e", "bootflow_image_cache_max_age=3600")
    assert again.recap()[env.host]["changed"] == 0
    # the instance still boots from its base: its disk chain is intact
    inst = instance(env, FIRST)
    info = json.loads(env.ssh("qemu-img info --output=json -U --backing-chain %s/%s/disk" % (INSTANCES, inst["uuid"])))
    assert [i["format"] for i in info] == ["qcow2", "raw"]


def test_delete_and_cleanup_leave_an_empty_cache(ic_env, first):
    env = ic_env
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % FIRST)
    assert env.host_snapshot()["instances"] == []
    env.play("image_cache.yml", "-e", "bootflow_image_cache_max_age=0")
    assert base_files(env) == []
