# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.domain (nova-compute -> libvirt spawn, seed step 28)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, manager
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep


class ActionModule(HostStep):
    SEED_STEPS = "28"
    SERVICE = "nova-compute"

    def prepare(self, ctx, args):
        if not args.get("uuid"):
            raise InvalidRequest("uuid (the instance's UUID) is required when auth_token is given.")
        with ctx.db.tx() as conn:
            # with a token, the domain must be one of the caller's instances
            instance = instances.get_instance(conn, args["uuid"], ctx.auth)
            if instance.vm_state == instances.BUILDING and args["state"] == "running" and not ctx.check_mode:
                instance = manager.spawning(conn, instance)
        return instance

    def record(self, ctx, args, result, instance):
        with ctx.db.tx() as conn:
            return manager.domain_step_done(conn, ctx.host, instance, args["state"])
