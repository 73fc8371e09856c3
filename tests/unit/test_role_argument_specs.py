# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each role's meta/argument_specs.yml covers every variable a user may give the role, and nothing else.

A user's variable is one the role has a default for, or one it reads optionally (``| default(...)``,
``is defined``) that no task of the collection sets. A variable that one tasks file reads with
``is not defined`` and only then sets, and no other file sets (a token the run may already have), is
the user's too; one that another file also sets is a hand-over between the collection's own tasks.
"""

from __future__ import annotations

import glob
import os
import re

import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROLES = sorted(d for d in os.listdir(os.path.join(REPO, "roles")) if os.path.isdir(os.path.join(REPO, "roles", d)))
VAR = r"bootflow_\w+"


def _read(paths):
    out = []
    for path in paths:
        if os.path.isfile(path) and not path.endswith("argument_specs.yml"):
            with open(path, encoding="utf-8") as f:
                out.append(f.read())
    return "\n".join(out)


def set_by_tasks(text):
    """Variables a task sets: registered results, loop variables, set_fact keys (and vars: keys)."""
    names = set(re.findall(r"\b(?:register|loop_var):\s*(%s)" % VAR, text))
    names |= set(re.findall(r"^\s+(%s):" % VAR, text, re.M))
    return names


def optional_reads(text):
    return set(re.findall(r"(%s)\s*\|\s*default\(" % VAR, text)) | set(
        re.findall(r"(%s)\s+is\s+(?:not\s+)?defined" % VAR, text))


def spec_options(role):
    with open(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"), encoding="utf-8") as f:
        specs = yaml.safe_load(f)["argument_specs"]
    return {name for entry in specs.values() for name in (entry.get("options") or {})}


TASK_FILES = sorted(glob.glob(os.path.join(REPO, "roles", "*", "tasks", "*.yml"))
                    + glob.glob(os.path.join(REPO, "playbooks", "*.yml")))
COLLECTION_TASKS = _read(TASK_FILES)


def guarded_inputs(role):
    """Variables a tasks file of ``role`` sets only when they are not defined, and no other file sets."""
    out = set()
    for path in glob.glob(os.path.join(REPO, "roles", role, "tasks", "*.yml")):
        text = _read([path])
        others = set_by_tasks(_read([p for p in TASK_FILES if p != path]))
        out |= (set(re.findall(r"(%s)\s+is\s+not\s+defined" % VAR, text)) & set_by_tasks(text)) - others
    return out


@pytest.mark.parametrize("role", ROLES)
def test_argument_spec_covers_every_user_variable(role):
    base = os.path.join(REPO, "roles", role)
    defaults_path = os.path.join(base, "defaults", "main.yml")
    defaults = {}
    if os.path.isfile(defaults_path):
        with open(defaults_path, encoding="utf-8") as f:
            defaults = yaml.safe_load(f) or {}
    own = _read(glob.glob(os.path.join(base, "**", "*"), recursive=True))
    options = spec_options(role)
    reads = optional_reads(own)
    user = set(defaults) | (reads - set_by_tasks(COLLECTION_TASKS)) | guarded_inputs(role)
    missing = sorted(user - options)
    assert not missing, "roles/%s/meta/argument_specs.yml lacks %s" % (role, missing)
    stale = sorted(o for o in options if not re.search(r"\b%s\b" % o, own))
    assert not stale, "roles/%s/meta/argument_specs.yml documents variables the role never reads: %s" % (role, stale)


def test_the_scan_finds_a_user_variable():
    text = "- ansible.builtin.debug:\n    msg: \"{{ bootflow_x | default(1) }}\"\n  when: bootflow_y is defined\n" \
           "- register: bootflow_z\n  ansible.builtin.set_fact:\n    bootflow_w: 1\n"
    assert optional_reads(text) == {"bootflow_x", "bootflow_y"}
    assert set_by_tasks(text) == {"bootflow_z", "bootflow_w"}
