# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.console_log (nova-api's os-getConsoleOutput, read on the instance's host)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, check_instance_option


class ActionModule(HostStep):
    POLICY_RULE = "os_compute_api:os-console-output"
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + ("instance",))

    _uuid = None

    def step(self, ctx):
        self._uuid = None
        check_instance_option(ctx.args, "the log file (path)")
        result = super().step(ctx)
        if self._uuid:
            result["uuid"] = self._uuid
        return result

    def prepare(self, ctx, args):
        """The log the host put the instance's console in (its record says where). A read: no step is recorded."""
        with ctx.db.tx() as conn:
            instance = instances.get_instance(conn, args["instance"], ctx.auth)
        instances.require_on_host(instance, ctx.host, "read its console on its host")
        path = (instance.request or {}).get("console_log")
        if not path:
            raise NotFound("Instance %s (%s) has no console log yet: its build has not reached its host."
                           % (instance.name, instance.uuid))
        if "path" in ctx.given and args["path"] != path:
            raise InvalidRequest("path %s is not the console log of instance %s (%s)." % (args["path"], instance.name, path))
        args["path"] = path
        self._uuid = instance.uuid
        return None
