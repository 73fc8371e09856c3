#!/usr/bin/env python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark (not a test): image upload of a big file streams - time and peak memory, same run.

Each phase runs in a fresh child process (so its peak RSS, ru_maxrss, is its own) on the same
256 MiB raw image file (random data), in this order, --rounds times:

  baseline   the child imports the registry code and opens the SQLite DB, and does nothing else:
             the RSS every phase starts from
  copy       shutil.copyfile of the file into the same directory (the floor for writing the bytes)
  hash       md5 + sha512 of the file, streamed in 1 MiB blocks, nothing written: the floor for any
             upload that verifies what it stores (the ratios are against this)
  read-all   reads the whole file into one bytes object and hashes it (what NOT streaming costs):
             shows what the RSS would be if an upload held the image in memory
  local      bootflow.cloud.image's local backend (_images.apply_image): format check, md5+sha512
             while streaming into <state_dir>/images/<id>.part, rename, record active
  glance     the glance backend (_images.apply_image with a _glance.Glance): the same checks, then a
             real Glance 33 (tests/openstack/glance.sh, noauth, 127.0.0.1) receives the file in a
             streamed PUT and computes its own hashes (compared with ours)
  download   _glance.Glance.download of that image into a file (what image_fetch does on the
             controller before sending the file to a host), sha512 verified while streaming

Medians are printed with the time ratio to `hash` and the RSS growth over `baseline`.
usage: .venv/bin/python bench/bench_image_upload.py [--size-mib 256] [--rounds 3] [--no-glance]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "build", "collections"))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))
PHASES = ("baseline", "copy", "hash", "read-all", "local", "glance", "download")


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(phase, work, image, glance_url, image_id):
    """One phase in this (fresh) process; prints {"seconds", "maxrss_mib", ...} as JSON."""
    from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
    state_dir = os.path.join(work, "state-%s-%d" % (phase, os.getpid()))
    db = _db.open_db(None, state_dir=state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    _tok, auth = _identity.issue_token(db, _identity.key_repository(state_dir), "admin", "pw", "admin")
    if phase in ("glance", "download"):
        import openstack  # noqa: F401  (imported before the clock, like the action plugin's import)
    out = {"rss_before_mib": maxrss_mib()}
    t0 = time.perf_counter()
    if phase == "copy":
        shutil.copyfile(image, os.path.join(work, "copy-%d" % os.getpid()))
    elif phase == "hash":
        md5, sha = hashlib.md5(), hashlib.sha512()
        with open(image, "rb") as f:
            for block in iter(lambda: f.read(1024 * 1024), b""):
                md5.update(block)
                sha.update(block)
    elif phase == "read-all":
        with open(image, "rb") as f:
            data = f.read()
        hashlib.md5(data).hexdigest()
        hashlib.sha512(data).hexdigest()
        del data
    elif phase == "local":
        _changed, rec, _diff = _images.apply_image(db, auth, state_dir, "bench-%d" % os.getpid(), image, "raw", "bare",
                                                   "private", 0, 0, {}, "present", False)
        assert rec["status"] == "active" and rec["size"] == os.path.getsize(image)
    elif phase == "glance":
        glance = _glance.Glance(glance_url)
        _changed, rec, _diff = _images.apply_image(db, auth, state_dir, "bench-%d" % os.getpid(), image, "raw", "bare",
                                                   "private", 0, 0, {}, "present", False, glance=glance)
        assert rec["status"] == "active" and rec["size"] == os.path.getsize(image)
        out["image_id"] = rec["id"]
    elif phase == "download":
        glance = _glance.Glance(glance_url)
        record = glance.image(image_id)
        with open(os.path.join(work, "download-%d" % os.getpid()), "wb") as f:
            glance.download(record, f, _glance.expected_hashes(record))
    out.update(seconds=time.perf_counter() - t0, maxrss_mib=maxrss_mib())
    for name in os.listdir(work):   # the bytes written by this phase go now: the disk stays small
        if name.endswith("-%d" % os.getpid()):
            path = os.path.join(work, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.unlink(path)
    print(json.dumps(out))


def run_child(phase, work, image, glance_url="", image_id=""):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", phase, work, image, glance_url, image_id],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit("phase %s failed:\n%s" % (phase, proc.stderr[-3000:]))
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_image(path, size_mib):
    block = os.urandom(1024 * 1024)
    with open(path, "wb") as f:
        for i in range(size_mib):
            f.write(block[i % 251:] + block[:i % 251])   # distinct blocks, no cost of urandom per MiB


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-glance", action="store_true", help="skip the phases that need a real Glance")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-image-")
    glance = None
    try:
        image = os.path.join(work, "image.raw")
        make_image(image, args.size_mib)
        phases = [p for p in PHASES if not (args.no_glance and p in ("glance", "download"))]
        if not args.no_glance:
            import glance_server  # tests/openstack/glance_server.py
            glance = glance_server.GlanceServer(os.path.join(work, "glance-base"))
            glance.start()
        results = {p: [] for p in phases}
        for _round in range(args.rounds):
            image_id = ""
            for phase in phases:
                res = run_child(phase, work, image, glance.url if glance else "", image_id)
                image_id = res.get("image_id", image_id)
                results[phase].append(res)
                if phase == "download":   # Glance's copy goes too (disk)
                    urllib.request.urlopen(urllib.request.Request("%s/v2/images/%s" % (glance.url, image_id),
                                                                  method="DELETE"), timeout=60).close()
        base_rss = statistics.median(r["maxrss_mib"] for r in results["baseline"])
        floor_s = statistics.median(r["seconds"] for r in results["hash"])
        print("image upload benchmark: %d MiB raw file, %d round(s), medians; machine load %s"
              % (args.size_mib, args.rounds, " ".join("%.1f" % x for x in os.getloadavg())))
        print("%-10s %10s %10s %14s %18s" % ("phase", "seconds", "vs hash", "peak RSS MiB", "RSS over baseline"))
        for phase in phases:
            secs = statistics.median(r["seconds"] for r in results[phase])
            rss = statistics.median(r["maxrss_mib"] for r in results[phase])
            print("%-10s %10.2f %9.2fx %14.1f %+17.1f" % (phase, secs, secs / floor_s if floor_s else 0, rss, rss - base_rss))
    finally:
        if glance is not None:
            glance.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:7])
    else:
        main()
