# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.identity_bootstrap (keystone-manage bootstrap)."""

from __future__ import annotations

import os
import secrets

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest


class ActionModule(ControllerStep):
    def step(self, ctx):
        args = ctx.args
        if ctx.auth_backend == "keystone":
            return {"changed": False, "skipped": True,
                    "msg": "auth_backend=keystone: users, projects and roles are Keystone's; nothing to bootstrap"}
        password = args["password"]
        if password is None and args["username"] != "admin":
            raise InvalidRequest("password is required for user %s (only admin gets a generated one)." % args["username"])
        if ctx.check_mode and not args.get("auth_token") and _db.is_new(None, ctx.state_dir):
            # nothing to compare with, and nothing may be written to find out: the whole identity would be new
            return {"changed": True, "new_state": True, "user": args["username"], "project": args["project"],
                    "role": args["role"],
                    "msg": "check mode: no bootflow database yet; it would be created with user %s, project %s and "
                           "role %s%s, and the Fernet key repository in %s" % (
                               args["username"], args["project"], args["role"],
                               ", a generated admin password (admin-password)"
                               if password is None and not os.environ.get(_identity.ADMIN_PASSWORD_ENV) else "",
                               "the database (encrypted with %s)" % _identity.KEY_SECRET_ENV
                               if os.environ.get(_identity.KEY_SECRET_ENV) else ctx.state_dir or _db.default_state_dir())}
        # with a token: it must be an admin's, and then existing users may be changed (password reset, roles)
        may_change = False
        if args.get("auth_token"):
            enforce(ctx.auth, "identity:user")
            enforce(ctx.auth, "identity:role_assignment")
            may_change = True
        new_file = None
        if password is None:  # the operator's BOOTFLOW_ADMIN_PASSWORD, else the state dir's file
            password = _identity.operator_admin_password(ctx.state_dir)
            if password is None:  # generated now, written only once the run is known to be allowed
                password = new_file = secrets.token_urlsafe(24)
        # validate before acting: refused (tokenless on an existing identity) before anything is written
        changed = _identity.bootstrap(ctx.db, args["username"], password, args["project"], args["role"],
                                      check_mode=True, may_change=may_change)
        keys = _identity.key_repository(ctx.state_dir, ctx.db)
        if ctx.check_mode:
            keys.ensure()
            if new_file is not None:  # a fresh state dir without a password
                return {"changed": True}
        else:
            if new_file is not None:
                _identity.write_admin_password(ctx.state_dir, new_file)
            keys.ensure()
            changed = _identity.bootstrap(ctx.db, args["username"], password, args["project"], args["role"],
                                          may_change=may_change)
        out = {"changed": changed or new_file is not None, "user": args["username"], "project": args["project"],
               "role": args["role"]}
        if args["password"] is None and os.environ.get(_identity.ADMIN_PASSWORD_ENV):
            out["password_from"] = _identity.ADMIN_PASSWORD_ENV
        elif args["password"] is None:
            out["password_file"] = _identity.admin_password_path(ctx.state_dir)
        return out
