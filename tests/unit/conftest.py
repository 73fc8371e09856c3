# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest setup for the unit tests: make ``ansible_collections.bootflow.cloud`` importable from the checkout.

Creates ``build/collections/ansible_collections/bootflow/cloud`` as a symlink to the repository root
when it is missing and puts ``build/collections`` first on ``sys.path``.
"""

from __future__ import annotations

import os
import sys

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COLLECTIONS = os.path.join(REPO_ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "bootflow", "cloud")

if not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    try:
        os.symlink(os.path.relpath(REPO_ROOT, os.path.dirname(LINK)), LINK)
    except FileExistsError:  # created concurrently
        pass

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

try:
    from hypothesis import settings
except ImportError:  # hypothesis is optional for the rest of the suite
    pass
else:
    # No .hypothesis/ example database in the working tree.
    settings.register_profile("bootflow", database=None, deadline=None)
    settings.load_profile("bootflow")

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "real_scrypt: run with the embedded identity's real scrypt cost (N=2^17)")


@pytest.fixture(autouse=True)
def _cheap_scrypt(request, monkeypatch):
    """Unit tests that are not about password hashing hash with N=2^12 instead of 2^17 (0.5 s per hash and per
    login on this machine would make the suite several minutes longer). The tests marked ``real_scrypt`` check the
    real parameters, the one-scrypt-per-login rule and the rehash; integration tests always run the real cost."""
    if request.node.get_closest_marker("real_scrypt"):
        return
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
    n = 2 ** 12
    monkeypatch.setattr(_identity, "_SCRYPT_N", n)
    monkeypatch.setattr(_identity, "_DUMMY_HASH", _identity._encode(  # pylint: disable=protected-access
        n, _identity._SCRYPT_R, _identity._SCRYPT_P, b"\0" * 16, b"\0" * 32))  # pylint: disable=protected-access
