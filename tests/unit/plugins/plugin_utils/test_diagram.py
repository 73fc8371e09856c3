# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The request-flow sequence diagram: the pure renderer (plugin_utils/diagram.py) and the request_flow callback
writing it from a run's rows and a real SQLite step log."""

from __future__ import annotations

import datetime
import os
import re
import stat
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.bootflow.cloud.plugins.callback import request_flow
from ansible_collections.bootflow.cloud.plugins.module_utils.common import rules
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils import diagram
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

NS = "{http://www.w3.org/2000/svg}"
T0 = datetime.datetime(2026, 1, 2, 3, 4, 5)
UUID = "0b6e1a52-2f0c-4a8e-9d2b-3d5f0c7e9a11"


def log_row(i, seed, service, action, host, before, after, ms=100):
    return {"id": 10 + i, "instance_uuid": UUID, "seed_steps": seed, "service": service, "action": action,
            "host": host, "vm_state_from": before[0], "task_state_from": before[1], "vm_state": after[0],
            "task_state": after[1], "changed": True, "ms": ms, "created_at": T0 + datetime.timedelta(seconds=i)}


BOOT_LOG = [
    log_row(0, "3-7", "nova-api", "create", None, (None, None), ("building", "scheduling")),
    log_row(1, "8-12", "nova-scheduler", "schedule", None, ("building", "scheduling"), ("building", "scheduling")),
    log_row(2, "19-21", "glance-api", "image_fetch", "hv1", ("building", "scheduling"), ("building", None)),
    log_row(3, "22-24", "neutron-server", "port", None, ("building", None), ("building", "networking")),
    log_row(4, "28", "nova-compute", "domain", "hv1", ("building", "networking"), ("active", None), ms=900),
]


def run_row(log, **extra):
    """The bootflow_step row the run saw for a step-log row."""
    row = instances.step_row("web1", log["seed_steps"], log["service"], log["action"], log["host"] or "controller",
                             (log["vm_state_from"], log["task_state_from"]), (log["vm_state"], log["task_state"]),
                             True, log["ms"], uuid=UUID, recorded=True)
    return dict(row, _end=0.0, **extra)


def arrows_of(svg):
    root = ET.fromstring(svg)
    return root, [{k[5:]: v for k, v in g.attrib.items() if k.startswith("data-")}
                  for g in root.iter(NS + "g") if g.get("class") == "arrow"]


@pytest.mark.parametrize("service, action, want", [
    ("keystone", "token", ("client", "keystone")),
    ("nova-api", "create", ("client", "nova-api")),
    ("nova-scheduler", "schedule", ("nova-api", "nova-scheduler")),
    ("nova-conductor", "instance_info", ("nova-compute", "nova-conductor")),
    ("nova-conductor", "reschedule", ("nova-compute", "nova-conductor")),
    ("glance-api", "image_fetch", ("nova-compute", "glance")),
    ("neutron-server", "port", ("nova-compute", "neutron")),
    ("neutron-dhcp-agent", "dhcp_lease", ("nova-compute", "neutron")),
    ("cinder-volume", "volume", ("nova-compute", "cinder")),
    ("cinder-api", "volume_attach", ("nova-compute", "cinder")),
    ("nova-compute", "config_drive", ("nova-compute", "nova-compute")),
    ("nova-compute", "domain", ("nova-compute", "libvirt")),
    ("nova-compute -> libvirt", "domain", ("nova-compute", "libvirt")),       # a failed task's name
    ("rpc.call nova-conductor", "instance_info", ("nova-compute", "nova-conductor")),
    ("neutron DHCP agent + L2", "dhcp_lease", ("nova-compute", "neutron")),
    ("octavia", "lb", ("client", "octavia")),
])
def test_each_service_is_an_arrow_between_its_caller_and_its_lifeline(service, action, want):
    assert diagram.endpoints(service, action) == want


def test_merge_draws_the_log_of_the_run_and_what_the_run_saw_in_time_order():
    end = [(T0 + datetime.timedelta(seconds=i)).replace(tzinfo=datetime.timezone.utc).timestamp() for i in range(5)]
    token = {"seed_steps": "1-2", "service": "keystone", "action": "token", "host": "controller", "changed": False,
             "ms": 40, "_end": end[0] - 0.5}
    spec = {"seed_steps": "13-18", "service": "nova-conductor", "action": "instance_info", "host": "hv1",
            "from": "building/scheduling", "to": "building/scheduling", "changed": False, "ms": 7, "recorded": False,
            "_end": end[1] + 0.5}
    # the run saw no row of the list steps (3-7, 8-12) and other times: the log wins for what it holds
    run = [token, spec] + [dict(run_row(dict(r, ms=1)), _end=end[i + 2] + 0.1) for i, r in enumerate(BOOT_LOG[2:])]
    older = log_row(-5, "3-7", "nova-api", "create", None, (None, None), ("building", "scheduling"))
    arrows = diagram.merge(run, [older] + BOOT_LOG, since=end[0] - 1)   # a row of an earlier run first
    assert [(a["seed"], a["recorded"], a["seq"]) for a in arrows] == [
        ("1-2", False, None), ("3-7", True, 10), ("8-12", True, 11), ("13-18", False, None), ("19-21", True, 12),
        ("22-24", True, 13), ("28", True, 14)]
    assert [a["ms"] for a in arrows] == [40, 100, 100, 7, 100, 100, 900]
    assert arrows[0]["start"] == pytest.approx(end[0] - 0.54)
    assert arrows[-1]["start"] == pytest.approx(end[4] - 0.9)
    assert (arrows[-1]["vm_state"], arrows[-1]["task_state"]) == ("active", None)
    assert (arrows[3]["vm_state"], arrows[3]["task_state"]) == ("building", "scheduling")
    assert len(diagram.merge(run, [older] + BOOT_LOG)) == 8              # no start given: the whole log


def test_merge_marks_failures_reschedules_and_undos():
    resched = log_row(5, "8-12", "nova-conductor", "reschedule", "hv2", ("building", "spawning"),
                      ("building", "scheduling"))
    undo = log_row(6, "28", "nova-compute", "domain", "hv1", ("building", "scheduling"), ("building", "scheduling"))
    failed = {"seed_steps": "28", "service": "nova-compute -> libvirt", "action": "domain", "host": "hv1",
              "from": "", "to": "", "changed": "FAILED", "ms": 300, "_end": 1.0}
    error = log_row(7, "fault", "nova-conductor", "build_failed", "hv2", ("building", "scheduling"), ("error", None))
    run = [failed, run_row(resched), run_row(undo, undo=True, seed_steps="undo"), run_row(error)]
    failed["_end"] = (T0 + datetime.timedelta(seconds=4)).replace(tzinfo=datetime.timezone.utc).timestamp()
    arrows = diagram.merge(run, [resched, undo, error])
    assert [(a["status"], a["seed"], a["recorded"]) for a in arrows] == [
        ("failed", "28", False), ("reschedule", "8-12", True), ("undo", "28", True), ("failed", "fault", True)]
    _root, drawn = arrows_of(diagram.render("web1", UUID, arrows))
    assert [(a["status"], a["from"], a["to"]) for a in drawn] == [
        ("failed", "nova-compute", "libvirt"), ("reschedule", "nova-compute", "nova-conductor"),
        ("undo", "nova-compute", "libvirt"), ("failed", "nova-compute", "nova-conductor")]


def test_merge_without_the_log_draws_what_the_run_saw():
    run = [run_row(r) for r in BOOT_LOG]
    arrows = diagram.merge(run, [])            # no database: nothing to prefer
    assert [(a["seed"], a["recorded"], a["ms"]) for a in arrows] == [(r["seed_steps"], False, r["ms"]) for r in BOOT_LOG]


def test_render_is_well_formed_svg_with_one_arrow_per_step_in_order():
    arrows = diagram.merge([run_row(r) for r in BOOT_LOG], BOOT_LOG)
    svg = diagram.render("web1", UUID, arrows)
    root, drawn = arrows_of(svg)
    assert root.tag == NS + "svg" and (root.get("data-instance"), root.get("data-uuid")) == ("web1", UUID)
    assert [(a["index"], a["seq"], a["seed"], a["vm-state"], a["task-state"], a["recorded"]) for a in drawn] == [
        (str(i), str(r["id"]), r["seed_steps"], r["vm_state"] or "", r["task_state"] or "", "db")
        for i, r in enumerate(BOOT_LOG)]
    lifelines = [g.get("data-service") for g in root.iter(NS + "g") if g.get("class") == "lifeline"]
    assert lifelines == [k for k, _label in diagram.LIFELINES]
    texts = ["".join(t.itertext()) for t in root.iter(NS + "text")]
    assert "28  nova-compute: domain" in texts and "900 ms  -> active/none  on hv1" in texts
    assert "+3.200 s" in texts          # the domain step (900 ms, ended at 4 s) started 3.2 s after the first (at -0.1 s)
    # self-contained: nothing fetched from elsewhere
    assert re.findall(r"https?://[^\"' ]+", svg) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"<script|href=|@import|<image|<foreignObject", svg, re.I)
    arrow_line = r'<line x1="\d+" y1="(\d+)" x2="\d+" y2="\1" stroke="#1f4e79" stroke-width="2" marker-end'
    ys = [int(y) for y in re.findall(arrow_line, svg)]
    assert len(ys) == len(BOOT_LOG) and ys == sorted(set(ys))          # one arrow a row, top to bottom


@pytest.mark.parametrize("name", [
    'x"/><script>alert(1)</script><g a="', "a&b<c>d'e", "evil\x1b[2J\u202egpj.exe\n", "]]><!--", "\x00nul\ud800",
])
def test_hostile_names_stay_text(name):
    row = dict(run_row(BOOT_LOG[0]), instance=name, host=name, service=name)
    svg = diagram.render(name, name, diagram.merge([row], []))
    root, drawn = arrows_of(svg)               # still well-formed XML: nothing escaped out
    assert not list(root.iter(NS + "script")) and not list(root.iter("script"))
    assert root.get("data-instance") == rules.safe_text(name) == drawn[0]["host"]
    assert not any(rules.forbidden_char((e.text or "").strip()) for e in root.iter())
    assert rules.forbidden_char(svg.replace("\n", "")) is None


@pytest.mark.parametrize("name, uuid, want", [
    ("web1", UUID, "web1-%s.svg" % UUID),
    ("../../etc/passwd", "../x", "etc_passwd-x.svg"),
    (".hidden", "/abs/", "hidden-abs.svg"),
    ("", "", "instance-unknown.svg"),
    ("é vil\nname", UUID, "vil_name-%s.svg" % UUID),
    ("x" * 300, UUID, "%s-%s.svg" % ("x" * 64, UUID)),
])
def test_file_names_are_safe(name, uuid, want):
    got = diagram.file_name(name, uuid)
    assert got == want
    assert "/" not in got and not got.startswith(".") and re.fullmatch(r"[A-Za-z0-9._-]+", got)


class Display:
    def __init__(self):
        self.lines, self.warnings = [], []

    def banner(self, text):
        self.lines.append(text)

    def display(self, text):
        self.lines.append(text)

    def warning(self, text):
        self.warnings.append(text)


def callback(directory):
    cb = request_flow.CallbackModule()
    cb._display = Display()                       # pylint: disable=protected-access
    cb._plugin_options = {"diagram_dir": str(directory) if directory else None}   # pylint: disable=protected-access
    return cb


def test_callback_writes_the_diagram_from_the_step_log(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("BOOTFLOW_DB_URL", raising=False)
    database = _db.open_db()
    try:
        with database.tx() as conn:
            for r in BOOT_LOG:
                instances.record_step(conn, UUID, r["seed_steps"], r["service"], r["action"], r["host"],
                                      (r["vm_state_from"], r["task_state_from"]), (r["vm_state"], r["task_state"]),
                                      True, r["ms"])
    finally:
        database.dispose()
    out = tmp_path / "out" / "diagrams"
    cb = callback(out)
    cb._rows = [run_row(dict(r, ms=1)) for r in BOOT_LOG]   # pylint: disable=protected-access
    old = os.umask(0o022)
    try:
        cb.v2_playbook_on_stats(None)
    finally:
        os.umask(old)
    path = out / ("web1-%s.svg" % UUID)
    assert cb._display.warnings == [] and "request flow diagram: %s" % path in cb._display.lines
    assert os.listdir(out) == [path.name]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755 and stat.S_IMODE(path.stat().st_mode) == 0o644
    _root, drawn = arrows_of(path.read_text())
    assert [(a["seed"], a["ms"], a["recorded"]) for a in drawn] == [(r["seed_steps"], str(r["ms"]), "db")
                                                                    for r in BOOT_LOG]
    assert "REQUEST FLOW [web1]" in cb._display.lines        # the table as before


def test_callback_without_diagram_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cb = callback(None)
    cb._rows = [run_row(r) for r in BOOT_LOG]                 # pylint: disable=protected-access
    cb.v2_playbook_on_stats(None)
    assert os.listdir(tmp_path) == [] and "REQUEST FLOW [web1]" in cb._display.lines


def test_callback_names_files_safely_and_warns_instead_of_failing(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path / "state"))
    out = tmp_path / "d"
    cb = callback(out)
    cb._rows = [dict(run_row(BOOT_LOG[0]), instance="../../escape", uuid="../../x", recorded=False)]  # noqa
    cb.v2_playbook_on_stats(None)
    assert os.listdir(out) == ["escape-x.svg"] and sorted(os.listdir(tmp_path)) == ["d"]
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    cb = callback(blocked / "sub")
    cb._rows = [run_row(BOOT_LOG[0])]                          # pylint: disable=protected-access
    cb.v2_playbook_on_stats(None)
    assert len(cb._display.warnings) == 1 and "no diagram written" in cb._display.warnings[0]
    assert "REQUEST FLOW [web1]" in cb._display.lines


def test_callback_writes_one_file_per_instance_of_a_fleet_and_none_in_check_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path / "state"))
    other = "7d1c2b3a-0000-4000-8000-000000000002"
    rows = [dict(run_row(r), recorded=False) for r in BOOT_LOG]
    rows += [dict(r, instance="web2", uuid=other) for r in rows]
    rows.append({"instance": "web2", "uuid": other, "seed_steps": "28", "service": "nova-compute -> libvirt",
                 "action": "domain", "host": "hv2", "from": "", "to": "", "changed": "FAILED", "ms": "", "_ms": 12,
                 "_end": 1.0})
    cb = callback(tmp_path / "d")
    cb._rows = rows                                           # pylint: disable=protected-access
    cb.v2_playbook_on_stats(None)
    assert sorted(os.listdir(tmp_path / "d")) == sorted(["web1-%s.svg" % UUID, "web2-%s.svg" % other])
    _root, web2 = arrows_of((tmp_path / "d" / ("web2-%s.svg" % other)).read_text())
    assert [a["status"] for a in web2] == ["ok"] * len(BOOT_LOG) + ["failed"] and web2[-1]["ms"] == "12"
    monkeypatch.setattr(request_flow.context, "CLIARGS", {"check": True})
    cb = callback(tmp_path / "check")
    cb._rows = rows                                           # pylint: disable=protected-access
    cb.v2_playbook_on_stats(None)
    assert not (tmp_path / "check").exists()
    assert "request flow diagram: none in check mode (nothing happened to draw)" in cb._display.lines
