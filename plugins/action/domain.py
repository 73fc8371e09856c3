# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.domain (nova-compute -> libvirt spawn, seed step 28)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


class ActionModule(HostStep):
    SEED_STEPS = "28"
    POLICY_RULE = "compute:host_step"
    SERVICE = "nova-compute"

    def prepare(self, ctx, args):
        if not args.get("uuid"):
            raise InvalidRequest("uuid (the instance's UUID) is required when auth_token is given.")
        with ctx.db.tx() as conn:
            # with a token, the domain must be one of the caller's instances
            instance = instances.get_instance(conn, args["uuid"], ctx.auth)
            if instance is not None and instance.vm_state == instances.BUILDING and not ctx.check_mode \
                    and args.get("state", "running") == "running":
                # Nova saves task_state SPAWNING before driver.spawn()
                instance = instances.move_state(conn, instance.uuid, instances.BUILDING, instances.SPAWNING)
        return instance

    def record(self, ctx, args, result, instance):
        if instance is None:
            return None
        state = args.get("state", "running")
        with ctx.db.tx() as conn:
            if state == "running" and instance.vm_state == instances.BUILDING:
                for vol in _volumes.instance_volumes(conn, instance.uuid):
                    if vol.status == "attaching":
                        _volumes.set_status(conn, vol.id, "in-use")
                new = instances.move_state(conn, instance.uuid, instances.ACTIVE, None, expected_task_state=instances.SPAWNING,
                                           power_state="RUNNING", launched_at=_db.now())
                return new.vm_state, new.task_state
            if state == "absent":
                for vol in _volumes.instance_volumes(conn, instance.uuid):
                    if vol.status == "in-use":
                        _volumes.set_status(conn, vol.id, "available")
                # a failed build being undone keeps its task_state (the conductor decides what comes next);
                # any other instance is being deleted
                task_state = instance.task_state if instance.vm_state == instances.BUILDING else instances.DELETING
                conn.execute(_db.table("instances").update().where(_db.table("instances").c.uuid == instance.uuid)
                             .values(power_state="NOSTATE", task_state=task_state, updated_at=_db.now()))
                return instance.vm_state, task_state
        return None
