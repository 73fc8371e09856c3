# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection as a user gets it: the built tarball, installed into an empty collections path.

- The tarball holds what a user needs and none of the development files.
- `ansible-builder create` works from the checkout, from the installed collection, and for a
  definition that pulls the tarball in through its galaxy requirements. No container engine runs
  here, so the image build's Python side is replayed: ansible-builder's own introspect script
  (from the generated context) collects the requirements of the installed collection, they go into
  a clean venv with the ansible-core of the context, and every controller plugin is imported there.
- The FQCN playbooks run from another directory with only that collections path and no
  ansible.cfg, against a real test host: the guest boots to ACTIVE and is deleted.
The tests share one tarball and one installed copy and run in file order.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tarfile

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import INVENTORY_SH, RECAP_RE, REPO, TESTHOST, Env, wait_console

HOST_N = 221
NAME = "rel-vm"
BUILDER = os.path.join(REPO, ".venv", "bin", "ansible-builder")
GALAXY = os.path.join(REPO, ".venv", "bin", "ansible-galaxy")
PLAYBOOK = os.path.join(REPO, ".venv", "bin", "ansible-playbook")
# top-level entries of the checkout a user of the collection needs, and those that must stay out
KEEP = ("plugins", "roles", "playbooks", "docs", "meta", "changelogs", "README.md", "LICENSE", "CHANGELOG.md",
        "execution-environment.yml", "extensions/awx")
DEV = ("tests", "bench", "scripts", "molecule", "extensions/molecule", ".hypothesis", "build", ".ci", "Makefile",
       "ansible.cfg", "requirements-dev.txt", ".ansible-lint", ".gitignore", ".venv", ".pytest_cache")


def _unit_scan():
    """tests/unit/test_ee_requirements.py, for its import scan and requirements parser."""
    spec = importlib.util.spec_from_file_location(
        "ee_requirements_scan", os.path.join(REPO, "tests", "unit", "test_ee_requirements.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def user_env(colls, **extra):
    """A user's environment: this venv's tools, only ``colls`` as collections path, no ansible.cfg."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "BOOTFLOW_"))}
    env.update(PATH=os.path.join(REPO, ".venv", "bin") + os.pathsep + os.environ["PATH"],
               ANSIBLE_COLLECTIONS_PATH=str(colls), ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               HOME=os.environ.get("HOME", "/root"), **extra)
    return env


def run(cmd, cwd, env=None, timeout=600, stderr=subprocess.STDOUT):
    """stdout (and stderr, unless ``stderr`` says otherwise) of a command that must succeed."""
    proc = subprocess.run([str(c) for c in cmd], cwd=str(cwd), env=env, stdout=subprocess.PIPE,
                          stderr=stderr, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, "%s failed (rc=%d):\n%s%s" % (
        " ".join(map(str, cmd)), proc.returncode, proc.stdout[-6000:], proc.stderr or "")
    return proc.stdout


def requirement_names(path):
    with open(path, encoding="utf-8") as f:
        lines = [ln.split("#", 1)[0].strip() for ln in f]
    return {canonicalize_name(Requirement(ln).name) for ln in lines if ln}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """The tarball built from the checkout and installed into an empty collections path, from an empty
    directory (the checkout's ansible.cfg would add its own collections path)."""
    base = tmp_path_factory.mktemp("release")
    out, colls, cwd = base / "dist", base / "collections", base / "user"
    cwd.mkdir()
    run([GALAXY, "collection", "build", "--output-path", out, REPO], cwd, user_env(colls))
    tarballs = list(out.glob("bootflow-cloud-*.tar.gz"))
    assert len(tarballs) == 1, tarballs
    run([GALAXY, "collection", "install", "-p", colls, tarballs[0]], cwd, user_env(colls))
    listed = json.loads(run([GALAXY, "collection", "list", "--format", "json"], cwd, user_env(colls),
                            stderr=subprocess.PIPE))
    assert {p: list(c) for p, c in listed.items() if c} == {
        str(colls / "ansible_collections"): ["bootflow.cloud"]}, listed
    return {"base": base, "tarball": tarballs[0], "colls": colls, "cwd": cwd,
            "root": colls / "ansible_collections" / "bootflow" / "cloud"}


def test_tarball_holds_what_a_user_needs_and_no_dev_files(release):
    with tarfile.open(release["tarball"]) as tar:
        names = set(tar.getnames())
    dev = sorted(n for n in names if any(n == d or n.startswith(d + "/") for d in DEV)
                 or "__pycache__" in n or n.endswith(".pyc"))
    assert not dev, "development files in the tarball: %s" % dev[:20]
    tracked = subprocess.run(["git", "ls-files", *[k for k in KEEP if os.path.exists(os.path.join(REPO, k))]],
                             cwd=REPO, stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    assert tracked and "LICENSE" in tracked and "changelogs/changelog.yaml" in tracked
    missing = sorted(set(tracked) - names)
    assert not missing, "files a user needs are not in the tarball: %s" % missing
    assert {"MANIFEST.json", "FILES.json"} <= names


def _builder_create(cwd, context, definition=None):
    cmd = [BUILDER, "create", "--context", context] + (["-f", definition] if definition else [])
    out = run(cmd, cwd, user_env(cwd))
    assert "Complete!" in out, out
    return context


def test_builder_create_from_the_checkout_and_from_the_installed_collection(release):
    listed = requirement_names(os.path.join(REPO, "meta", "ee-requirements.txt"))
    for label, root in (("checkout", REPO), ("installed", release["root"])):
        ctx = _builder_create(root, release["base"] / ("ctx-" + label))
        assert requirement_names(ctx / "_build" / "requirements.txt") == listed, label
        with open(ctx / "_build" / "bindep.txt", encoding="utf-8") as f, \
                open(os.path.join(REPO, "meta", "ee-bindep.txt"), encoding="utf-8") as g:
            assert f.read() == g.read(), label
        assert "introspect.py introspect" in (ctx / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def galaxy_context(release):
    """`ansible-builder create` of a user's definition (in its own directory) whose galaxy requirements
    are the built tarball, then what the image build's builder stage does with that context: install
    the galaxy requirements into an empty collections path, and run the context's introspect script
    over it (the Dockerfile's `introspect --write-pip`)."""
    work = release["base"] / "user-ee"
    work.mkdir()
    definition = {
        "version": 3,
        "images": {"base_image": {"name": "quay.io/fedora/fedora:40"}},
        "dependencies": {
            "python_interpreter": {"package_system": "python3", "python_path": "/usr/bin/python3"},
            "ansible_core": {"package_pip": "ansible-core>=2.19"},
            "ansible_runner": {"package_pip": "ansible-runner"},
            "galaxy": {"collections": [{"name": "collections/" + release["tarball"].name, "type": "file"}]},
        },
        "additional_build_files": [{"src": str(release["tarball"]), "dest": "collections"}],
    }
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition))
    ctx = _builder_create(work, work / "context")
    build = ctx / "_build"
    assert (build / "collections" / release["tarball"].name).is_file()
    dockerfile = (ctx / "Dockerfile").read_text()
    # the galaxy stage installs the requirements from a copy of _build (where the tarball is)
    assert "COPY _build /build\nWORKDIR /build" in dockerfile
    assert re.search(r"^RUN .*ansible-galaxy collection install .*-r requirements.yml", dockerfile, re.M)
    colls = work / "image-collections"   # the image's /usr/share/ansible/collections; build = its /build
    run([GALAXY, "collection", "install", "-r", "requirements.yml", "-p", colls], build, user_env(colls))
    assert (colls / "ansible_collections" / "bootflow" / "cloud" / "meta" / "execution-environment.yml").is_file()
    pip_txt, bindep_txt = work / "requirements.txt", work / "bindep.txt"
    run([sys.executable, build / "scripts" / "introspect.py", "introspect", colls, "--write-pip", pip_txt,
         "--write-bindep", bindep_txt], build)
    refs = re.search(r'^ARG ANSIBLE_INSTALL_REFS="([^"]+)"', dockerfile, re.M)
    assert refs, dockerfile
    return {"ctx": ctx, "colls": colls, "pip": pip_txt, "bindep": bindep_txt, "ansible_refs": refs.group(1).split()}


def test_introspect_finds_the_collections_dependencies(galaxy_context):
    assert requirement_names(galaxy_context["pip"]) == requirement_names(
        os.path.join(REPO, "meta", "ee-requirements.txt"))
    assert "openssh-client" in galaxy_context["bindep"].read_text()
    assert "from collection bootflow.cloud" in galaxy_context["pip"].read_text()


IMPORT_ALL = r"""
import importlib, json, os, pkgutil, sys
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
_AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
root = "ansible_collections.bootflow.cloud.plugins"
names = []
for pkg in sys.argv[2:]:
    mod = importlib.import_module(root + "." + pkg)
    if not hasattr(mod, "__path__"):
        names.append(mod.__name__)
        continue
    for info in pkgutil.walk_packages(mod.__path__, mod.__name__ + "."):
        importlib.import_module(info.name)
        names.append(info.name)
extra = {}
for name in os.environ["EXTRA_IMPORTS"].split():
    try:
        importlib.import_module(name)
        extra[name] = True
    except ImportError:
        extra[name] = False
print(json.dumps({"modules": names, "extra": extra, "prefix": sys.prefix}))
"""


def test_every_controller_plugin_imports_in_a_clean_venv_of_the_ee_requirements(galaxy_context, tmp_path):
    venv = tmp_path / "ee-venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *galaxy_context["ansible_refs"],
         "-r", galaxy_context["pip"]], tmp_path, timeout=1200)
    scan = _unit_scan()
    packages = ["action", "callback", "filter", "inventory", "lookup", "plugin_utils", "module_utils.common",
                "module_utils.argspec"]
    third_party = sorted(set(scan.scan(scan.CONTROLLER)) | set(scan.DYNAMIC))
    script = tmp_path / "import_all.py"
    script.write_text(IMPORT_ALL)
    env = dict(os.environ, EXTRA_IMPORTS=" ".join(third_party + ["libvirt"]))
    env.pop("PYTHONPATH", None)
    result = json.loads(run([py, script, galaxy_context["colls"], *packages], tmp_path, env).splitlines()[-1])
    assert result["prefix"] == str(venv)
    modules = set(result["modules"])
    expected = {"ansible_collections.bootflow.cloud.plugins.%s.%s" % (kind, os.path.splitext(f)[0])
                for kind in ("action", "callback", "inventory", "lookup", "filter")
                for f in os.listdir(os.path.join(REPO, "plugins", kind)) if f.endswith(".py")}
    assert expected <= modules, sorted(expected - modules)
    assert "ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.conductor" in modules
    assert {n: ok for n, ok in result["extra"].items() if not ok} == {"libvirt": False}, \
        "the venv must have every controller import and not the host-only libvirt: %s" % result["extra"]


# --- the FQCN playbooks from the installed tarball, against a real host ---------------------------------------


@contextlib.contextmanager
def user_host(release):
    """Test host 221 started clean and purged at the end; an inventory from the test host script."""
    subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)
    try:
        subprocess.run([TESTHOST, "start", str(HOST_N)], check=True, timeout=120)
        inventory = release["base"] / "inventory.ini"
        inventory.write_text(subprocess.run([INVENTORY_SH, str(HOST_N)], check=True, stdout=subprocess.PIPE,
                                            text=True).stdout)
        yield inventory
    finally:
        subprocess.run([TESTHOST, "purge", str(HOST_N)], check=False, timeout=120)


def test_fqcn_playbooks_from_the_installed_tarball_boot_and_delete_a_guest(release):
    state = release["base"] / "state"
    env = user_env(release["colls"], BOOTFLOW_STATE_DIR=str(state))
    assert not (release["cwd"] / "ansible.cfg").exists()
    with user_host(release) as inventory:
        look = Env(state, inventory, HOST_N)   # the DB and the host, for looking only

        def play(name, *args):
            out = run([PLAYBOOK, "-i", inventory, "bootflow.cloud." + name, *args], release["cwd"], env)
            recap = {m["host"]: int(m["failed"]) + int(m["unreachable"]) for m in RECAP_RE.finditer(out)}
            assert recap and not any(recap.values()), out[-4000:]
            return out

        play("bootstrap")
        play("hypervisors")
        before = look.host_snapshot()
        play("boot", "-e", "bootflow_instance_name=" + NAME)
        rows = look.query("SELECT uuid, vm_state, power_state, host FROM instances WHERE name=? AND deleted=0", NAME)
        assert [(r["vm_state"], r["power_state"], r["host"]) for r in rows] == [("active", "RUNNING", look.host)]
        uuid = rows[0]["uuid"]
        assert look.ssh("virsh -c qemu:///system domstate bootflow-%s" % uuid).strip() == "running"
        ip = look.query("SELECT ip FROM ports WHERE instance_uuid=?", uuid)[0]["ip"]
        assert wait_console(look, uuid, r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)").group(1) == ip   # it really booted
        play("delete", "-e", "bootflow_instance_name=" + NAME)
        assert look.host_snapshot() == before
        row = look.query("SELECT vm_state, deleted FROM instances WHERE uuid=?", uuid)[0]
        assert row["vm_state"] == "deleted" and row["deleted"] != 0
        assert look.query("SELECT * FROM ports WHERE instance_uuid=?", uuid) == []
        assert look.query("SELECT * FROM allocations WHERE consumer_id=?", uuid) == []
