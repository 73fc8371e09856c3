# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.token (seed steps 1-2, 4-5)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce


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
        token, auth = session.issue(lambda: ctx.db, ctx.state_dir, ctx.auth_backend, args["username"], args["password"],
                                    args["project"], args["user_domain"], args["project_domain"], cloud=args["cloud"],
                                    auth_url=ctx.operator_auth_url(), ttl=args["ttl"])
        return {"token": token, "expires_at": auth.as_dict()["expires_at"], "auth": auth.as_dict()}
