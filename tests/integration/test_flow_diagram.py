# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The request_flow callback's sequence diagrams of real boots on test hosts bfhv246 and bfhv247, opened in a real
headless browser (Debian's chromium): a screenshot that holds a picture, and arrows in the rendered document
that are the steps the database recorded for the instance, in order, with their seed steps and states.

The hosts report different memory (host var ``bootflow_memory_mb``), so the scheduler prefers bfhv246. The
first boot builds there; the second finds bfhv246 refusing to start QEMU (the libvirt hook of sched_helpers,
flag ``fail-start``) and is rescheduled onto bfhv247: its diagram shows the failed step and the reschedule.
The tests run in file order and share the hosts; the module deletes its instances at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib

import pytest

from conftest import Env
from sched_helpers import flag, fresh_hosts, install_fault_hook, purge, write_inventory

HOSTS = (246, 247)
GUEST_MB = {246: 4096, 247: 1024}     # + the reserved memory: the RAM weigher prefers bfhv246
SVG_NS = "{http://www.w3.org/2000/svg}"
COLOURS = {"ok": (0x1F, 0x4E, 0x79), "failed": (0xC0, 0x39, 0x2B), "reschedule": (0xD3, 0x54, 0x00)}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("bootflow-flow-diagram")
    try:
        fresh_hosts(HOSTS)
        install_fault_hook(HOSTS[0])
        write_inventory(base / "inventory.ini", HOSTS, GUEST_MB)
        env = Env(base / "state", base / "inventory.ini", HOSTS[0])
        env.base = base
        env.play("bootstrap.yml")
        env.play("hypervisors.yml")
        yield env
        env.env.pop("BOOTFLOW_DIAGRAM_DIR", None)
        for row in env.query("SELECT name FROM instances WHERE deleted = 0"):
            env.play("delete.yml", "-e", "bootflow_instance_name=%s" % row["name"], check=False)
    finally:
        flag(HOSTS[0], "fail-start", on=False)
        purge(HOSTS)


def boot(env, name, diagrams):
    env.env["BOOTFLOW_DIAGRAM_DIR"] = str(diagrams)
    res = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % name)
    rows = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)
    assert len(rows) == 1, rows
    inst = rows[0]
    steps = env.query("SELECT * FROM instance_steps WHERE instance_uuid=? ORDER BY id", inst["uuid"])
    return {"out": res.out, "instance": inst, "steps": steps,
            "path": diagrams / ("%s-%s.svg" % (name, inst["uuid"]))}


@pytest.fixture(scope="module")
def plain(cloud):
    return boot(cloud, "fd-vm", cloud.base / "diagrams")


@pytest.fixture(scope="module")
def rescheduled(cloud, plain):
    del plain    # the first boot's instance is on bfhv246 already
    flag(HOSTS[0], "fail-start")
    try:
        return boot(cloud, "fd-resched", cloud.base / "diagrams")
    finally:
        flag(HOSTS[0], "fail-start", on=False)


# --- the browser -----------------------------------------------------------------------------------

def chromium(tmp_path, *args):
    """Run Debian's headless chromium with its own HOME and profile; its stdout. A hang is ended by its PID (the
    process group it leads: its renderer and zygote children go with it)."""
    exe = shutil.which("chromium")
    assert exe, "chromium is not installed (scripts/setup.sh installs Debian's chromium)"
    home = tmp_path / "chromium-home"
    home.mkdir(exist_ok=True)
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           "--user-data-dir=%s" % (home / "profile"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, HOME=str(home)))
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    return out


def svg_size(path):
    root = ET.parse(path).getroot()
    return int(root.get("width")), int(root.get("height"))


def screenshot(tmp_path, path):
    width, height = svg_size(path)
    png = tmp_path / (path.stem + ".png")
    chromium(tmp_path, "--screenshot=%s" % png, "--window-size=%d,%d" % (width, height), path.as_uri())
    return png


def rendered_arrows(tmp_path, path):
    """The arrows (their data-* attributes) of the document as the browser built it."""
    root = ET.fromstring(chromium(tmp_path, "--dump-dom", path.as_uri()))
    assert root.tag == SVG_NS + "svg"
    return [{k[5:]: v for k, v in g.attrib.items() if k.startswith("data-")}
            for g in root.iter(SVG_NS + "g") if g.get("class") == "arrow"]


def decode_png(data):
    """(width, height, rows of RGB tuples) of an 8-bit RGB/RGBA non-interlaced PNG, decoded with zlib and struct."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, {}
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.setdefault(kind, []).append(data[pos + 8:pos + 8 + size])
        pos += 12 + size
    width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"][0])
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    stride = width * bpp
    prev, rows = bytearray(stride), []
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((a + b) >> 1)) & 0xFF
            elif ftype == 4:
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def picture(png, size):
    """The screenshot's pixel counts: {colour: count}; asserts it is a PNG of the window's size."""
    width, height, rows = decode_png(png.read_bytes())
    assert (width, height) == size
    counts = {}
    for row in rows:
        for px in row:
            counts[px] = counts.get(px, 0) + 1
    return counts


def assert_arrows_are_the_step_log(arrows, steps):
    """The arrows drawn from the step log are its rows: same ids, order, seed steps, services, actions, hosts and
    states; the others are steps the log does not keep (token, conductor spec, final read, failed task)."""
    logged = [a for a in arrows if a["recorded"] == "db"]
    assert [(int(a["seq"]), a["seed"], a["service"], a["action"], a["host"], a["vm-state-from"], a["task-state-from"],
             a["vm-state"], a["task-state"], int(a["ms"])) for a in logged] == \
        [(s["id"], s["seed_steps"], s["service"], s["action"], s["host"] or "controller", s["vm_state_from"] or "",
          s["task_state_from"] or "", s["vm_state"] or "", s["task_state"] or "", s["ms"]) for s in steps]
    starts = [float(a["start"]) for a in logged]
    assert starts == sorted(starts), starts
    assert {a["action"] for a in arrows if a["recorded"] == "run"} <= {"token", "instance_info", "show", "domain"}


# --- the tests -------------------------------------------------------------------------------------

def test_boot_writes_one_self_contained_svg_per_instance(plain):
    path, inst = plain["path"], plain["instance"]
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("active", None, "bfhv246")
    assert "request flow diagram: %s" % path in plain["out"] and "REQUEST FLOW [fd-vm]" in plain["out"]
    assert sorted(os.listdir(path.parent)) == [path.name]           # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755 & ~umask
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    text = path.read_text()
    ET.fromstring(text)                                              # well-formed XML
    assert re.findall(r"https?://[^\"' ]+", text) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"<script|href=|@import|@font-face|<image|<foreignObject", text, re.I)
    assert set(re.findall(r"url\(([^)]*)\)", text)) <= {"#head-ok", "#head-failed", "#head-undo", "#head-reschedule"}


def test_browser_renders_the_boot_and_its_arrows_are_the_db_steps(plain, tmp_path):
    path, steps = plain["path"], plain["steps"]
    arrows = rendered_arrows(tmp_path, path)
    assert_arrows_are_the_step_log(arrows, steps)
    assert [s["seed_steps"] for s in steps][:2] == ["3-7", "8-12"] and steps[-1]["vm_state"] == "active"
    # the run's picture: the token first, then nova-api's create; the last recorded step makes it ACTIVE
    assert (arrows[0]["seed"], arrows[0]["from"], arrows[0]["to"]) == ("1-2", "client", "keystone")
    assert (arrows[1]["seed"], arrows[1]["from"], arrows[1]["to"]) == ("3-7", "client", "nova-api")
    domain = [a for a in arrows if a["action"] == "domain"]
    assert [(a["from"], a["to"], a["vm-state"], a["status"]) for a in domain] == [("nova-compute", "libvirt", "active",
                                                                                   "ok")]
    assert all(a["status"] == "ok" for a in arrows)
    counts = picture(screenshot(tmp_path, path), svg_size(path))
    total = sum(counts.values())
    ink = total - counts.get((255, 255, 255), 0)
    assert 0.01 * total < ink < 0.5 * total, (ink, total)            # a picture, not a blank or a smear
    assert counts.get(COLOURS["ok"], 0) > 500                        # the arrows' blue
    assert counts.get(COLOURS["failed"], 0) < 100                    # the legend's line only


def test_rescheduled_build_shows_the_failed_step_and_the_reschedule(rescheduled, tmp_path):
    inst, steps, path = rescheduled["instance"], rescheduled["steps"], rescheduled["path"]
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("active", None, "bfhv247")
    arrows = rendered_arrows(tmp_path, path)
    assert_arrows_are_the_step_log(arrows, steps)
    failed = [a for a in arrows if a["status"] == "failed"]
    assert [(a["seed"], a["host"], a["to"], a["recorded"]) for a in failed] == [("28", "bfhv246", "libvirt", "run")]
    resched = [a for a in arrows if a["status"] == "reschedule"]
    assert [(a["seed"], a["host"], a["to"], a["vm-state"], a["task-state"]) for a in resched] == \
        [("8-12", "bfhv247", "nova-conductor", "building", "scheduling")]
    order = [a["status"] for a in arrows]
    assert order.index("failed") < order.index("reschedule")
    # between them the compute role's rescue undid the build on bfhv246: grey arrows
    undone = arrows[order.index("failed") + 1:order.index("reschedule")]
    assert undone and {a["status"] for a in undone} == {"undo"} and {a["host"] for a in undone} == {"bfhv246"}
    assert "domain" in [a["action"] for a in undone if a["recorded"] == "db"]
    # after the reschedule the build runs again, on bfhv247, to ACTIVE
    after = arrows[order.index("reschedule") + 1:]
    assert [a["host"] for a in after if a["action"] == "domain"] == ["bfhv247"]
    assert after[-1]["vm-state"] in ("active", "") and [a for a in after if a["vm-state"] == "active"]
    counts = picture(screenshot(tmp_path, path), svg_size(path))
    assert counts.get(COLOURS["failed"], 0) > 300 and counts.get(COLOURS["reschedule"], 0) > 300   # legend: ~50
