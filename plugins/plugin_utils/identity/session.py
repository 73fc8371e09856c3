# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is calling, whichever identity service plays Keystone: a token issued for credentials, or a
token validated. The steps (through StepContext), the token module and the instances inventory plugin
all authenticate here.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DEFAULT_TOKEN_TTL
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity

MAX_TTL = 365 * 86400


def authenticate(db, state_dir, backend, token, auth_url=None, fresh=False):
    """The AuthContext of ``token`` (AuthError saying why not). ``fresh`` skips Keystone's validation cache.
    ``db`` is a function returning the open DB (the local backend needs it, Keystone does not)."""
    if backend == "keystone":
        return _keystone.Keystone(auth_url, state_dir).validate(token, use_cache=not fresh)
    return _identity.authenticate(db(), _identity.key_repository(state_dir), token)


def issue(db, state_dir, backend, username=None, password=None, project=None, user_domain=None,
          project_domain=None, cloud=None, auth_url=None, ttl=DEFAULT_TOKEN_TTL):
    """A project-scoped token for the credentials: (token, AuthContext). With Keystone its own
    ``[token] expiration`` applies (``ttl`` does not); locally, without a password, the admin's
    password that bootstrap generated into the state dir. ``db``: a function returning the open DB."""
    if ttl < 1:
        raise InvalidRequest("ttl must be a positive number of seconds, got %d." % ttl)
    if ttl > MAX_TTL:
        raise InvalidRequest("ttl must be at most %d seconds (365 days), got %d." % (MAX_TTL, ttl))
    if backend == "keystone":
        return _keystone.Keystone(auth_url, state_dir, cloud=cloud).issue(username, password, project, user_domain,
                                                                          project_domain)
    if cloud:
        raise InvalidRequest("cloud (a clouds.yaml cloud) is only used with auth_backend=keystone.")
    username = username or "admin"
    if password is None and username == "admin":
        # embedded default: the password bootstrap generated (0600 file on the controller)
        password = _identity.read_or_create_admin_password(state_dir, create=False)
        if password is None:
            raise AuthError(_identity.UNAUTHENTICATED + " (no password given and no admin-password file in the "
                            "state dir: run playbooks/bootstrap.yml first)")
    return _identity.issue_token(db(), _identity.key_repository(state_dir), username, password, project, ttl,
                                 user_domain=user_domain, project_domain=project_domain)
