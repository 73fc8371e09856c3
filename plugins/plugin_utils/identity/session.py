# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who is calling, whichever identity service plays Keystone: a token issued for credentials, or a
token validated. The steps (through StepContext), the token module and the instances inventory plugin
all authenticate here.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import allowed


def authenticate(db, state_dir, backend, token, auth_url=None, fresh=False):
    """The AuthContext of ``token`` (AuthError saying why not). ``fresh`` skips Keystone's validation cache.
    ``db`` is a function returning the open DB (the local backend needs it, Keystone does not)."""
    if backend == "keystone":
        return _keystone.Keystone(auth_url, state_dir).validate(token, use_cache=not fresh)
    conn = db()
    return _identity.authenticate(conn, _identity.key_repository(state_dir, conn), token)


def check_ttl(ttl):
    """The lifetime a token is issued for: ``ttl`` (None: the operator's identity.token_expiration), which must
    be 1 to identity.max_token_expiration seconds (InvalidRequest otherwise, for everyone: the operator's cap)."""
    cap = _identity.max_token_expiration()
    if ttl is None:
        return _identity.token_expiration()
    if ttl < 1:
        raise InvalidRequest("ttl must be a positive number of seconds, got %d." % ttl)
    if ttl > cap:
        raise InvalidRequest("ttl must be at most %d seconds (identity.max_token_expiration of the operator "
                             "configuration), got %d." % (cap, ttl))
    return ttl


def issue(db, state_dir, backend, username=None, password=None, project=None, user_domain=None,
          project_domain=None, cloud=None, auth_url=None, ttl=None):
    """A project-scoped token for the credentials: (token, AuthContext). With Keystone its own
    ``[token] expiration`` applies (``ttl`` does not); locally, without a password, the admin's password of
    E(BOOTFLOW_ADMIN_PASSWORD), else the one bootstrap generated into the state dir. ``db``: a function
    returning the open DB.

    ``ttl``: None for the operator's identity.token_expiration; never above identity.max_token_expiration
    (refused for everyone); above identity.token_expiration only when the token's user is an admin on its
    project (policy rule config:override), checked before the token is made."""
    ttl = check_ttl(ttl)
    if backend == "keystone":
        return _keystone.Keystone(auth_url, state_dir, cloud=cloud).issue(username, password, project, user_domain,
                                                                          project_domain)
    if cloud:
        raise InvalidRequest("cloud (a clouds.yaml cloud) is only used with auth_backend=keystone.")
    username = username or "admin"
    if password is None and username == "admin":
        # embedded default: the operator's BOOTFLOW_ADMIN_PASSWORD, else the password bootstrap generated (0600 file)
        password = _identity.operator_admin_password(state_dir)
        if password is None:
            raise AuthError(_identity.UNAUTHENTICATED + " (no password given, %s is not set and there is no "
                            "admin-password file in the state dir %s: run playbooks/bootstrap.yml first, or give "
                            "the admin's password in %s, as the bootflow.cloud AWX credential does)"
                            % (_identity.ADMIN_PASSWORD_ENV, _identity.admin_password_path(state_dir),
                               _identity.ADMIN_PASSWORD_ENV))
    default_ttl = _identity.token_expiration()

    def may_have(ctx):
        if ttl > default_ttl and not allowed(ctx, "config:override"):
            raise AuthError("ttl %d is above the operator's token lifetime (identity.token_expiration, %d seconds): only "
                            "an admin may ask for a longer one (up to identity.max_token_expiration); user %s has %s on "
                            "project %s." % (ttl, default_ttl, ctx.user_name, ", ".join(ctx.roles), ctx.project_name))

    conn = db()
    return _identity.issue_token(conn, _identity.key_repository(state_dir, conn), username, password, project, ttl,
                                 user_domain=user_domain, project_domain=project_domain, check=may_have)
