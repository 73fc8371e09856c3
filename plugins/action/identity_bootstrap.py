# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.identity_bootstrap (keystone-manage bootstrap)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest


class ActionModule(ControllerStep):
    def step(self, ctx):
        args = ctx.args
        if ctx.auth_backend == "keystone":
            return {"changed": False, "skipped": True,
                    "msg": "auth_backend=keystone: users, projects and roles are Keystone's; nothing to bootstrap"}
        password = args["password"]
        generated = False
        if password is None and args["username"] != "admin":
            raise InvalidRequest("password is required for user %s (only admin gets a generated one)." % args["username"])
        if password is None:
            existing = _identity.read_or_create_admin_password(ctx.state_dir, create=False)
            generated = existing is None
            password = existing if existing else (
                None if ctx.check_mode else _identity.read_or_create_admin_password(ctx.state_dir))
        _identity.key_repository(ctx.state_dir).ensure()
        if password is None:  # check mode on a fresh state dir
            return {"changed": True}
        changed = _identity.bootstrap(ctx.db, args["username"], password, args["project"], args["role"], ctx.check_mode)
        out = {"changed": changed or generated, "user": args["username"], "project": args["project"], "role": args["role"]}
        if args["password"] is None:
            out["password_file"] = _identity.admin_password_path(ctx.state_dir)
        return out
