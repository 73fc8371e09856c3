# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nova-style image cache on the hypervisor host (pure logic + stdlib I/O).

PRIVATE to the collection: may change at any time.

Layout (docs/design.md):
  <instances_path>/_base/<sha1(image_id)>        cached base image (0644) + .info sidecar json
  <instances_path>/locks/<sha1(image_id)>.lock   per-image flock
  <instances_path>/<instance_uuid>/disk          qcow2 overlay on the base (backing_fmt set)

Imports neither ansible nor libvirt.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
import time
import urllib.parse

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DISK_FORMATS
from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.host import guest_files
from ansible_collections.bootflow.cloud.plugins.module_utils.common.files import (
    atomic_install,
    atomic_write_text,
    file_lock,
    makedirs,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import check_uuid

GIB = 1024 ** 3
CHUNK = 1024 * 1024
HASH_ALGOS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512",
              "sha3_224", "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s")
_HEX = re.compile(r"[0-9a-fA-F]+")

QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_EXT_END = 0x00000000
_QCOW2_EXT_BACKING_FMT = 0xE2792ACA
_QCOW2_EXT_DATA_FILE = 0x44415441
_QCOW2_INCOMPAT_DATA_FILE = 1 << 2


class ImageError(BootflowError):
    """Image cache failure."""


# --------------------------------------------------------------------------------------------
# names, hashes


def _new_hash(algo):
    if algo not in HASH_ALGOS:
        raise ImageError("unsupported hash algorithm %r (one of %s)" % (algo, ", ".join(HASH_ALGOS)))
    return hashlib.new(algo)


def stream_hash(src, algos, chunk=CHUNK):
    """{algo: hexdigest} of a path or a binary file object, read once."""
    hashes = {a: _new_hash(a) for a in dict.fromkeys(algos)}
    if isinstance(src, (str, bytes, os.PathLike)):
        with open(src, "rb") as f:
            return stream_hash(f, algos, chunk)
    while True:
        block = src.read(chunk)
        if not block:
            break
        for h in hashes.values():
            h.update(block)
    return {a: h.hexdigest() for a, h in hashes.items()}


def copy_and_hash(src, dst, algos, limit=None, chunk=CHUNK):
    """Copy binary stream src into dst while hashing. Returns (bytes, {algo: hex}).

    limit: stop with an error as soon as more than `limit` bytes arrive (the declared size).
    """
    hashes = {a: _new_hash(a) for a in dict.fromkeys(algos)}
    n = 0
    while True:
        block = src.read(chunk)
        if not block:
            break
        n += len(block)
        if limit is not None and n > limit:
            raise ImageError("size mismatch: got more than the declared %d bytes" % limit)
        dst.write(block)
        for h in hashes.values():
            h.update(block)
    return n, {a: h.hexdigest() for a, h in hashes.items()}


def expected_hashes(checksum=None, os_hash_algo=None, os_hash_value=None):
    """{algo: lowercase hex} from Glance-style fields; validates them."""
    exp = {}
    if checksum:
        c = checksum.strip().lower()
        if len(c) != 32 or not _HEX.fullmatch(c):
            raise ImageError("checksum must be an md5 hex digest (32 hex digits), not %r" % checksum)
        exp["md5"] = c
    if os_hash_algo or os_hash_value:
        if not (os_hash_algo and os_hash_value):
            raise ImageError("os_hash_algo and os_hash_value go together")
        algo = os_hash_algo.strip().lower().replace("-", "_")
        h = _new_hash(algo)
        v = os_hash_value.strip().lower()
        if not _HEX.fullmatch(v) or len(v) != h.digest_size * 2:
            raise ImageError("os_hash_value is not a %s hex digest (%d hex digits)" % (algo, h.digest_size * 2))
        if algo in exp and exp[algo] != v:
            raise ImageError("checksum and os_hash_value disagree")
        exp[algo] = v
    if not exp:
        raise ImageError("give checksum (md5) and/or os_hash_algo + os_hash_value: an image is never "
                         "cached without verifying its content")
    return exp


def verify_hashes(got, expected):
    """Raise ImageError on the first mismatch."""
    for algo, want in expected.items():
        have = got.get(algo)
        if have != want:
            raise ImageError("checksum mismatch (%s): expected %s got %s" % (algo, want, have),
                             expected=want, actual=have, algorithm=algo)


# --------------------------------------------------------------------------------------------
# format inspection


def _read_at(f, offset, size):
    f.seek(offset)
    return f.read(size)


def _qcow2_info(f, file_size):
    hdr = _read_at(f, 0, 104)
    if len(hdr) < 72:
        raise ImageError("truncated qcow2 header")
    version, bf_off, bf_size, cluster_bits, vsize, crypt = struct.unpack(">IQIIQI", hdr[4:36])
    info = dict(format="qcow2", version=version, virtual_size=vsize, backing_file=None,
                backing_format=None, data_file=None, encrypted=bool(crypt), cluster_bits=cluster_bits)
    if version not in (2, 3):
        raise ImageError("unsupported qcow2 version %d" % version)
    if bf_off:
        if bf_size > 1023 or bf_off + bf_size > file_size:
            raise ImageError("qcow2 backing file name out of bounds")
        info["backing_file"] = _read_at(f, bf_off, bf_size).decode("utf-8", "replace")
    if version == 3:
        if len(hdr) < 104:
            raise ImageError("truncated qcow2 v3 header")
        incompat = struct.unpack(">Q", hdr[72:80])[0]
        header_length = struct.unpack(">I", hdr[100:104])[0]
        if incompat & _QCOW2_INCOMPAT_DATA_FILE:
            info["data_file"] = info["data_file"] or "(external data file bit set)"
        ext_off = header_length
    else:
        ext_off = 72
    # header extensions (within the first cluster)
    cluster = 1 << cluster_bits if 9 <= cluster_bits <= 21 else 65536
    end = min(cluster, file_size)
    off = ext_off
    while off + 8 <= end:
        etype, elen = struct.unpack(">II", _read_at(f, off, 8))
        if etype == _QCOW2_EXT_END:
            break
        data = _read_at(f, off + 8, elen)
        if etype == _QCOW2_EXT_BACKING_FMT:
            info["backing_format"] = data.decode("ascii", "replace")
        elif etype == _QCOW2_EXT_DATA_FILE:
            info["data_file"] = data.decode("utf-8", "replace") or info["data_file"] or "(empty)"
        off += 8 + ((elen + 7) & ~7)
    return info


def inspect_format(path):
    """Detect the real format of an image file from its content (not its name).

    Returns dict(format, virtual_size, backing_file, backing_format, data_file, ...). Formats other
    than qcow2 that qemu would interpret (qed, vmdk, vhdx, vhd, vdi, luks) are reported by name so a
    file declared raw cannot smuggle one in; everything else is raw.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(512)
        if head[:4] == QCOW2_MAGIC:
            return _qcow2_info(f, size)
        other = None
        if head[:4] == b"QED\x00":
            other = "qed"
        elif head[:4] == b"KDMV" or head.startswith(b"# Disk DescriptorFile"):
            other = "vmdk"
        elif head[:8] == b"vhdxfile":
            other = "vhdx"
        elif head[:8] == b"conectix":
            other = "vhd"
        elif head[64:68] == b"\x7f\x10\xda\xbe":
            other = "vdi"
        elif head[:6] == b"LUKS\xba\xbe":
            other = "luks"
        if other:
            return dict(format=other, virtual_size=None, backing_file=None, backing_format=None,
                        data_file=None)
    return dict(format="raw", virtual_size=size, backing_file=None, backing_format=None, data_file=None)


def safety_check(path, declared_format, cache_dir=None):
    """Refuse an image whose content does not match its declared format or that refers to other files.

    Like nova's format_inspector.safety_check for a base image: the real format must equal the
    declared one, and a qcow2 must be self-contained (no backing file, no external data file), so
    qemu never opens a file outside the cache through it.
    """
    try:
        info = inspect_format(path)
    except (OSError, struct.error) as e:
        raise ImageError("cannot inspect image %s: %s" % (path, e))
    if declared_format not in DISK_FORMATS:
        raise ImageError("unsupported disk_format %r (raw or qcow2)" % declared_format)
    if info["format"] != declared_format:
        raise ImageError("image format mismatch: declared %s but the content is %s; refusing it"
                         % (declared_format, info["format"]), detected_format=info["format"])
    if info.get("backing_file"):
        where = ""
        if cache_dir:
            bf = info["backing_file"]
            full = os.path.normpath(os.path.join(os.path.dirname(path), bf)) if not bf.startswith("/") else bf
            inside = os.path.normpath(full).startswith(os.path.normpath(cache_dir) + os.sep)
            where = " (%s the cache %s)" % ("inside" if inside else "outside", cache_dir)
        raise ImageError("unsafe image: qcow2 with a backing file %r%s; a base image must be "
                         "self-contained" % (info["backing_file"], where), detected_format="qcow2")
    if info.get("data_file"):
        raise ImageError("unsafe image: qcow2 with an external data file %r" % info["data_file"],
                         detected_format="qcow2")
    return info


# --------------------------------------------------------------------------------------------
# files


# --------------------------------------------------------------------------------------------
# qemu-img


def overlay_cmd(qemu_img, base, base_fmt, disk, size_bytes=None):
    """qemu-img create -f qcow2 -F <base fmt> -b <base> <disk> [size] (a CoW overlay, like Nova)."""
    argv = [qemu_img, "create", "-f", "qcow2", "-F", base_fmt, "-b", base, disk]
    if size_bytes:
        argv.append(str(int(size_bytes)))
    return argv


def resize_cmd(qemu_img, disk, size_bytes, fmt="qcow2"):
    return [qemu_img, "resize", "-f", fmt, disk, str(int(size_bytes))]


def convert_raw_cmd(qemu_img, src, src_fmt, dest):
    """qemu-img convert to raw (Nova's force_raw_images), the source format given, never probed."""
    return [qemu_img, "convert", "-f", src_fmt, "-O", "raw", src, dest]


# --------------------------------------------------------------------------------------------
# the image_fetch step


def _paths(instances_path, image_id, instance_uuid):
    name = layout.cache_name(image_id) if image_id else None
    base_dir = os.path.join(instances_path, "_base")
    base = os.path.join(base_dir, name) if name else None
    inst_dir = layout.instance_dir(instances_path, instance_uuid) if instance_uuid else None
    return dict(
        cache_name=name,
        base_dir=base_dir,
        base=base,
        info=base + ".info" if base else None,
        lock_dir=os.path.join(instances_path, "locks"),
        lock=os.path.join(instances_path, "locks", name + ".lock") if name else None,
        inst_dir=inst_dir,
        disk=os.path.join(inst_dir, "disk") if inst_dir else None,
    )


def read_info(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def image_fetch_step(p, check_mode=False, run=None, opener=None, qemu_img=None, now=None):
    """p: image_id, disk_format, checksum, os_hash_algo, os_hash_value, size, url, url_timeout, src,
    instance_uuid, root_gb, create_disk, force_raw_images, instances_path, state.

    With create_disk false (boot from volume), an instance_uuid names the instance but no overlay is made.

    run(argv) -> (rc, stdout, stderr) runs qemu-img (the module passes command.run_argv);
    opener(url, timeout) -> a readable response (the module passes ansible's open_url).
    """
    instances_path = p.get("instances_path") or layout.INSTANCES_PATH
    if not os.path.isabs(instances_path):
        raise ImageError("instances_path must be an absolute path")
    instances_path = os.path.normpath(instances_path)
    uuid = check_uuid(p["instance_uuid"]) if p.get("instance_uuid") else None
    state = p.get("state") or "present"
    paths = _paths(instances_path, p.get("image_id"), uuid)
    create_disk = bool(uuid) and p.get("create_disk", True) is not False
    result = dict(changed=False, base_path=paths["base"], disk_path=paths["disk"] if create_disk else None,
                  base_downloaded=False, base_format=None,
                  base_missing=False, virtual_size=None, disk_created=False, disk_resized=False,
                  cache_name=paths["cache_name"], warnings=[])
    if uuid:
        result.update(instance_dir=paths["inst_dir"], console_log=layout.console_log_path(instances_path, uuid))

    if state == "absent":
        if not uuid:
            raise ImageError("instance_uuid is required with state=absent")
        if os.path.lexists(paths["inst_dir"]):
            result["changed"] = True
            result["removed"] = sorted(os.listdir(paths["inst_dir"])) if os.path.isdir(paths["inst_dir"]) else []
            if not check_mode:
                if os.path.isdir(paths["inst_dir"]) and not os.path.islink(paths["inst_dir"]):
                    shutil.rmtree(paths["inst_dir"])
                else:
                    os.unlink(paths["inst_dir"])
        # the copy a resize kept aside until its confirm (the instance is deleted before that)
        kept = layout.resize_dir(instances_path, uuid)
        if os.path.isdir(kept) and not os.path.islink(kept):
            result.update(changed=True, removed_resize_dir=kept)
            if not check_mode:
                shutil.rmtree(kept)
        return result

    # ---- present: validate everything before acting
    if not p.get("image_id"):
        raise ImageError("image_id is required")
    fmt = p.get("disk_format")
    if fmt not in DISK_FORMATS:
        raise ImageError("disk_format must be raw or qcow2, not %r" % (fmt,))
    expected = expected_hashes(p.get("checksum"), p.get("os_hash_algo"), p.get("os_hash_value"))
    url, src = p.get("url"), p.get("src")
    if url and src:
        raise ImageError("url and src are mutually exclusive")
    if url:
        scheme = urllib.parse.urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise ImageError("url must be an http:// or https:// URL, not %r" % scheme)
    if src and not os.path.isfile(src):
        raise ImageError("src %s is not a file on this host" % src)
    size = p.get("size")
    if size is not None and size < 0:
        raise ImageError("size must not be negative")
    root_gb = p.get("root_gb")
    if root_gb is not None and root_gb < 0:
        raise ImageError("root_gb must not be negative")
    want_bytes = root_gb * GIB if root_gb else None
    qemu_img = qemu_img or shutil.which("qemu-img") or "/usr/bin/qemu-img"
    force_raw = bool(p.get("force_raw_images"))

    base_exists = os.path.isfile(paths["base"])
    if not base_exists and not (url or src):
        result["base_missing"] = True
        return result

    if check_mode:
        if base_exists:
            result["base_format"] = base_format(paths, fmt)
            info = safety_check(paths["base"], result["base_format"], paths["base_dir"])
        else:
            result.update(changed=True, base_downloaded=True, base_format="raw" if force_raw else fmt)
            info = safety_check(src, fmt) if src else {"virtual_size": None}
        result["virtual_size"] = info.get("virtual_size")
        if create_disk:
            _plan_disk(paths, result, want_bytes, check_mode=True)
        return result

    # ---- the base image, under the per-image lock
    makedirs(instances_path)
    makedirs(paths["base_dir"])
    makedirs(paths["lock_dir"])
    with file_lock(paths["lock"]):
        if not os.path.isfile(paths["base"]):
            if not (url or src):  # another run removed it meanwhile
                result["base_missing"] = True
                return result
            info, got, nbytes, base_fmt = _fetch_base(paths, fmt, expected, url, src, size, opener,
                                                      p.get("url_timeout") or 60, force_raw, run, qemu_img)
            record = dict(image_id=p["image_id"], cache_name=paths["cache_name"], disk_format=fmt,
                          base_format=base_fmt,
                          size=nbytes, virtual_size=info["virtual_size"], checksum=got.get("md5"),
                          os_hash_algo=p.get("os_hash_algo"),
                          os_hash_value=got.get((p.get("os_hash_algo") or "").lower().replace("-", "_")),
                          source="url" if url else "upload",
                          fetched_at=(now or datetime.datetime.now(datetime.timezone.utc)).isoformat())
            try:
                atomic_write_text(paths["info"], json.dumps(record, indent=2, sort_keys=True) + "\n")
            except OSError as e:
                result["warnings"].append("could not write %s: %s" % (paths["info"], e))
            result.update(changed=True, base_downloaded=True, size=nbytes, base_format=base_fmt)
        else:
            base_fmt = result["base_format"] = base_format(paths, fmt)
            info = safety_check(paths["base"], base_fmt, paths["base_dir"])
            rec = read_info(paths["info"])
            if rec:
                for algo, want in expected.items():
                    have = rec.get("checksum") if algo == "md5" else (
                        rec.get("os_hash_value") if (rec.get("os_hash_algo") or "").lower() == algo else None)
                    if have and have != want:
                        raise ImageError("the cached base %s of image %s was verified with %s %s, but the "
                                         "image now says %s; remove the stale cache file"
                                         % (paths["base"], p["image_id"], algo, have, want))
        result["virtual_size"] = info["virtual_size"]
        if create_disk:
            # still under the lock: two runs for one instance must not both 'qemu-img create' it
            _plan_disk(paths, result, want_bytes, check_mode=False, run=run, qemu_img=qemu_img, fmt=base_fmt)
        if uuid:
            # the base's mtime is its last use: cache cleanup (image_cache) removes only bases unused for long
            with contextlib.suppress(OSError):
                os.utime(paths["base"])
    return result


def base_format(paths, declared):
    """Format of a cached base: raw when it was converted (force_raw_images, recorded in .info), else the
    image's declared format."""
    rec = read_info(paths["info"]) or {}
    return rec.get("base_format") if rec.get("base_format") in DISK_FORMATS else declared


def _fetch_base(paths, fmt, expected, url, src, size, opener, timeout, force_raw=False, run=None, qemu_img=None):
    """Download/copy into a tmp file in _base, verify, inspect, (convert to raw,) rename. Nothing is left
    on failure. Returns (inspection, hashes, bytes fetched, format of the cached base)."""
    fd, tmp = tempfile.mkstemp(dir=paths["base_dir"], prefix="." + paths["cache_name"] + ".", suffix=".part")
    converted = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                if url:
                    stream = opener(url, timeout)
                else:
                    stream = open(src, "rb")
            except Exception as e:
                raise ImageError("cannot open %s: %s" % (_redact(url) if url else src, e))
            try:
                nbytes, got = copy_and_hash(stream, out, list(expected), limit=size)
            except ImageError:
                raise
            except Exception as e:
                raise ImageError("cannot read %s: %s" % (_redact(url) if url else src, e))
            finally:
                with contextlib.suppress(Exception):
                    stream.close()
            out.flush()
            os.fsync(out.fileno())
        if size is not None and nbytes != size:
            raise ImageError("size mismatch: expected %d bytes got %d" % (size, nbytes))
        verify_hashes(got, expected)
        info = safety_check(tmp, fmt, paths["base_dir"])
        if force_raw and fmt != "raw":
            # only a verified, self-contained image is ever given to qemu-img
            converted = tmp[:-len(".part")] + ".raw.part"
            argv = convert_raw_cmd(qemu_img, tmp, fmt, converted)
            rc, out, err = run(argv)
            if rc != 0:
                raise ImageError("qemu-img convert of image %s to raw failed (rc=%s): %s"
                                 % (paths["cache_name"], rc, (err or out).strip()), cmd=argv)
            virtual_size = info["virtual_size"]
            info = safety_check(converted, "raw", paths["base_dir"])
            if info["virtual_size"] != virtual_size:
                raise ImageError("qemu-img convert of image %s gave %d bytes, not the virtual size %d"
                                 % (paths["cache_name"], info["virtual_size"], virtual_size))
            atomic_install(converted, paths["base"], 0o644)
            return info, got, nbytes, "raw"
        atomic_install(tmp, paths["base"], 0o644)
        return info, got, nbytes, fmt
    finally:
        for leftover in (tmp, converted):
            if leftover:
                with contextlib.suppress(OSError):
                    os.unlink(leftover)


def _redact(url):
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += ":%d" % parts.port
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _secure_instance_files(inst_dir, disk):
    """The instance directory 0750 and its disk overlay 0640, both with QEMU's group (guest_files)."""
    gid = guest_files.qemu_gid()
    changed = guest_files.secure_instance_dir(inst_dir, gid)
    return guest_files.secure_guest_file(disk, gid) or changed


def _plan_disk(paths, result, want_bytes, check_mode, run=None, qemu_img=None, fmt=None):
    vsize = result.get("virtual_size")
    if want_bytes and vsize and want_bytes < vsize:
        raise ImageError("root_gb (%d bytes) is smaller than the image's virtual size (%d bytes)"
                         % (want_bytes, vsize), virtual_size=vsize)
    disk = paths["disk"]
    if os.path.lexists(disk):
        try:
            dinfo = inspect_format(disk)
        except (OSError, struct.error, ImageError) as e:
            raise ImageError("cannot inspect the existing disk %s: %s" % (disk, e))
        if dinfo["format"] != "qcow2":
            raise ImageError("%s exists but is %s, not a qcow2 overlay" % (disk, dinfo["format"]))
        if dinfo.get("backing_file") != paths["base"]:
            raise ImageError("%s exists with backing file %r, not %s (another image?); remove the "
                             "instance disk first (state=absent)" % (disk, dinfo.get("backing_file"), paths["base"]))
        result["disk_virtual_size"] = dinfo["virtual_size"]
        if not check_mode and _secure_instance_files(paths["inst_dir"], disk):   # an older, world-readable one
            result["changed"] = True
        if want_bytes and want_bytes > dinfo["virtual_size"]:
            result.update(changed=True, disk_resized=True, disk_virtual_size=want_bytes)
            if check_mode:
                return
            rc, out, err = run(resize_cmd(qemu_img, disk, want_bytes))
            if rc != 0:
                raise ImageError("qemu-img resize of %s failed (rc=%s): %s" % (disk, rc, (err or out).strip()))
        elif want_bytes and want_bytes < dinfo["virtual_size"]:
            result["warnings"].append("%s is larger (%d bytes) than root_gb; it is not shrunk"
                                      % (disk, dinfo["virtual_size"]))
        return
    result.update(changed=True, disk_created=True, disk_virtual_size=want_bytes or vsize)
    if check_mode:
        return
    made = makedirs(paths["inst_dir"], guest_files.DIR_MODE)
    argv = overlay_cmd(qemu_img, paths["base"], fmt, disk, want_bytes)
    try:
        rc, out, err = run(argv)
        if rc != 0:
            raise ImageError("qemu-img create of %s failed (rc=%s): %s" % (disk, rc, (err or out).strip()),
                             cmd=argv)
        _secure_instance_files(paths["inst_dir"], disk)
        dinfo = inspect_format(disk)
        result["disk_virtual_size"] = dinfo["virtual_size"]
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(disk)
        for d in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(d)
        raise


# --------------------------------------------------------------------------------------------
# the image_cache step: cleanup of unused bases (Nova's image cache manager)


def overlay_users(instances_path):
    """({realpath of a backing file: [instance dir names]}, [files that could not be inspected]) for every
    file in every instance directory (the qcow2 overlays name their base as backing file)."""
    users, unreadable = {}, []
    for name in sorted(os.listdir(instances_path)):
        inst_dir = os.path.join(instances_path, name)
        if name in ("_base", "locks") or not os.path.isdir(inst_dir) or os.path.islink(inst_dir):
            continue
        for fname in sorted(os.listdir(inst_dir)):
            path = os.path.join(inst_dir, fname)
            if not os.path.isfile(path) or os.path.islink(path):
                continue
            try:
                backing = inspect_format(path).get("backing_file")
            except (OSError, struct.error, ImageError) as e:
                unreadable.append("%s: %s" % (path, e))
                continue
            if backing:
                full = backing if backing.startswith("/") else os.path.join(inst_dir, backing)
                users.setdefault(os.path.realpath(full), []).append(name)
    return users, unreadable


def _cache_entry(base_dir, name, users, now):
    path = os.path.join(base_dir, name)
    st = os.stat(path)
    rec = read_info(path + ".info") or {}
    return dict(name=name, path=path, image_id=rec.get("image_id"), size=st.st_size,
                unused_seconds=max(0, int(now - st.st_mtime)),
                last_used=datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).isoformat(),
                used_by=sorted(users.get(os.path.realpath(path), [])))


def image_cache_step(p, check_mode=False, now=None):
    """p: instances_path, max_unused_age (seconds), state (cleaned | listed).

    A base in ``_base`` is removed (with its .info) when no file of any instance directory uses it as
    backing file and it has not been used for ``max_unused_age`` seconds (its mtime: image_fetch touches
    it at every use). The decision is taken again under the image's lock, the lock image_fetch holds
    while it fetches a base or makes an overlay on it, so a boot racing the cleanup never loses its
    base. Download leftovers (``.<name>.*.part`` of a crashed fetch) older than that go too. When a file
    of an instance directory cannot be inspected, nothing is removed (it might use any base).
    """
    instances_path = p.get("instances_path") or layout.INSTANCES_PATH
    if not os.path.isabs(instances_path):
        raise ImageError("instances_path must be an absolute path")
    instances_path = os.path.normpath(instances_path)
    max_age = p.get("max_unused_age")
    max_age = 86400 if max_age is None else max_age
    if max_age < 0:
        raise ImageError("max_unused_age must not be negative")
    state = p.get("state") or "cleaned"
    if state not in ("cleaned", "listed"):
        raise ImageError("state must be cleaned or listed, not %r" % (state,))
    now = time.time() if now is None else now
    base_dir = os.path.join(instances_path, "_base")
    result = dict(changed=False, removed=[], kept=[], leftovers_removed=[], warnings=[])
    if not os.path.isdir(base_dir):
        result["diff"] = dict(before="", after="")
        return result
    users, unreadable = overlay_users(instances_path)
    names = sorted(n for n in os.listdir(base_dir)
                   if not n.endswith(".info") and os.path.isfile(os.path.join(base_dir, n))
                   and not os.path.islink(os.path.join(base_dir, n)))
    bases = [n for n in names if not n.startswith(".")]
    leftovers = [n for n in names if n.startswith(".") and n.endswith(".part")]
    if unreadable:
        result["warnings"].append("not removing any base: cannot inspect %s" % "; ".join(unreadable))
    lock_dir = os.path.join(instances_path, "locks")
    for name in bases:
        entry = _cache_entry(base_dir, name, users, now)
        if entry["used_by"] or unreadable or entry["unused_seconds"] < max_age or state == "listed":
            entry["reason"] = ("in use" if entry["used_by"] else "unreadable instance files" if unreadable
                               else "used recently" if entry["unused_seconds"] < max_age else "unused, removable")
            result["kept"].append(entry)
            continue
        if check_mode:
            result["removed"].append(entry)
            continue
        makedirs(lock_dir)
        with file_lock(os.path.join(lock_dir, name + ".lock")):
            # again under the lock: an image_fetch may have made an overlay on it (or used it) meanwhile
            users_now, unreadable_now = overlay_users(instances_path)
            entry = _cache_entry(base_dir, name, users_now, now)
            if entry["used_by"] or unreadable_now or entry["unused_seconds"] < max_age:
                entry["reason"] = "in use" if entry["used_by"] or unreadable_now else "used recently"
                result["kept"].append(entry)
                continue
            for path in (entry["path"] + ".info", entry["path"]):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        result["removed"].append(entry)
    if state == "cleaned":
        for name in leftovers:
            path = os.path.join(base_dir, name)
            if now - os.stat(path).st_mtime < max_age:
                continue
            result["leftovers_removed"].append(name)
            if not check_mode:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    result["changed"] = bool(result["removed"] or result["leftovers_removed"])
    removed = {e["name"] for e in result["removed"]} | set(result["leftovers_removed"])
    result["diff"] = dict(before="".join("%s\n" % n for n in bases + leftovers),
                          after="".join("%s\n" % n for n in bases + leftovers if n not in removed),
                          before_header="%s (before)" % base_dir, after_header="%s (after)" % base_dir)
    return result
