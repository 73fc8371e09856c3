# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.host import image_cache as im
from ansible_collections.bootflow.cloud.plugins.module_utils.host import guest_files

QEMU_IMG = shutil.which("qemu-img") or "qemu-img"  # installed by make setup (qemu-utils); no skip

IMAGE_ID = "6d1f2bbc-3c6a-4a0e-9b0e-7f3c1d2e9a10"
INSTANCE = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"
MIB = 1024 * 1024


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, check=False)
    return p.returncode, p.stdout, p.stderr


def fetch(p, **kw):
    """image_fetch_step with what the module passes in: a command runner and the qemu-img path."""
    kw.setdefault("run", run)
    kw.setdefault("qemu_img", QEMU_IMG)
    return im.image_fetch_step(p, **kw)


def qemu_img(*args):
    subprocess.run([QEMU_IMG] + list(args), check=True, capture_output=True)


def hashes(path):
    data = open(path, "rb").read()
    return hashlib.md5(data).hexdigest(), hashlib.sha512(data).hexdigest()


@pytest.fixture
def raw_image(tmp_path):
    p = tmp_path / "img.raw"
    with open(p, "wb") as f:
        f.write(b"bootflow raw image\n" + os.urandom(4096))
        f.truncate(2 * MIB)
    return str(p)


@pytest.fixture
def qcow2_image(tmp_path):
    p = str(tmp_path / "img.qcow2")
    qemu_img("create", "-f", "qcow2", p, "3M")
    return p


def test_cache_name_is_sha1_of_the_id():
    assert layout.cache_name(IMAGE_ID) == hashlib.sha1(IMAGE_ID.encode()).hexdigest()
    assert len(layout.cache_name("x")) == 40


def test_stream_hash_path_and_fileobj(raw_image):
    md5, sha512 = hashes(raw_image)
    assert im.stream_hash(raw_image, ["md5", "sha512"]) == {"md5": md5, "sha512": sha512}
    with open(raw_image, "rb") as f:
        assert im.stream_hash(f, ["md5"], chunk=1000) == {"md5": md5}
    with pytest.raises(im.ImageError, match="unsupported"):
        im.stream_hash(raw_image, ["crc32"])


def test_copy_and_hash_limit():
    out = io.BytesIO()
    n, h = im.copy_and_hash(io.BytesIO(b"abc"), out, ["sha256"])
    assert n == 3 and out.getvalue() == b"abc" and h["sha256"] == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(im.ImageError, match="size mismatch"):
        im.copy_and_hash(io.BytesIO(b"abcd"), io.BytesIO(), ["md5"], limit=3)


def test_expected_hashes_validation():
    assert im.expected_hashes(checksum="A" * 32) == {"md5": "a" * 32}
    assert im.expected_hashes(os_hash_algo="sha512", os_hash_value="f" * 128) == {"sha512": "f" * 128}
    with pytest.raises(im.ImageError, match="never"):
        im.expected_hashes()
    with pytest.raises(im.ImageError, match="md5"):
        im.expected_hashes(checksum="xyz")
    with pytest.raises(im.ImageError, match="go together"):
        im.expected_hashes(os_hash_algo="sha512")
    with pytest.raises(im.ImageError, match="sha256"):
        im.expected_hashes(os_hash_algo="sha256", os_hash_value="ab")


def test_verify_hashes_reports_expected_and_actual():
    with pytest.raises(im.ImageError) as e:
        im.verify_hashes({"md5": "1" * 32}, {"md5": "2" * 32})
    assert "checksum mismatch" in e.value.msg and "expected " + "2" * 32 in e.value.msg
    assert "got " + "1" * 32 in e.value.msg


# ---- format inspection on real files


def test_inspect_raw(raw_image):
    info = im.inspect_format(raw_image)
    assert info["format"] == "raw" and info["virtual_size"] == 2 * MIB
    assert im.safety_check(raw_image, "raw")["format"] == "raw"


def test_inspect_qcow2(qcow2_image):
    info = im.inspect_format(qcow2_image)
    assert info["format"] == "qcow2" and info["virtual_size"] == 3 * MIB
    assert info["backing_file"] is None and info["data_file"] is None
    assert im.safety_check(qcow2_image, "qcow2")["virtual_size"] == 3 * MIB


def test_qcow2_v2_header(tmp_path):
    p = str(tmp_path / "v2.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "compat=0.10", p, "1M")
    info = im.inspect_format(p)
    assert info["version"] == 2 and info["virtual_size"] == MIB


def test_backing_file_pointing_outside_is_refused(tmp_path):
    p = str(tmp_path / "evil.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", p, "1M")
    info = im.inspect_format(p)
    assert info["backing_file"] == "/etc/passwd" and info["backing_format"] == "raw"
    with pytest.raises(im.ImageError, match="backing file '/etc/passwd'.*outside the cache"):
        im.safety_check(p, "qcow2", str(tmp_path / "_base"))


def test_backing_file_inside_cache_is_still_refused(tmp_path, qcow2_image):
    base = tmp_path / "_base"
    base.mkdir()
    shutil.copy(qcow2_image, base / "other")
    p = str(base / "layered")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", "other", p)
    with pytest.raises(im.ImageError, match="self-contained"):
        im.safety_check(p, "qcow2", str(base))


def test_external_data_file_is_refused(tmp_path):
    p = str(tmp_path / "df.qcow2")
    qemu_img("create", "-f", "qcow2", "-o", "data_file=" + str(tmp_path / "data.raw"), p, "1M")
    assert im.inspect_format(p)["data_file"]
    with pytest.raises(im.ImageError, match="external data file"):
        im.safety_check(p, "qcow2")


def test_raw_declared_qcow2_is_refused(raw_image):
    with pytest.raises(im.ImageError, match="declared qcow2 but the content is raw"):
        im.safety_check(raw_image, "qcow2")


def test_qcow2_declared_raw_is_refused(qcow2_image):
    with pytest.raises(im.ImageError, match="declared raw but the content is qcow2"):
        im.safety_check(qcow2_image, "raw")


@pytest.mark.parametrize("fmt", ["vmdk", "vhdx", "vdi", "qed", "vpc"])
def test_other_formats_declared_raw_are_refused(tmp_path, fmt):
    p = str(tmp_path / ("img." + fmt))
    qemu_img("create", "-f", fmt, p, "1M")
    assert im.inspect_format(p)["format"] != "raw"
    with pytest.raises(im.ImageError, match="declared raw"):
        im.safety_check(p, "raw")


def test_truncated_qcow2_is_refused(tmp_path):
    p = tmp_path / "trunc"
    p.write_bytes(b"QFI\xfb\x00\x00\x00\x03")
    with pytest.raises(im.ImageError):
        im.safety_check(str(p), "qcow2")


# ---- files


def test_atomic_install_and_write(tmp_path):
    tmp = tmp_path / "t"
    tmp.write_text("x")
    os.chmod(tmp, 0o600)
    im.atomic_install(str(tmp), str(tmp_path / "dest"))
    assert (tmp_path / "dest").read_text() == "x" and not tmp.exists()
    assert (tmp_path / "dest").stat().st_mode & 0o777 == 0o644
    im.atomic_write_text(str(tmp_path / "j"), "{}\n")
    assert sorted(os.listdir(tmp_path)) == ["dest", "j"]


def test_file_lock_is_exclusive(tmp_path):
    lock = str(tmp_path / "l.lock")
    with im.file_lock(lock):
        fd = os.open(lock, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released
    finally:
        os.close(fd)


def test_makedirs_reports_what_it_made(tmp_path):
    made = im.makedirs(str(tmp_path / "a" / "b"))
    assert made == [str(tmp_path / "a"), str(tmp_path / "a" / "b")]
    assert im.makedirs(str(tmp_path / "a" / "b")) == []


def test_qemu_img_command_lines():
    assert im.overlay_cmd("qemu-img", "/b/base", "raw", "/i/disk", 1024) == [
        "qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", "/b/base", "/i/disk", "1024"]
    assert im.overlay_cmd("qemu-img", "/b/base", "qcow2", "/i/disk")[-1] == "/i/disk"
    assert im.resize_cmd("qemu-img", "/i/disk", 2048) == ["qemu-img", "resize", "-f", "qcow2", "/i/disk", "2048"]


# ---- the image_fetch step


def params(tmp_path, image, **kw):
    """Module parameters for `image` (hashes and size of that file); src defaults to it."""
    md5, sha512 = hashes(image)
    p = dict(image_id=IMAGE_ID, disk_format="raw", checksum=md5, os_hash_algo="sha512", os_hash_value=sha512,
             size=os.path.getsize(image), url=None, src=image, instance_uuid=INSTANCE, root_gb=None,
             instances_path=str(tmp_path / "instances"), state="present")
    p.update(kw)
    return p


def tree(root):
    out = []
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            out.append(os.path.relpath(os.path.join(d, name), root))
    return sorted(out)


def test_base_missing_without_source(tmp_path, raw_image):
    p = params(tmp_path, raw_image, src=None)
    r = fetch(p)
    assert r["base_missing"] and not r["changed"]
    assert not os.path.exists(p["instances_path"])


def test_fetch_from_src_then_idempotent(tmp_path, raw_image):
    p = params(tmp_path, raw_image, root_gb=1)
    r = fetch(p, check_mode=True)
    assert r["changed"] and r["base_downloaded"] and r["disk_created"]
    assert not os.path.exists(p["instances_path"])  # check mode touched nothing

    r = fetch(p, qemu_img=QEMU_IMG)
    assert r["changed"] and r["base_downloaded"] and r["disk_created"] and not r["base_missing"]
    base = os.path.join(p["instances_path"], "_base", layout.cache_name(IMAGE_ID))
    assert r["base_path"] == base and open(base, "rb").read() == open(raw_image, "rb").read()
    assert os.stat(base).st_mode & 0o777 == 0o644
    info = json.load(open(base + ".info"))
    assert info["image_id"] == IMAGE_ID and info["checksum"] == p["checksum"]
    assert info["os_hash_value"] == p["os_hash_value"] and info["disk_format"] == "raw"
    assert r["virtual_size"] == 2 * MIB
    disk = im.inspect_format(r["disk_path"])
    assert disk["format"] == "qcow2" and disk["backing_file"] == base and disk["backing_format"] == "raw"
    assert disk["virtual_size"] == 1024 ** 3
    # guest data: the instance directory 0750, the overlay 0640, both with QEMU's group; nothing for "other"
    qemu_gid = guest_files.qemu_gid()
    for path, mode in ((os.path.dirname(r["disk_path"]), 0o750), (r["disk_path"], 0o640)):
        st = os.stat(path)
        assert st.st_mode & 0o777 == mode and (qemu_gid is None or st.st_gid == qemu_gid)
    assert not [f for f in os.listdir(os.path.dirname(base)) if f.endswith(".part")]

    again = fetch(p, qemu_img=QEMU_IMG)
    assert not again["changed"] and not again["base_downloaded"] and not again["disk_created"]
    assert fetch(p, check_mode=True)["changed"] is False

    grown = fetch(dict(p, root_gb=2), qemu_img=QEMU_IMG)
    assert grown["changed"] and grown["disk_resized"]
    assert im.inspect_format(r["disk_path"])["virtual_size"] == 2 * 1024 ** 3
    smaller = fetch(dict(p, root_gb=1), qemu_img=QEMU_IMG)
    assert not smaller["changed"] and smaller["warnings"]

    gone = fetch(dict(p, state="absent"))
    assert gone["changed"] and gone["removed"] == ["disk"]
    assert not os.path.exists(os.path.dirname(r["disk_path"])) and os.path.exists(base)
    assert not fetch(dict(p, state="absent"))["changed"]


def test_checksum_mismatch_leaves_cache_untouched(tmp_path, raw_image):
    p = params(tmp_path, raw_image, checksum="0" * 32)
    with pytest.raises(im.ImageError) as e:
        fetch(p, qemu_img=QEMU_IMG)
    assert "checksum mismatch (md5): expected " + "0" * 32 in e.value.msg
    assert tree(os.path.join(p["instances_path"], "_base")) == []  # no tmp, no base
    assert not os.path.exists(os.path.join(p["instances_path"], INSTANCE))
    p = params(tmp_path, raw_image, os_hash_value="a" * 128)
    with pytest.raises(im.ImageError, match="sha512"):
        fetch(p, qemu_img=QEMU_IMG)
    assert tree(os.path.join(p["instances_path"], "_base")) == []


def test_size_mismatch(tmp_path, raw_image):
    with pytest.raises(im.ImageError, match="size mismatch"):
        fetch(params(tmp_path, raw_image, size=10))
    with pytest.raises(im.ImageError, match="size mismatch"):
        fetch(params(tmp_path, raw_image, size=os.path.getsize(raw_image) + 1))
    assert tree(os.path.join(str(tmp_path / "instances"), "_base")) == []


def test_unsafe_upload_is_not_cached(tmp_path):
    evil = str(tmp_path / "evil.qcow2")
    qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", "/etc/passwd", evil, "1M")
    p = params(tmp_path, evil, disk_format="qcow2")
    with pytest.raises(im.ImageError, match="backing file"):
        fetch(p, qemu_img=QEMU_IMG)
    assert tree(os.path.join(p["instances_path"], "_base")) == []
    p = params(tmp_path, evil, disk_format="raw")  # and declared raw: format mismatch
    with pytest.raises(im.ImageError, match="declared raw but the content is qcow2"):
        fetch(p, qemu_img=QEMU_IMG)
    assert tree(os.path.join(p["instances_path"], "_base")) == []


def test_root_gb_smaller_than_image(tmp_path):
    big = str(tmp_path / "big.qcow2")
    qemu_img("create", "-f", "qcow2", big, "3G")
    p = params(tmp_path, big, disk_format="qcow2", root_gb=1)
    with pytest.raises(im.ImageError, match="smaller than the image's virtual size"):
        fetch(p, qemu_img=QEMU_IMG)
    assert not os.path.exists(os.path.join(p["instances_path"], INSTANCE))


def test_failed_overlay_is_rolled_back(tmp_path, raw_image):
    p = params(tmp_path, raw_image)

    def failing_run(argv):
        return 1, "", "boom"

    with pytest.raises(im.ImageError, match="qemu-img create .* failed .*boom"):
        fetch(p, run=failing_run, qemu_img=QEMU_IMG)
    assert not os.path.exists(os.path.join(p["instances_path"], INSTANCE))
    assert os.path.exists(os.path.join(p["instances_path"], "_base", layout.cache_name(IMAGE_ID)))  # verified base kept


def test_url_download_with_opener(tmp_path, raw_image):
    data = open(raw_image, "rb").read()
    calls = []

    def opener(url, timeout):
        calls.append((url, timeout))
        return io.BytesIO(data)

    p = params(tmp_path, raw_image, src=None, url="https://images.example.org/x.raw", instance_uuid=None)
    r = fetch(p, opener=opener)
    assert r["changed"] and r["base_downloaded"] and calls == [("https://images.example.org/x.raw", 60)]
    assert r["disk_path"] is None
    assert not fetch(p, opener=opener)["changed"] and len(calls) == 1


def test_url_scheme_and_uuid_validation(tmp_path, raw_image):
    with pytest.raises(im.ImageError, match="http"):
        fetch(params(tmp_path, raw_image, src=None, url="file:///etc/passwd"))
    with pytest.raises(InvalidRequest, match="instance_uuid '../../etc' is not a UUID"):
        fetch(params(tmp_path, raw_image, instance_uuid="../../etc"))
    with pytest.raises(im.ImageError, match="never"):
        fetch(params(tmp_path, raw_image, checksum=None, os_hash_algo=None, os_hash_value=None))


def test_existing_disk_on_another_base_is_refused(tmp_path, raw_image, qcow2_image):
    p = params(tmp_path, raw_image)
    fetch(p, qemu_img=QEMU_IMG)
    md5, sha512 = hashes(qcow2_image)
    other = dict(p, image_id="another", src=qcow2_image, disk_format="qcow2", checksum=md5, os_hash_value=sha512,
                 size=os.path.getsize(qcow2_image))
    with pytest.raises(im.ImageError, match="backing file"):
        fetch(other, qemu_img=QEMU_IMG)


# --- force_raw_images -----------------------------------------------------------------------------


def test_force_raw_images_converts_the_base_and_the_overlay_follows(tmp_path, qcow2_image):
    p = params(tmp_path, qcow2_image, disk_format="qcow2", force_raw_images=True, root_gb=1)
    planned = fetch(p, check_mode=True)
    assert planned["base_format"] == "raw" and not os.path.exists(p["instances_path"])
    r = fetch(p)
    assert r["base_downloaded"] and r["base_format"] == "raw" and r["virtual_size"] == 3 * MIB
    base = r["base_path"]
    assert im.inspect_format(base) == dict(format="raw", virtual_size=3 * MIB, backing_file=None,
                                           backing_format=None, data_file=None)
    info = json.load(open(base + ".info"))
    # the .info keeps what was verified (the qcow2 from Glance) and says what is cached
    assert (info["disk_format"], info["base_format"], info["checksum"]) == ("qcow2", "raw", p["checksum"])
    disk = im.inspect_format(r["disk_path"])
    assert (disk["backing_file"], disk["backing_format"], disk["virtual_size"]) == (base, "raw", 1024 ** 3)
    assert tree(os.path.dirname(base)) == sorted([os.path.basename(base), os.path.basename(base) + ".info"])
    # a second instance, without the option: the raw base stays as it is and is used as raw
    other = dict(p, instance_uuid="2c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c12", force_raw_images=False, src=None)
    r2 = fetch(other)
    assert not r2["base_downloaded"] and r2["base_format"] == "raw" and r2["disk_created"]
    assert im.inspect_format(r2["disk_path"])["backing_format"] == "raw"


def test_force_raw_of_a_raw_image_is_a_plain_fetch(tmp_path, raw_image):
    r = fetch(params(tmp_path, raw_image, force_raw_images=True))
    assert r["base_format"] == "raw" and open(r["base_path"], "rb").read() == open(raw_image, "rb").read()


def test_failed_conversion_leaves_the_cache_as_it_was(tmp_path, qcow2_image):
    p = params(tmp_path, qcow2_image, disk_format="qcow2", force_raw_images=True)
    with pytest.raises(im.ImageError, match="qemu-img convert of image .* to raw failed"):
        fetch(p, run=lambda argv: (1, "", "no space left") if argv[1] == "convert" else run(argv))
    assert tree(os.path.join(p["instances_path"], "_base")) == []
    assert not os.path.exists(os.path.join(p["instances_path"], INSTANCE))


def test_using_a_base_touches_it(tmp_path, raw_image):
    p = params(tmp_path, raw_image)
    r = fetch(p)
    os.utime(r["base_path"], (1000, 1000))
    fetch(dict(p, src=None))
    assert os.stat(r["base_path"]).st_mtime > 1000


# --- image_cache: cleanup of unused bases ---------------------------------------------------------


def cache_of(tmp_path, raw_image, qcow2_image):
    """Two cached images: A (raw) used by instance INSTANCE's overlay, B (qcow2) used by nobody; both last
    used long ago, plus a crashed download's leftover."""
    a = fetch(params(tmp_path, raw_image))
    md5, sha512 = hashes(qcow2_image)
    b = fetch(params(tmp_path, qcow2_image, image_id="7e2f3ccd-4d7b-4b1f-8c1f-8f4d2e3fab21", disk_format="qcow2",
                     checksum=md5, os_hash_value=sha512, instance_uuid=None))
    base_dir = os.path.dirname(a["base_path"])
    leftover = os.path.join(base_dir, ".%s.abc123.part" % layout.cache_name(IMAGE_ID))
    open(leftover, "wb").close()
    for path in (a["base_path"], b["base_path"], leftover):
        os.utime(path, (1000, 1000))
    return a, b, leftover


def test_cleanup_removes_an_unused_old_base_and_keeps_the_one_in_use(tmp_path, raw_image, qcow2_image):
    a, b, leftover = cache_of(tmp_path, raw_image, qcow2_image)
    instances = str(tmp_path / "instances")
    before = tree(instances)
    planned = im.image_cache_step({"instances_path": instances, "max_unused_age": 3600}, check_mode=True)
    assert planned["changed"] and [e["path"] for e in planned["removed"]] == [b["base_path"]]
    assert tree(instances) == before                  # check mode removed nothing
    r = im.image_cache_step({"instances_path": instances, "max_unused_age": 3600})
    assert r["changed"] and [e["path"] for e in r["removed"]] == [b["base_path"]]
    assert r["removed"][0]["image_id"] == "7e2f3ccd-4d7b-4b1f-8c1f-8f4d2e3fab21"
    assert [(e["path"], e["used_by"], e["reason"]) for e in r["kept"]] == [(a["base_path"], [INSTANCE], "in use")]
    assert r["leftovers_removed"] == [os.path.basename(leftover)]
    assert not os.path.exists(b["base_path"]) and not os.path.exists(b["base_path"] + ".info")
    assert os.path.exists(a["base_path"]) and os.path.exists(a["base_path"] + ".info") and not os.path.exists(leftover)
    assert r["diff"]["before"] != r["diff"]["after"] and os.path.basename(b["base_path"]) not in r["diff"]["after"]
    again = im.image_cache_step({"instances_path": instances, "max_unused_age": 3600})
    assert not again["changed"] and again["removed"] == []


def test_cleanup_waits_for_the_age_and_for_the_last_overlay(tmp_path, raw_image, qcow2_image):
    a, b, _leftover = cache_of(tmp_path, raw_image, qcow2_image)
    instances = str(tmp_path / "instances")
    os.utime(b["base_path"])                          # used just now
    r = im.image_cache_step({"instances_path": instances, "max_unused_age": 3600})
    reasons = {e["path"]: e["reason"] for e in r["kept"]}
    assert reasons == {a["base_path"]: "in use", b["base_path"]: "used recently"} and r["removed"] == []
    listed = im.image_cache_step({"instances_path": instances, "max_unused_age": 0, "state": "listed"})
    reasons = {e["path"]: e["reason"] for e in listed["kept"]}
    assert not listed["changed"] and reasons == {a["base_path"]: "in use", b["base_path"]: "unused, removable"}
    # the instance goes away: its base is unused from then on (age 0 removes at once)
    fetch(params(tmp_path, raw_image, state="absent"))
    r = im.image_cache_step({"instances_path": instances, "max_unused_age": 0})
    assert sorted(e["path"] for e in r["removed"]) == sorted([a["base_path"], b["base_path"]])
    assert tree(os.path.join(instances, "_base")) == []


def test_cleanup_removes_nothing_when_an_instance_file_cannot_be_read(tmp_path, raw_image, qcow2_image):
    _a, b, _leftover = cache_of(tmp_path, raw_image, qcow2_image)
    instances = str(tmp_path / "instances")
    # a file whose header cannot be inspected (truncated qcow2) might use any base
    with open(os.path.join(instances, INSTANCE, "disk.rescue"), "wb") as f:
        f.write(im.QCOW2_MAGIC + b"\0" * 10)
    r = im.image_cache_step({"instances_path": instances, "max_unused_age": 0})
    assert r["removed"] == [] and os.path.exists(b["base_path"])    # (the download leftover still goes)
    assert "not removing any base: cannot inspect" in r["warnings"][0] and "disk.rescue" in r["warnings"][0]


def test_cleanup_input_and_empty_cache(tmp_path):
    with pytest.raises(im.ImageError, match="absolute"):
        im.image_cache_step({"instances_path": "rel/path"})
    with pytest.raises(im.ImageError, match="must not be negative"):
        im.image_cache_step({"instances_path": str(tmp_path), "max_unused_age": -1})
    r = im.image_cache_step({"instances_path": str(tmp_path / "none")})
    assert not r["changed"] and r["removed"] == r["kept"] == []
