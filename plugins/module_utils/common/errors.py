# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors raised by the controller-side services. PRIVATE to the collection."""

from __future__ import annotations


class BootflowError(Exception):
    """A failure the user can act on; ``str()`` is the message shown by the task."""

    kind = "error"

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.details = details


class AuthError(BootflowError):
    """Missing, invalid, expired or insufficient credentials (Keystone's 401/403)."""

    kind = "auth"


class NotFound(BootflowError):
    kind = "not_found"


class Conflict(BootflowError):
    kind = "conflict"


class InvalidRequest(BootflowError):
    kind = "invalid"


class NoValidHostError(BootflowError):
    kind = "no_valid_host"


class QuotaExceeded(BootflowError):
    """A project limit would be exceeded (Nova's/Cinder's 403 'Quota exceeded')."""

    kind = "quota"
