# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Molecule scenarios of extensions/molecule/ in one ``molecule test --all``, one after the other:
``default`` (bfhv31: one instance), ``multihost`` (bfhv32-34: the weighers and an anti-affinity group) and
``failure`` (bfhv35-36: a build refused on one host, rescheduled onto the other). Each one creates its test
hosts, prepares, converges (boot.yml), verifies, re-runs for idempotence, deletes and checks that nothing
is left, and destroys. After the session the residue check (conftest molecule_residue) looks for what the
destroy steps must have removed: the scenarios' test hosts, their controller state dirs and Molecule's state."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time

from conftest import MOLECULE_RAN, REPO, molecule_scenarios

SCENARIOS = ["default", "failure", "multihost"]
SEQUENCE = ["destroy", "create", "prepare", "converge", "verify", "idempotence", "side_effect", "destroy"]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "INFO     [multihost > converge] Executed: Successful"
EXECUTED = re.compile(r"^\w+\s+\[(?P<scenario>[\w/-]+) > (?P<step>\w+)\] Executed: (?P<result>.*)$", re.M)
WARNING = re.compile(r"^WARNING\s.*$", re.M)
# the one warning that says nothing about the scenarios: Molecule's record of an earlier run (molecule list,
# converge) was made with another molecule.yml; the run itself starts by destroying whatever that run left
STALE_STATE = "has been modified since the scenario was created"


def step_output(out, scenario, step):
    """The output of a scenario's step (its last run), for a readable failure."""
    start = out.rfind("[%s > %s] Executing" % (scenario, step))
    end = out.find("[%s > %s] Executed" % (scenario, step), start)
    return out[start:end if end != -1 else None][-6000:]


def run_molecule(args, timeout):
    """-> (rc, output without colours, {scenario: seconds from its first step's start to its last step's end})."""
    env = dict(os.environ, PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
               ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PY_COLORS="0", NO_COLOR="1")
    env.pop("ANSIBLE_CONFIG", None)  # Molecule writes its own ansible.cfg (extensions/molecule/config.yml)
    proc = subprocess.Popen(["molecule", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    lines, span = [], {}
    try:
        for line in proc.stdout:
            line = ANSI.sub("", line)
            lines.append(line)
            m = re.match(r"^\w+\s+\[([\w/-]+) > \w+\] Execut", line)
            if m:
                span.setdefault(m.group(1), [time.monotonic()]).append(time.monotonic())
        rc = proc.wait()
    finally:
        killer.cancel()
    return rc, "".join(lines), {s: round(t[-1] - t[0]) for s, t in span.items()}


def test_molecule_all_scenarios():
    assert sorted(molecule_scenarios()) == SCENARIOS
    MOLECULE_RAN.append(True)   # the residue check then looks for what the scenarios left (conftest molecule_residue)
    rc, out, seconds = run_molecule(["test", "--all"], timeout=2400)
    print("molecule test --all, seconds per scenario: %s" % seconds)
    executed = [(m["scenario"], m["step"], m["result"].strip()) for m in EXECUTED.finditer(out)]
    failed = [(scenario, step, result) for scenario, step, result in executed if result != "Successful"]
    assert rc == 0 and not failed, "molecule test --all: rc %d, failed %s (seconds: %s)\n%s\n...\n%s" % (
        rc, failed, seconds, "\n".join(step_output(out, s, st) for s, st, _r in failed[:1]), out[-3000:])
    # every scenario ran its whole sequence (the idempotence step fails a scenario when a re-run changes anything)
    ran = {}
    for scenario, step, _result in executed:
        ran.setdefault(scenario, []).append(step)
    assert ran == {scenario: SEQUENCE for scenario in SCENARIOS}, ran
    # the current layout (extensions/molecule, ansible-native config): no "should migrate", no other warning
    warnings = [w for w in WARNING.findall(out) if STALE_STATE not in w]
    assert warnings == [], warnings
    assert "Molecule executed 3 scenarios (3 successful)" in out, out[-3000:]
