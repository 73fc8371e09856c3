# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's one exception root, for both sides.

PRIVATE to the collection: may change at any time. Stdlib only: host modules import it too.

A ``BootflowError`` is a failure the user can act on: ``str()`` is the message the task shows, and
``details`` are extra return values of the failed task (the controller's steps add them to the
result; ``host.step.finish`` passes them to ``fail_json``). ``kind`` names the class of failure in
the task result (``error``).
"""

from __future__ import annotations


class BootflowError(Exception):
    """A failure the user can act on; ``str()`` is the message shown by the task."""

    kind = "error"

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class AuthError(BootflowError):
    """Missing, invalid, expired or insufficient credentials (Keystone's 401/403)."""

    kind = "auth"


class NotFound(BootflowError):
    kind = "not_found"


class Conflict(BootflowError):
    kind = "conflict"


class InvalidRequest(BootflowError, ValueError):
    """Bad input (Nova's 400). Also a ValueError: a value the code was given is not acceptable."""

    kind = "invalid"


class NoValidHostError(BootflowError):
    kind = "no_valid_host"


class QuotaExceeded(BootflowError):
    """A project limit would be exceeded (Nova's/Cinder's 403 'Quota exceeded')."""

    kind = "quota"
