# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place of the modules' argument specs (module_utils/argspec.py) against what users read.

ansible-test's validate-modules compares a host module's documentation with its argspec, but a
controller module (an action plugin with a doc-only module file) has no argspec it could see. This
compares every module, both kinds, option by option: the documented options (its DOCUMENTATION plus
its doc fragments) must be exactly the options of SPECS[name], with the same type, default, choices,
elements and required. It also pins each shared block to its one doc fragment.
"""

from __future__ import annotations

import glob
import importlib
import os

import pytest
import yaml

from ansible_collections.bootflow.cloud.plugins.module_utils import argspec

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
MODULES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, "plugins", "modules", "*.py"))
                 if not p.endswith("__init__.py"))
FRAGMENTS = {"auth": "AUTH_ARGSPEC", "image_backend": "IMAGE_BACKEND_ARGSPEC", "placement": "PLACEMENT_ARGSPEC",
             "libvirt": "LIBVIRT_ARGSPEC", "wait": "WAIT_ARGSPEC"}


def _fragment(name, attr="DOCUMENTATION"):
    mod = importlib.import_module("ansible_collections.bootflow.cloud.plugins.doc_fragments.%s" % name)
    return yaml.safe_load(getattr(mod.ModuleDocFragment, attr)).get("options") or {}


def _documented(name):
    mod = importlib.import_module("ansible_collections.bootflow.cloud.plugins.modules.%s" % name)
    doc = yaml.safe_load(mod.DOCUMENTATION)
    options = {}
    for frag in doc.get("extends_documentation_fragment") or []:
        parts = frag.split(".")   # bootflow.cloud.NAME or bootflow.cloud.NAME.ATTRIBUTE
        options.update(_fragment(parts[2], parts[3] if len(parts) > 3 else "DOCUMENTATION"))
    options.update(doc.get("options") or {})
    return options


def _differences(where, spec, docs):
    out = []
    if set(spec) != set(docs):
        out.append("%s: options only in the spec %s, only in the docs %s"
                   % (where, sorted(set(spec) - set(docs)), sorted(set(docs) - set(spec))))
    for key in sorted(set(spec) & set(docs)):
        s, d = spec[key], docs[key]
        for attr, default in (("type", "str"), ("default", None), ("choices", None), ("elements", None),
                              ("required", False)):
            want, have = s.get(attr, default), d.get(attr, default)
            if attr == "choices" and want is not None:   # the same values; the order is the docs' own
                want, have = sorted(want), sorted(have or [])
            if attr == "default" and want in ([], {}) and have is None:
                continue   # an empty list/dict default need not be documented
            if want != have:
                out.append("%s.%s: %s is %r in the spec, %r in the docs" % (where, key, attr, want, have))
        if s.get("options"):
            out.extend(_differences("%s.%s" % (where, key), s["options"], d.get("suboptions") or {}))
    return out


def test_every_module_has_exactly_one_spec():
    assert sorted(argspec.SPECS) == MODULES


@pytest.mark.parametrize("name", MODULES)
def test_the_documentation_says_what_the_spec_checks(name):
    spec = argspec.module_kwargs(name)["argument_spec"]
    assert _differences(name, spec, _documented(name)) == []


@pytest.mark.parametrize("fragment, block", sorted(FRAGMENTS.items()))
def test_each_shared_block_has_its_one_doc_fragment(fragment, block):
    assert _differences(fragment, getattr(argspec, block), _fragment(fragment)) == []


def test_module_kwargs_hands_out_copies():
    first = argspec.module_kwargs("domain")
    first["argument_spec"]["name"]["required"] = False
    first["argument_spec"]["disks"]["options"].clear()
    again = argspec.module_kwargs("domain")
    assert again["argument_spec"]["name"]["required"] is True
    assert "path" in again["argument_spec"]["disks"]["options"]


def test_a_difference_is_reported():
    spec = {"a": {"type": "int", "default": 1}, "b": {"type": "str"}}
    docs = {"a": {"type": "int", "default": 2}, "c": {"type": "str"}}
    found = _differences("m", spec, docs)
    assert "m: options only in the spec ['b'], only in the docs ['c']" in found
    assert "m.a: default is 1 in the spec, 2 in the docs" in found
