# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The execution environment holds exactly what the controller-side code imports.

The controller-side files (docs/design.md, "Where code runs") are parsed (AST); every third-party
top-level import is mapped to its distribution through the installed metadata of this venv, which
has them all. The result is compared both ways with meta/ee-requirements.txt. What the EE's
ansible-core already brings is left out by ansible-builder's own exclusion list. Host-side imports
are checked against docs/execution-environment.md instead: they belong to the hosts, not the EE.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import sys

import pytest
import yaml
from ansible_builder._target_scripts.introspect import EXCLUDE_REQUIREMENTS
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CONTROLLER = ("plugins/action", "plugins/callback", "plugins/filter", "plugins/inventory", "plugins/lookup",
              "plugins/plugin_utils", "plugins/module_utils/common", "plugins/module_utils/argspec.py")
HOST = ("plugins/modules", "plugins/module_utils/host")
EE_REQUIREMENTS = "meta/ee-requirements.txt"
# Imports the AST cannot see: name -> the controller file that loads it by name.
DYNAMIC = {"psycopg2": "plugins/plugin_utils/db.py"}   # _pg_driver: SQLAlchemy's driver for postgresql://
# Host-side third-party imports -> the Debian package that provides them on a hypervisor host.
HOST_PACKAGES = {"libvirt": "python3-libvirt"}
OWN = "ansible_collections.bootflow.cloud"


def python_files(paths):
    for rel in paths:
        path = os.path.join(REPO, rel)
        if path.endswith(".py"):
            yield path
            continue
        for root, _dirs, files in os.walk(path):
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))


def imported_names(source, filename="<src>"):
    """Top-level names of the absolute imports in ``source``, LazyModule("name") included (-> {name: set of 'file:line'})."""
    out = {}
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "LazyModule"
              and node.args and isinstance(node.args[0], ast.Constant)):
            names = [node.args[0].value]   # plugin_utils/lazy_import.py: imported when first used
        else:
            continue
        for name in names:
            if name.startswith("ansible_collections.") and not name.startswith(OWN):
                out.setdefault(name, set()).add("%s:%d" % (filename, node.lineno))   # another collection
            elif not name.startswith("ansible_collections"):
                out.setdefault(name.split(".")[0], set()).add("%s:%d" % (filename, node.lineno))
    return out


def third_party(names):
    """The names of ``names`` that are neither stdlib nor __future__."""
    return {n: w for n, w in names.items() if n != "__future__" and n not in sys.stdlib_module_names}


def scan(paths):
    found = {}
    for path in python_files(paths):
        with open(path, encoding="utf-8") as f:
            for name, where in imported_names(f.read(), os.path.relpath(path, REPO)).items():
                found.setdefault(name, set()).update(where)
    return third_party(found)


def distributions(names):
    """{canonical distribution name: import names}; a name no installed distribution provides fails."""
    index = importlib.metadata.packages_distributions()
    out, unknown = {}, []
    for name in sorted(names):
        dists = index.get(name)
        if not dists:
            unknown.append("%s (%s)" % (name, ", ".join(sorted(names[name]))))
            continue
        for dist in dists:
            out.setdefault(canonicalize_name(dist), set()).add(name)
    assert not unknown, "imports no installed distribution provides: %s" % unknown
    return out


def ee_expected():
    names = scan(CONTROLLER)
    for name, rel in DYNAMIC.items():
        with open(os.path.join(REPO, rel), encoding="utf-8") as f:
            assert '"%s"' % name in f.read(), "%s no longer loads %s: update DYNAMIC" % (rel, name)
        names.setdefault(name, set()).add(rel + " (by name)")
    excluded = {canonicalize_name(n) for n in EXCLUDE_REQUIREMENTS}   # what the EE's ansible-core brings
    return {d: n for d, n in distributions(names).items() if d not in excluded}


def ee_listed(path=EE_REQUIREMENTS):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        lines = [ln.split("#", 1)[0].strip() for ln in f]
    return {canonicalize_name(Requirement(ln).name) for ln in lines if ln}


def test_ee_requirements_are_exactly_the_controller_imports():
    expected, listed = ee_expected(), ee_listed()
    missing = {d: sorted(n) for d, n in expected.items() if d not in listed}
    extra = sorted(listed - set(expected))
    assert not missing, "controller code imports these, %s lacks them: %s" % (EE_REQUIREMENTS, missing)
    assert not extra, "%s lists these, no controller code imports them: %s" % (EE_REQUIREMENTS, extra)


def test_scan_sees_what_a_controller_file_would_import():
    """The scanner itself: a host-only import in controller code would make the EE miss it."""
    src = "from __future__ import annotations\nimport os, json\nimport libvirt\nfrom sqlalchemy.orm import Session\n" \
          "from ansible.module_utils.basic import AnsibleModule\nfrom ansible_collections.bootflow.cloud.x import y\n" \
          "def f():\n    import openstack.connection\n"
    names = third_party(imported_names(src))
    assert set(names) == {"libvirt", "sqlalchemy", "ansible", "openstack"}
    assert set(distributions(names)) == {"libvirt-python", "sqlalchemy", "ansible-core", "openstacksdk"}
    assert set(third_party(imported_names("from ansible_collections.community.general.plugins import x\n"))) \
        == {"ansible_collections.community.general.plugins"}
    assert set(third_party(imported_names('ks = LazyModule("keystoneauth1.session")\n'))) == {"keystoneauth1"}


def test_controller_code_imports_no_other_collection():
    others = [n for n in scan(CONTROLLER) if n.startswith("ansible_collections.")]
    assert not others, "galaxy.yml declares no dependencies, yet the controller imports %s" % others


@pytest.mark.parametrize("definition", ["meta/execution-environment.yml", "execution-environment.yml"])
def test_ee_definitions_use_the_one_requirements_file(definition):
    """Both definitions name meta/ee-requirements.txt and meta/ee-bindep.txt, relative to the collection's
    root: ansible-builder's introspect reads meta/execution-environment.yml from there, and
    execution-environment.yml lives there."""
    with open(os.path.join(REPO, definition), encoding="utf-8") as f:
        deps = yaml.safe_load(f)["dependencies"]
    assert deps["python"] == EE_REQUIREMENTS and deps["system"] == "meta/ee-bindep.txt"
    assert all(os.path.isfile(os.path.join(REPO, deps[k])) for k in ("python", "system"))


def test_host_imports_are_documented_as_host_packages():
    names = scan(HOST)
    names.pop("ansible", None)   # the module's own runtime (AnsiballZ), not a host package
    unmapped = sorted(set(names) - set(HOST_PACKAGES))
    assert not unmapped, "host-side code imports %s: add its Debian package to HOST_PACKAGES and the docs" % unmapped
    with open(os.path.join(REPO, "docs", "execution-environment.md"), encoding="utf-8") as f:
        doc = f.read()
    undocumented = [HOST_PACKAGES[n] for n in names if HOST_PACKAGES[n] not in doc]
    assert not undocumented, "docs/execution-environment.md does not name %s" % undocumented
    assert not set(names) & set(scan(CONTROLLER)), "a host-only import is in controller code"


def _fragment_requirements(variant):
    from ansible_collections.bootflow.cloud.plugins.doc_fragments.attributes import ModuleDocFragment
    return yaml.safe_load(getattr(ModuleDocFragment, variant))["requirements"]


@pytest.mark.parametrize("variant", ["CONTROLLER", "HOST"])
def test_module_docs_name_every_ee_requirement(variant):
    """Every module's requirements (doc fragment attributes.CONTROLLER or .HOST) name each distribution of
    meta/ee-requirements.txt (psycopg2-binary as its import name); a host step also names the host's."""
    text = " ".join(_fragment_requirements(variant)).lower()
    unnamed = [d for d in ee_listed() if d.lower() not in text and d.replace("-binary", "") not in text]
    assert not unnamed, "attributes.%s requirements do not name %s" % (variant, unnamed)
    assert ("python3-libvirt" in text) == (variant == "HOST")
    assert _fragment_requirements(variant)[0] == _fragment_requirements("CONTROLLER")[0], \
        "attributes.HOST repeats CONTROLLER's controller requirement word for word"


def test_every_module_extends_the_fragment_of_where_it_runs():
    """A host module (an AnsibleModule that runs on the hypervisor host) extends attributes.HOST, a
    controller step (documentation only, its action plugin does the work) attributes.CONTROLLER."""
    wrong = []
    modules = os.path.join(REPO, "plugins", "modules")
    for name in sorted(os.listdir(modules)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(modules, name), encoding="utf-8") as f:
            src = f.read()
        doc = yaml.safe_load(ast.literal_eval(next(
            n.value for n in ast.parse(src).body if isinstance(n, ast.Assign)
            and any(getattr(t, "id", None) == "DOCUMENTATION" for t in n.targets))))
        want = "bootflow.cloud.attributes.%s" % ("HOST" if "AnsibleModule(" in src else "CONTROLLER")
        if want not in doc.get("extends_documentation_fragment", []):
            wrong.append("%s: %s" % (name, want))
    assert not wrong, "modules missing the fragment of where they run: %s" % wrong
