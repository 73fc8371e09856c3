# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.rebuild: nova-api's rebuild (policy, state, image checks, task_state) on the
controller, the first half of nova-compute's on the instance's host."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import DEFAULT_SHUTDOWN_TIMEOUT
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances, manager
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.api import get_flavor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, check_instance_option


class ActionModule(HostStep):
    SEED_STEPS = "day-2"
    SERVICE = "nova-compute"
    POLICY_RULE = actions.REBUILD.rule
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + ("instance", "image"))

    _image = None

    def step(self, ctx):
        self._image = None
        check_instance_option(ctx.args, "the instance's UUID (instance_uuid)")
        result = super().step(ctx)
        if self._image is not None:
            result["image_id"] = self._image.id
        return result

    def prepare(self, ctx, args):
        if not args.get("image"):
            raise InvalidRequest("image (the new image's name or ID) is required when auth_token is given.")
        args["shutdown_timeout"] = ctx.operator_seconds("shutdown_timeout", "compute", default=DEFAULT_SHUTDOWN_TIMEOUT)
        with ctx.db.tx() as conn:
            instance = actions.root_disk_instance(conn, args["instance"], ctx.auth, ctx.host, "rebuild",
                                                  args["instance_uuid"] if "instance_uuid" in ctx.given else None)
            args["instance_uuid"] = instance.uuid
            image = _images.find_image(conn, args["image"], ctx.auth)
            _images.check_bootable(image, get_flavor(conn, instance.flavor_id))
            self._image = image
            if actions.resumes(instance, actions.REBUILD):
                if image.id != instance.image_id:
                    raise Conflict("Instance %s (%s) is in the middle of a rebuild from image %s: rebuild it from that "
                                   "image again to finish it." % (instance.name, instance.uuid, instance.image_id))
                return instance
            if ctx.check_mode:
                return instance
            moved = actions.begin_rebuild(conn, instance, image)
        self.api_step(ctx, instance, moved, "rebuild")
        return moved

    def record(self, ctx, args, result, instance):
        with ctx.db.tx() as conn:
            return manager.rebuild_spawning(conn, instance)

    def failed(self, ctx, args, instance, exc):
        with ctx.db.tx() as conn:
            instances.set_fault(conn, instance.uuid, "rebuild: %s" % exc, "rebuild", ctx.host)

    def step_action(self, args, instance):
        return "rebuild"
