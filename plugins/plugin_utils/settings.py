# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's settings that a task option may name and the controller's environment otherwise
gives: which backend plays a service (identity, image registry, placement).

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest


def backend(option, value, env, choices, default="local"):
    """The backend option ``option``'s ``value``, else the environment variable ``env``, else ``default``;
    InvalidRequest when it is not one of ``choices`` (saying where a bad value came from)."""
    chosen = value or os.environ.get(env) or default
    if chosen not in choices:
        where = "" if value else " (from the %s environment variable)" % env
        raise InvalidRequest("%s must be one of %s, got %r%s." % (option, ", ".join(choices), chosen, where))
    return chosen
