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
