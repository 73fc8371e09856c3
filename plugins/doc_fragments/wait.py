# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches WAIT_ARGSPEC in plugins/module_utils/argspec.py
    DOCUMENTATION = r"""
options:
  wait:
    description:
      - Wait until the target state is reached before returning.
    type: bool
    default: true
  wait_timeout:
    description:
      - How many seconds to wait at most when O(wait=true). The task fails with the last observed
        state when the time runs out.
    type: int
    default: 120
"""
