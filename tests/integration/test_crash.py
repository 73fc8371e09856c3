# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crash safety: the controller killed (SIGKILL of the ansible-playbook process group) at each step of
boot.yml, then boot.yml run again with the same name converges to ACTIVE - one instance, one domain,
one port (IP), one claim, one volume - and delete.yml removes everything (the host is back to what it
was before the boot).

Kill points (KILL_POINTS): ``start`` kills as soon as the task's banner is printed, ``end`` as soon as
its first result line is, and ``host`` while the step's work is on the host (the overlay, the DHCP
reservation, the pool volume, the config drive, the domain definition) and the controller has not got
the module's result, so has not recorded it - the remote module finishes without anyone to report to.

The ``host`` window is held open, not raced: the test host runs modules with HOLD_PYTHON (the
inventory's ansible_python_interpreter), which runs /usr/bin/python3 and, before it hands the result
of the kill point's module (armed in a flag file, with the condition) back, checks that the work is on
the host: then it stops there and says so (flag file ``held``) until the test has killed the
controller. A ``host`` point whose step returns first (its result line is printed: the build play runs
with the ``free`` strategy, which prints a task's banner with its first result) fails the test - the
window was missed.

Every kill point runs on both controller databases: SQLite (the state dir's file) and a fresh database
on the session's private PostgreSQL server (conftest pg_server; the playbooks get BOOTFLOW_DB_URL).
The runs use bootflow_wait_for_lease=false (the guest is started, nobody waits for its lease), so no
kill point waits for a guest to boot. One host (bfhv132), one session per backend.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time

import pytest

from conftest import REPO, fresh_pg_url, host_session

HOST_N = 132
HOST = "bfhv%d" % HOST_N
B = "/var/lib/bootflow"
RESULT_RE = re.compile(r"^(ok|changed|failed|fatal|skipping): \[")
BANNER_RE = re.compile(r"^TASK \[(?P<name>.*)\] \*+$")

# id, task name (regex on the banner), when, host condition (sh test, for when == "host")
KILL_POINTS = [
    ("instance-create-start", r"3-7 \| nova-api: validate every instance of the request", "start", None),
    ("instance-create-end", r"3-7 \| nova-api: validate every instance of the request", "end", None),
    ("schedule-end", r"8-12 \| nova-scheduler: filter, weigh and claim", "end", None),
    ("image_fetch-host", r"19-21 \| glance-api: image into the host cache", "host", "ls %s/instances/*/disk" % B),
    ("port-end", r"22-24 \| neutron-server: allocate the ports", "end", None),
    ("dhcp_lease-host", r"22-24 \| neutron DHCP agent", "host", "grep -q . %s/dhcp/*/host" % B),
    ("volume-host", r"25-27 \| cinder-volume: create the volume in the host", "host", "ls %s/volumes/volume-*" % B),
    ("volume_attach-end", r"25-27 \| cinder-api: attach the volume", "end", None),
    ("config_drive-host", r"28 \| nova-compute: config drive", "host", "ls %s/instances/*/disk.config" % B),
    ("domain-host", r"28 \| nova-compute -> libvirt: define and start", "host", "ls /etc/libvirt/qemu/bootflow-*.xml"),
    ("domain-end", r"28 \| nova-compute -> libvirt: define and start", "end", None),
]
NO_WAIT = ("-e", "bootflow_wait_for_lease=false")
HOLD_SECONDS = 300

# The test host's interpreter for modules (runs in the host's namespaces; the hold dir is on the
# machine's shared /tmp). Not armed: /usr/bin/python3, nothing else.
HOLD_PYTHON = r"""#!/bin/sh
# test_crash.py: /usr/bin/python3, and the kill point's hold (see the module's docstring). Armed by the
# file $d/armed: line 1 the module's name, line 2 the condition (sh) that its work is on the host.
d=%(dir)s
if [ ! -f "$d/armed" ]; then exec /usr/bin/python3 "$@"; fi
tmp=$(mktemp -d /tmp/bootflow-crash-hold.XXXXXX)
if [ $# -gt 0 ]; then
  /usr/bin/python3 "$@" >"$tmp/out"; rc=$?; src=$1
else   # pipelining: the AnsiballZ payload comes on stdin
  tee "$tmp/in" | /usr/bin/python3 >"$tmp/out"; rc=$?; src=$tmp/in
fi
module=$(sed -n 1p "$d/armed" 2>/dev/null); condition=$(sed -n 2p "$d/armed" 2>/dev/null)
if [ -n "$module" ] && grep -q "module_fqn='ansible_collections\.bootflow\.cloud\.plugins\.modules\.$module'" "$src" \
   && sh -c "$condition" >/dev/null 2>&1 && mv "$d/armed" "$d/held" 2>/dev/null; then
  i=0
  while [ -e "$d/held" ] && [ $i -lt %(ticks)d ]; do sleep 0.1; i=$((i + 1)); done
fi
cat "$tmp/out"
rm -rf "$tmp"
exit $rc
"""


def hold_inventory(text, base):
    """The test host's modules run with HOLD_PYTHON (written into ``base``/hold)."""
    hold = os.path.join(str(base), "hold")
    os.makedirs(hold)
    wrapper = os.path.join(hold, "python3")
    with open(wrapper, "w") as f:
        f.write(HOLD_PYTHON % {"dir": hold, "ticks": HOLD_SECONDS * 10})
    os.chmod(wrapper, 0o755)
    assert "ansible_python_interpreter=/usr/bin/python3 " in text, text
    return text.replace("ansible_python_interpreter=/usr/bin/python3 ", "ansible_python_interpreter=%s " % wrapper, 1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crash_env(request, tmp_path_factory):
    db_url = fresh_pg_url(request.getfixturevalue("pg_server"), "crash") if request.param == "postgresql" else None
    with host_session(tmp_path_factory, HOST_N, "bootflow-crash-" + request.param, db_url=db_url,
                      inventory_text=hold_inventory) as env:
        env.hold = os.path.join(str(env.base), "hold")
        # the first boot caches the image, starts the network's dnsmasq and defines the pool: boot and
        # delete once, so every kill point starts from the same host
        env.play("boot.yml", "-e", "bootflow_instance_name=crash-warmup", *NO_WAIT)
        env.play("delete.yml", "-e", "bootflow_instance_name=crash-warmup")
        env.clean = host_view(env)
        yield env


def host_view(env):
    """What one instance puts on the host: domains, pool volumes, instance dirs, DHCP host/ports/leases lines."""
    out = env.ssh(
        "virsh -c qemu:///system list --all --name | sed '/^$/d' | sed 's/^/domain /';"
        "ls -1 %(b)s/volumes | sed 's/^/volume /';"
        "ls -1 %(b)s/instances | grep -v -x -e _base -e locks | sed 's/^/instance-dir /';"
        "for f in %(b)s/dhcp/*/host %(b)s/dhcp/*/ports %(b)s/dhcp/*/leases; do [ -f $f ] && sed \"s|^|$(basename $f) |\" $f; done;"
        "true" % {"b": B})
    return sorted(line for line in out.splitlines() if line.strip())


def killed_run(env, name, task_re, when, condition, module=None, timeout=300):
    """boot.yml for ``name``, SIGKILLed (whole process group) at the kill point. Returns how it was killed."""
    cmd = ["ansible-playbook", "-i", str(env.inventory), os.path.join(REPO, "playbooks", "boot.yml"),
           "-e", "bootflow_instance_name=%s" % name, *NO_WAIT]
    armed, held = os.path.join(env.hold, "armed"), os.path.join(env.hold, "held")
    for path in (armed, held):
        if os.path.exists(path):
            os.unlink(path)
    if when == "host":   # the kill point's module waits there once the condition holds (HOLD_PYTHON)
        with open(armed, "w") as f:
            f.write("%s\n%s\n" % (module, condition))
    # unbuffered: each banner reaches us when the task starts, not when a block of output is full
    proc = subprocess.Popen(cmd, cwd=REPO, env=dict(env.env, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout] + [lines.put(None)], daemon=True).start()
    out, in_task, how, missed = [], False, None, None
    deadline = time.monotonic() + timeout
    try:
        while how is None and missed is None and time.monotonic() < deadline:
            if when == "host" and os.path.exists(held):
                how = "%s's work done on the host, its result held back: step not recorded" % module
                break
            try:
                line = lines.get(timeout=0.02)
            except queue.Empty:
                continue
            if line is None:
                break
            out.append(line)
            banner = BANNER_RE.match(line.strip())
            if banner:
                in_task = bool(re.search(task_re, banner.group("name")))
                if in_task and when == "start":
                    how = "at the task's banner"
            elif in_task and RESULT_RE.match(line):
                if when == "end":
                    how = "at the task's first result"
                elif when == "host":
                    missed = "the step returned before its work showed on the host (%s)" % condition
        if how is not None:
            os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None and how is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        for path in (armed, held):   # disarm; a held module goes on and answers nobody
            if os.path.exists(path):
                os.unlink(path)
    assert missed is None, "kill point %r / %s MISSED: %s:\n%s" % (task_re, when, missed, "".join(out)[-4000:])
    assert how is not None, "the kill point %r / %s was never reached:\n%s" % (task_re, when, "".join(out)[-4000:])
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, "".join(out)[-3000:])
    return how


@pytest.mark.parametrize("point,task_re,when,condition", KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_sigkill_then_rerun_converges_and_delete_cleans(crash_env, point, task_re, when, condition):
    env = crash_env
    name = "crash-%s" % point.replace("_", "-")
    how = killed_run(env, name, task_re, when, condition, module=point.rsplit("-", 1)[0])
    left = env.query("SELECT uuid, vm_state, task_state, host FROM instances WHERE name=? AND deleted=0", name)
    on_host = [x for x in host_view(env) if x not in env.clean]
    print("\nKILLED %s (%s) %s; left: %s; host: %s" % (point, env.backend, how, left, on_host))
    if when == "host":   # the window: the work is on the host (the condition held when the module returned)
        assert env.ssh("%s >/dev/null 2>&1 && echo yes || echo no" % condition).strip() == "yes", (point, on_host)

    res = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % name, *NO_WAIT, check=False)
    assert res.rc == 0, "%s: the re-run did not converge:\n%s" % (point, res.out[-5000:])
    rows = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)
    assert len(rows) == 1, rows
    inst = rows[0]
    assert (inst["vm_state"], inst["task_state"], inst["host"]) == ("active", None, HOST), inst
    uuid = inst["uuid"]
    ports = env.query("SELECT id, ip, mac FROM ports")
    assert len(ports) == 1 and env.query("SELECT instance_uuid FROM ports")[0]["instance_uuid"] == uuid, ports
    assert [a["consumer_id"] for a in env.query("SELECT consumer_id FROM allocations")] == [uuid]
    vols = env.query("SELECT name, status, instance_uuid, device FROM volumes WHERE status != 'deleted'")
    assert [(v["status"], v["instance_uuid"], v["device"]) for v in vols] == [("in-use", uuid, "vdb")], vols
    view = host_view(env)
    assert [x for x in view if x.startswith("domain ")] == ["domain bootflow-%s" % uuid], view
    assert env.ssh("virsh -c qemu:///system domstate bootflow-%s" % uuid).strip() == "running"
    assert [x for x in view if x.startswith("volume ")] == ["volume %s" % vols[0]["name"]], view
    assert [x for x in view if x.startswith("instance-dir ")] == ["instance-dir %s" % uuid], view
    port = ports[0]
    assert [x for x in view if x.startswith("host ")] == ["host %s,host-%s,%s" % (port["mac"], port["ip"].replace(".", "-"), port["ip"])], view
    print("RERUN %s: ACTIVE, 1 domain, 1 port %s, 1 claim, 1 volume" % (point, ports[0]["ip"]))

    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % name)
    assert host_view(env) == env.clean, point
    assert env.query("SELECT name FROM instances WHERE deleted=0") == []
    assert env.query("SELECT id FROM ports") == [] and env.query("SELECT id FROM allocations") == []
    assert env.query("SELECT name FROM volumes WHERE status != 'deleted'") == []
