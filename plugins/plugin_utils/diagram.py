# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sequence diagram of one instance's request flow, as a self-contained SVG document (pure).

PRIVATE to the collection: may change at any time. Controller side only (the request_flow callback).

``merge`` joins the steps a run saw (the ``bootflow_step`` rows of its task results, plus the failed tasks)
with the instance's step log in the database: a step the run recorded is drawn as the log has it. ``render``
draws the services as lifelines and each step as an arrow with its seed step(s), its start and duration and
the vm_state/task_state it moved the instance to. Every arrow carries its data as ``data-*`` attributes.
"""

from __future__ import annotations

import datetime
import re
from xml.sax.saxutils import escape, quoteattr

from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import safe_text

# (key, label) of the lifelines, left to right, as docs/request-flow.md tells the flow
LIFELINES = (
    ("client", "client / CLI"), ("keystone", "keystone"), ("nova-api", "nova-api"),
    ("nova-scheduler", "nova-scheduler"), ("nova-conductor", "nova-conductor"), ("glance", "glance"),
    ("neutron", "neutron"), ("cinder", "cinder"), ("nova-compute", "nova-compute"), ("libvirt", "libvirt / QEMU"),
)
# the service a step's text names -> its lifeline (first match wins: "placement" before "nova-api")
_SERVICE_LIFELINE = (
    ("keystone", "keystone"), ("scheduler", "nova-scheduler"), ("placement", "nova-scheduler"),
    ("conductor", "nova-conductor"), ("nova-api", "nova-api"), ("glance", "glance"), ("neutron", "neutron"),
    ("cinder", "cinder"), ("libvirt", "libvirt"), ("nova-compute", "nova-compute"), ("client", "client"),
)
# who calls each service in the flow
_CALLER = {"keystone": "client", "nova-api": "client", "nova-scheduler": "nova-api", "nova-conductor": "nova-compute",
           "glance": "nova-compute", "neutron": "nova-compute", "cinder": "nova-compute", "libvirt": "nova-compute",
           "nova-compute": "nova-compute"}
STATUS_COLOURS = {"ok": "#1f4e79", "failed": "#c0392b", "undo": "#7f8c8d", "reschedule": "#d35400"}
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")

COL_W, LEFT, TOP, ROW_H = 138, 96, 92, 50


def lifeline(text):
    """The lifeline key of a service's text (``glance-api``, ``rpc.call nova-conductor``...), None if unknown."""
    low = (text or "").lower()
    for word, key in _SERVICE_LIFELINE:
        if word in low:
            return key
    return None


def endpoints(service, action):
    """(caller, callee) lifeline keys of a step. ``nova-compute -> libvirt`` names both; the domain step is
    nova-compute's call into libvirt; a service the flow does not know gets its own lifeline (its text)."""
    service = service or ""
    if "->" in service:
        src, dst = service.split("->", 1)
        return lifeline(src) or "client", lifeline(dst) or dst.strip()
    callee = lifeline(service)
    if callee == "nova-compute" and action == "domain":
        callee = "libvirt"
    if callee is None:
        return "client", service.strip() or "?"
    return _CALLER[callee], callee


def split_state(text):
    """``building/spawning`` -> ("building", "spawning"); "-" and "none" are None."""
    vm, _sep, task = (text or "").partition("/")
    return (None if vm in ("", "-") else vm), (None if task in ("", "none") else task)


def arrow_from_run(row, end):
    """An arrow from a ``bootflow_step`` row the run saw; ``end``: when its result came (epoch seconds)."""
    ms = row.get("ms")
    ms = int(ms) if isinstance(ms, int) or (isinstance(ms, str) and ms.isdigit()) else None
    failed = row.get("changed") == "FAILED"
    status = "failed" if failed else "undo" if row.get("undo") else _status(row.get("seed_steps"), row.get("action"))
    vm_from, task_from = split_state(row.get("from"))
    vm, task = split_state(row.get("to"))
    return {"seq": None, "seed": row.get("seed_steps") or "", "service": row.get("service") or "",
            "action": row.get("action") or "", "host": row.get("host") or "", "vm_from": vm_from,
            "task_from": task_from, "vm_state": vm, "task_state": task, "changed": bool(row.get("changed")),
            "ms": ms, "start": (end - ms / 1000.0) if end is not None and ms is not None else None, "end": end,
            "status": status, "recorded": False}


def arrow_from_log(step, undo=False):
    """An arrow from a row of the instance_steps table (a mapping); ``undo``: the run ran it to undo a build."""
    end = step.get("created_at")
    if isinstance(end, datetime.datetime):
        end = (end if end.tzinfo else end.replace(tzinfo=datetime.timezone.utc)).timestamp()
    ms = int(step.get("ms") or 0)
    return {"seq": step.get("id"), "seed": step.get("seed_steps") or "", "service": step.get("service") or "",
            "action": step.get("action") or "", "host": step.get("host") or "controller",
            "vm_from": step.get("vm_state_from"), "task_from": step.get("task_state_from"),
            "vm_state": step.get("vm_state"), "task_state": step.get("task_state"),
            "changed": bool(step.get("changed")), "ms": ms,
            "start": end - ms / 1000.0 if isinstance(end, (int, float)) else None,
            "end": end if isinstance(end, (int, float)) else None,
            "status": "undo" if undo else _status(step.get("seed_steps"), step.get("action")), "recorded": True}


def _status(seed, action):
    if action == "build_failed":
        return "failed"
    if action == "reschedule":
        return "reschedule"
    return "ok"


def merge(run_rows, log_rows, since=None):
    """The arrows of one instance, in the order the steps ended. ``log_rows``: the instance's step log in order,
    drawn as it is, from ``since`` on (epoch seconds: when the run started; None: all of it). ``run_rows``: what
    the run saw, in order, each a ``bootflow_step`` row with ``_end`` (epoch seconds) and ``undo``: the rows it
    did not record (the token, the conductor's spec, the final read, failed tasks) are drawn as the run saw them,
    the recorded ones only say which logged steps undid a build. Without a log, the run's rows are drawn."""
    logged = [arrow_from_log(r) for r in log_rows]
    logged = [a for a in logged if since is None or a["end"] is None or a["end"] >= since]
    if not logged:
        return [arrow_from_run(r, r.get("_end")) for r in run_rows]
    i = 0
    for row in run_rows:      # the recorded rows are a subsequence of the log (a list step returns no row)
        if not row.get("recorded"):
            continue
        j = next((k for k in range(i, len(logged)) if logged[k]["action"] == row.get("action")), None)
        if j is not None:
            if row.get("undo"):
                logged[j]["status"] = "undo"
            i = j + 1
    extra = [arrow_from_run(r, r.get("_end")) for r in run_rows if not r.get("recorded")]
    last = float("inf")
    return sorted(logged + extra, key=lambda a: last if a["end"] is None else a["end"])


def file_name(name, uuid, suffix=".svg"):
    """A safe file name for an instance's diagram: its name and uuid, only ``[A-Za-z0-9._-]``, no leading dot."""
    def clean(text, limit):
        return _UNSAFE_FILE_CHARS.sub("_", str(text or ""))[:limit].strip("._-")
    return "%s-%s%s" % (clean(name, 64) or "instance", clean(uuid, 64) or "unknown", suffix)


def _text(value):
    return escape(safe_text("" if value is None else value))


def _attr(value):
    return quoteattr(safe_text("" if value is None else value))


def _state(vm, task):
    return "%s/%s" % (vm or "-", task or "none")


def _when(seconds):
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(name, uuid, arrows):
    """The SVG document (text) of instance ``name`` (``uuid``) with ``arrows`` (``merge``'s) top to bottom."""
    keys = [k for k, _label in LIFELINES]
    labels = dict(LIFELINES)
    for arrow in arrows:
        for key in endpoints(arrow["service"], arrow["action"]):
            if key not in labels:
                keys.append(key)
                labels[key] = key
    x = {key: LEFT + COL_W * i + COL_W // 2 for i, key in enumerate(keys)}
    width = LEFT + COL_W * len(keys) + 400   # room for the labels of arrows into the last lifelines
    bottom = TOP + ROW_H * (len(arrows) + 1)
    height = bottom + 70
    starts = [a["start"] for a in arrows if a.get("start") is not None]
    t0 = min(starts) if starts else None
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
           'font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="12" class="request-flow" '
           'data-instance=%s data-uuid=%s>' % (width, height, width, height, _attr(name), _attr(uuid)),
           "<title>%s</title>" % _text("Request flow of %s (%s)" % (safe_text(name), safe_text(uuid))),
           '<rect width="100%" height="100%" fill="#ffffff"/>', "<defs>"]
    for status, colour in STATUS_COLOURS.items():
        out.append('<marker id="head-%s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
                   'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="%s"/></marker>' % (status, colour))
    out.append("</defs>")
    out.append('<text x="12" y="24" font-size="16" font-weight="bold">%s</text>'
               % _text("Request flow: %s (%s)" % (safe_text(name), safe_text(uuid))))
    if t0 is not None:
        out.append('<text x="12" y="44" fill="#555">%s</text>'
                   % _text("first step started %s; times are from then" % _when(t0)))
    for key in keys:
        out.append('<g class="lifeline" data-service=%s><rect x="%d" y="56" width="%d" height="24" rx="4" '
                   'fill="#eef3f8" stroke="#1f4e79"/><text x="%d" y="72" text-anchor="middle" font-size="11">%s'
                   '</text><line x1="%d" y1="80" x2="%d" y2="%d" stroke="#9aa7b4" stroke-dasharray="4 4"/></g>'
                   % (_attr(key), x[key] - COL_W // 2 + 6, COL_W - 12, x[key], _text(labels[key]), x[key], x[key],
                      bottom))
    for i, arrow in enumerate(arrows):
        out.append(_arrow(i, arrow, x, TOP + ROW_H * (i + 1) - 10, t0))
    legend_y = bottom + 24
    out.append('<g class="legend" font-size="11">')
    lx = 12
    for status, label in (("ok", "step"), ("failed", "failed step"), ("reschedule", "reschedule"),
                          ("undo", "undo")):
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/><text x="%d" y="%d">%s</text>'
                   % (lx, legend_y, lx + 26, legend_y, STATUS_COLOURS[status], lx + 32, legend_y + 4, label))
        lx += 120
    out.append('<text x="%d" y="%d">dotted: seen in the run, not in the step log</text>' % (lx, legend_y + 4))
    out.append('</g></svg>')
    return "\n".join(out) + "\n"


def _arrow(index, arrow, x, y, t0):
    src, dst = endpoints(arrow["service"], arrow["action"])
    status = arrow["status"] if arrow["status"] in STATUS_COLOURS else "ok"
    colour = STATUS_COLOURS[status]
    dash = ' stroke-dasharray="6 4"' if status == "undo" else "" if arrow["recorded"] else ' stroke-dasharray="2 3"'
    attrs = {"index": index, "seq": "" if arrow["seq"] is None else arrow["seq"], "seed": arrow["seed"],
             "service": arrow["service"], "action": arrow["action"], "host": arrow["host"], "from": src, "to": dst,
             "vm-state-from": arrow["vm_from"] or "", "task-state-from": arrow["task_from"] or "",
             "vm-state": arrow["vm_state"] or "", "task-state": arrow["task_state"] or "",
             "status": status, "recorded": "db" if arrow["recorded"] else "run",
             "ms": "" if arrow["ms"] is None else arrow["ms"],
             "start": "" if arrow.get("start") is None else "%.3f" % arrow["start"]}
    parts = ['<g class="arrow" %s>' % " ".join("data-%s=%s" % (k, _attr(v)) for k, v in attrs.items())]
    x1, x2 = x[src], x[dst]
    if x1 == x2:
        parts.append('<path d="M%d,%d h34 v14 h-34" fill="none" stroke="%s" stroke-width="2"%s '
                     'marker-end="url(#head-%s)"/>' % (x1, y, colour, dash, status))
        tx, y_line = x1 + 42, y + 7
    else:
        parts.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s marker-end="url(#head-%s)"/>'
                     % (x1, y, x2, y, colour, dash, status))
        tx, y_line = min(x1, x2) + 6, y
    label = "%s  %s: %s" % (arrow["seed"] or "-", arrow["service"], arrow["action"])
    if status == "failed":
        label += "  FAILED"
    elif status == "undo" and arrow["seed"] != "undo":
        label += "  (undo)"
    parts.append('<text x="%d" y="%d" fill="%s" font-weight="bold">%s</text>' % (tx, y_line - 6, colour, _text(label)))
    detail = []
    if arrow["ms"] is not None:
        detail.append("%d ms" % arrow["ms"])
    if arrow["vm_state"] or arrow["task_state"]:
        detail.append("-> %s" % _state(arrow["vm_state"], arrow["task_state"]))
    if arrow["host"]:
        detail.append("on %s" % arrow["host"])
    parts.append('<text x="%d" y="%d" fill="#333" font-size="11">%s</text>'
                 % (tx, y_line + 14, _text("  ".join(detail))))
    when = "+%.3f s" % (arrow["start"] - t0) if t0 is not None and arrow.get("start") is not None else ""
    parts.append('<text x="8" y="%d" fill="#555" font-size="11">%s</text>' % (y_line + 4, _text(when)))
    parts.append("</g>")
    return "".join(parts)
