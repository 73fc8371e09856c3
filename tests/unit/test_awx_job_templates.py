# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The example AWX job templates (extensions/awx/job_templates.yml) against the playbooks they run.

The variables a playbook reads are the options of the role entry points it runs (meta/argument_specs.yml of
each role, followed through import_playbook, roles:, import_role and include_role). A survey question of a
variable no entry point reads, a required variable the playbook does not set itself and no question asks,
a type that does not fit the option's, or a choice the option does not allow fails the test.
"""

from __future__ import annotations

import os

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(REPO, "extensions", "awx")
# AWX survey types -> the argument_specs types they can fill
SURVEY_TYPES = {"text": {"str", "list", "path", "raw"}, "textarea": {"str", "raw"}, "password": {"str", "raw"},
                "integer": {"int"}, "float": {"float"}, "multiplechoice": {"str"}, "multiselect": {"list"}}
# the playbooks' own rule (filter request_list): one instance name, or a list; a survey asks for the name
NAME_RULE = {"bootflow_instance_name"}


def _load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def _role_specs(role):
    return _load(os.path.join(REPO, "roles", role, "meta", "argument_specs.yml"))["argument_specs"]


def _role_name(ref):
    return ref.split(".")[-1]


def _walk_tasks(tasks, entry_points, set_here):
    for task in tasks or []:
        for key in ("block", "rescue", "always"):
            _walk_tasks(task.get(key), entry_points, set_here)
        for key in ("ansible.builtin.import_role", "ansible.builtin.include_role", "import_role", "include_role"):
            if key in task:
                entry_points.add((_role_name(task[key]["name"]), task[key].get("tasks_from", "main")))
        for key in ("ansible.builtin.set_fact", "set_fact"):
            if isinstance(task.get(key), dict):
                set_here.update(task[key])
        set_here.update(task.get("vars") or {})
        if task.get("loop_control", {}).get("loop_var"):
            set_here.add(task["loop_control"]["loop_var"])


def _role_tasks(role, entry, entry_points, set_here, seen):
    """A role's task files may import its other task files or other roles: follow them."""
    if (role, entry) in seen:
        return
    seen.add((role, entry))
    path = os.path.join(REPO, "roles", role, "tasks", entry + ".yml")
    tasks = _load(path) or []
    found = set()
    _walk_tasks(tasks, found, set_here)
    for task in _flatten(tasks):
        for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            if key in task and "{{" not in str(task[key]):
                _role_tasks(role, os.path.splitext(task[key])[0], entry_points, set_here, seen)
    for ep in found:
        entry_points.add(ep)
        _role_tasks(ep[0], ep[1], entry_points, set_here, seen)


def _flatten(tasks):
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from _flatten(task.get(key))


def playbook_reads(playbook):
    """(options: {name: spec} of every entry point the playbook runs, required: the required options the
    playbook does not set itself)."""
    entry_points, set_here = set(), set()

    def walk(path):
        for play in _load(path):
            if "ansible.builtin.import_playbook" in play or "import_playbook" in play:
                set_here.update(play.get("vars") or {})
                walk(os.path.join(os.path.dirname(path), play.get("ansible.builtin.import_playbook")
                                  or play["import_playbook"]))
                continue
            set_here.update(play.get("vars") or {})
            for role in play.get("roles") or []:
                entry_points.add((_role_name(role["role"] if isinstance(role, dict) else role), "main"))
            for key in ("pre_tasks", "tasks", "post_tasks"):
                _walk_tasks(play.get(key), entry_points, set_here)

    walk(os.path.join(REPO, playbook))
    seen = set()
    for role, entry in sorted(entry_points):
        _role_tasks(role, entry, entry_points, set_here, seen)
    options = {}
    for role, entry in sorted(entry_points):
        spec = _role_specs(role).get(entry)
        assert spec is not None, "%s runs %s:%s, which has no argument spec" % (playbook, role, entry)
        for name, opt in (spec.get("options") or {}).items():
            options.setdefault(name, opt)
    required = {n for n, o in options.items() if o.get("required") and n not in set_here} | NAME_RULE
    return options, required


TEMPLATES = _load(os.path.join(AWX, "job_templates.yml"))


@pytest.mark.parametrize("template", TEMPLATES["bootflow_awx_job_templates"], ids=lambda t: t["name"])
def test_each_survey_question_is_a_variable_the_playbook_reads(template):
    options, required = playbook_reads(template["playbook"])
    questions = {q["variable"]: q for q in template["survey"]["spec"]}
    assert len(questions) == len(template["survey"]["spec"]), "a variable is asked twice"
    unread = sorted(set(questions) - set(options))
    assert not unread, "%s asks for %s, which %s does not read" % (template["name"], unread, template["playbook"])
    unasked = sorted(v for v in required if v not in questions or not questions[v].get("required"))
    assert not unasked, "%s does not ask for %s, which %s requires" % (template["name"], unasked, template["playbook"])
    for var, q in questions.items():
        opt = options[var]
        assert opt.get("type", "str") in SURVEY_TYPES[q["type"]], (var, q["type"], opt.get("type"))
        if "choices" in opt:
            assert q["type"] in ("multiplechoice", "multiselect") and set(q["choices"]) <= set(opt["choices"]), var
        if q["type"] in ("multiplechoice", "multiselect"):
            assert q["choices"] and (q.get("default") in q["choices"] or not q.get("default")), var
        if q["type"] == "integer":
            assert q["min"] <= q.get("default", q["min"]) <= q["max"], var
        assert q["question_name"] and "question_description" in q, var


def test_the_boot_survey_asks_for_flavor_image_network_count_key_and_name():
    (boot,) = [t for t in TEMPLATES["bootflow_awx_job_templates"] if t["playbook"] == "playbooks/boot.yml"]
    assert {q["variable"] for q in boot["survey"]["spec"]} >= {
        "bootflow_instance_name", "bootflow_count", "bootflow_flavor", "bootflow_image", "bootflow_networks",
        "bootflow_key_name"}
    assert any(t["playbook"] == "playbooks/delete.yml" for t in TEMPLATES["bootflow_awx_job_templates"])
    # the flavors offered are those bootstrap.yml creates by default
    flavors = {f["name"] for f in _load(os.path.join(REPO, "roles", "bootstrap", "defaults", "main.yml"))
               ["bootflow_bootstrap_flavors"]}
    (flavor,) = [q for q in boot["survey"]["spec"] if q["variable"] == "bootflow_flavor"]
    assert set(flavor["choices"]) <= flavors


def test_the_checker_catches_an_unread_and_an_unasked_variable():
    """The check itself can fail: a survey of a variable boot.yml never reads, and one without the name."""
    options, required = playbook_reads("playbooks/boot.yml")
    assert "bootflow_flavour" not in options and "bootflow_flavor" in options
    assert "bootflow_instance_name" in required
    # the roles' flow facts that the playbooks set themselves are not asked of anyone
    assert "bootflow_build_pass" in options and "bootflow_build_pass" not in required
    assert "bootflow_delete_instance" in playbook_reads("playbooks/delete.yml")[0]
    assert "bootflow_delete_instance" not in playbook_reads("playbooks/delete.yml")[1]


def test_the_inventory_source_and_the_credential_type_are_the_collections():
    assert TEMPLATES["bootflow_awx_credential_type"] == "bootflow.cloud"
    source = _load(os.path.join(REPO, TEMPLATES["bootflow_awx_inventory"]["source"]["source_path"]))
    assert source["plugin"] == "bootflow.cloud.instances"
    doc = _load(os.path.join(AWX, "create_job_templates.yml"))
    tasks = {next(k for k in t if k.startswith("awx.awx.")): t for t in doc[0]["tasks"] if any(k.startswith("awx.awx.") for k in t)}
    assert set(tasks) == {"awx.awx.credential_type", "awx.awx.credential", "awx.awx.project", "awx.awx.inventory",
                          "awx.awx.inventory_source", "awx.awx.job_template"}
    jt = tasks["awx.awx.job_template"]["awx.awx.job_template"]
    assert jt["survey_enabled"] is True and "item.survey" in jt["survey_spec"]
    assert jt["credentials"] == ["{{ bootflow_awx_credential }}"]
