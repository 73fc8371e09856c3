# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.token (seed steps 1-2, 4-5)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce

MAX_TTL = 365 * 86400


class ActionModule(ControllerStep):
    def step(self, ctx):
        args = ctx.args
        keystone = ctx.auth_backend == "keystone"
        if args["state"] == "revoked":
            auth = ctx.authenticate(fresh=True)  # only a valid token can be revoked (by its holder)
            enforce(auth, "identity:revoke_token")
            if keystone:
                changed = ctx.check_mode or ctx.keystone().revoke(args["auth_token"])
            else:
                changed = ctx.check_mode or _identity.revoke(ctx.db, auth)
            return {"changed": changed, "revoked": True, "audit_id": auth.audit_id}
        if args["state"] == "validated":
            auth = ctx.authenticate(fresh=True)  # validates, raises AuthError with the reason
            return {"valid": True, "auth": auth.as_dict(), "expires_at": auth.as_dict()["expires_at"]}
        if args["ttl"] < 1:
            raise InvalidRequest("ttl must be a positive number of seconds, got %d." % args["ttl"])
        if args["ttl"] > MAX_TTL:
            raise InvalidRequest("ttl must be at most %d seconds (365 days), got %d." % (MAX_TTL, args["ttl"]))
        if keystone:
            # Keystone decides the lifetime ([token] expiration); ttl does not apply
            token, auth = ctx.keystone(cloud=args["cloud"]).issue(
                args["username"], args["password"], args["project"], args["user_domain"], args["project_domain"])
            return {"token": token, "expires_at": auth.as_dict()["expires_at"], "auth": auth.as_dict()}
        if args["cloud"]:
            raise InvalidRequest("cloud (a clouds.yaml cloud) is only used with auth_backend=keystone.")
        username = args["username"] or "admin"
        password = args["password"]
        if password is None and username == "admin":
            # embedded default: the password bootstrap generated (0600 file on the controller)
            password = _identity.read_or_create_admin_password(ctx.state_dir, create=False)
            if password is None:
                raise AuthError(_identity.UNAUTHENTICATED + " (no password given and no admin-password file in the "
                                "state dir: run playbooks/bootstrap.yml first)")
        keys = _identity.key_repository(ctx.state_dir)
        token, auth = _identity.issue_token(ctx.db, keys, username, password, args["project"], args["ttl"],
                                            user_domain=args["user_domain"], project_domain=args["project_domain"])
        return {"token": token, "expires_at": auth.as_dict()["expires_at"], "auth": auth.as_dict()}
