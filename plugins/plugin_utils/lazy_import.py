# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A module imported when it is first used.

PRIVATE to the collection: may change at any time. Controller side only.

The clients of a real Keystone or Glance (keystoneauth1, openstacksdk) take about 0.2 s to import, and
Ansible imports every action plugin a playbook uses into its main process: with the embedded identity and
image store they are never used, so they are imported only when a Keystone or Glance is.
"""

from __future__ import annotations

import importlib
import traceback


class LazyModule:
    """Stands for module ``name``: the first attribute read imports it (an ImportError then propagates)."""

    def __init__(self, name):
        self._name = name
        self._module = None

    def __getattr__(self, attr):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def import_error(self):
        """None when the module imports, else the ImportError's traceback (for the message saying what to install)."""
        try:
            self._module = self._module or importlib.import_module(self._name)
        except ImportError:
            return traceback.format_exc()
        return None
