# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image_fetch (glance-api download into the host cache, seed steps 19-21)."""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.plugin_utils import _boot, _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _compute_api as api
from ansible_collections.bootflow.cloud.plugins.plugin_utils._action import HostStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import InvalidRequest


class ActionModule(HostStep):
    TRANSFERS_FILES = True
    SEED_STEPS = "19-21"
    POLICY_RULE = "image:download"
    SERVICE = "glance-api"

    def prepare(self, ctx, args):
        """Fill the image's format and hashes from the registry (the 'image metadata' of step 21)."""
        with ctx.db.tx() as conn:
            instance = api.get_instance(conn, args["instance_uuid"], ctx.auth) if args.get("instance_uuid") else None
            image = _images.find_image(conn, args.get("image_id") or (instance.image_id if instance else None), ctx.auth)
            if image.status != "active":
                raise InvalidRequest("Image %s is not active (status %s)." % (image.name, image.status))
            self._location = _boot.image_location(conn, image.id)
        args["image_id"] = image.id
        for key in ("disk_format", "checksum", "os_hash_algo", "os_hash_value", "size"):
            if args.get(key) is None:
                args[key] = getattr(image, key)
        if instance is not None:
            args["instance_uuid"] = instance.uuid
        return instance

    def run_module(self, ctx, module_args):
        result = super().run_module(ctx, module_args)
        location = getattr(self, "_location", None)
        if not result.get("base_missing") or module_args.get("url") or module_args.get("src") or not location:
            return result
        if location.startswith(("http://", "https://")):
            return super().run_module(ctx, dict(module_args, url=location))
        if not os.path.isfile(location):
            raise InvalidRequest("The image store file %s is missing on the controller." % location)
        # the base is not cached on this host yet: send the image from the controller's store once
        size_mib = os.path.getsize(location) // 2 ** 20
        ctx.progress("image %s not cached on %s: transferring %d MiB" % (module_args["image_id"], ctx.host, size_mib))
        tmpdir = self._make_tmp_path()
        try:
            remote = self._connection._shell.join_path(tmpdir, "image.part")
            self._transfer_file(location, remote)
            return super().run_module(ctx, dict(module_args, src=remote))
        finally:
            self._remove_tmp_path(tmpdir)

    def record(self, ctx, args, result, instance):
        if instance is None or args.get("state", "present") != "present" or instance.vm_state != api.BUILDING:
            return None
        with ctx.db.tx() as conn:
            # compute took over from the scheduler (Nova's _do_build_and_run_instance: task_state None)
            new = api.move_state(conn, instance.uuid, api.BUILDING, None,
                                 expected_task_state=(api.SCHEDULING, None, api.NETWORKING, api.BLOCK_DEVICE_MAPPING))
            return new.vm_state, new.task_state
