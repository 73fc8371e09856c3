# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image (Glance registry: the local store or a real Glance)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils._argspec import (
    AUTH_ARGSPEC, IMAGE_BACKEND_ARGSPEC, argspec)
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils._action import ControllerStep
from ansible_collections.bootflow.cloud.plugins.plugin_utils._policy import enforce


class ActionModule(ControllerStep):
    ARGSPEC = argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        name=dict(type="str", required=True),
        filename=dict(type="path"),
        disk_format=dict(type="str", default="qcow2", choices=list(_images.DISK_FORMATS)),
        container_format=dict(type="str", default="bare", choices=list(_images.CONTAINER_FORMATS)),
        visibility=dict(type="str", default="private", choices=["public", "private"]),
        min_disk=dict(type="int", default=0),
        min_ram=dict(type="int", default=0),
        properties=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    )
    REQUIRED_IF = [("state", "present", ("filename",))]

    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        enforce(auth, "image:delete" if a["state"] == "absent" else "image:upload")
        if a["visibility"] == "public" and a["state"] == "present":
            enforce(auth, "image:publicize")
        backend = _images.resolve_backend(a["image_backend"])
        glance = _images.glance_for(ctx) if backend == "glance" else None
        changed, image = _images.ensure_image(
            ctx.db, auth, ctx.state_dir, a["name"], a["filename"], a["disk_format"], a["container_format"],
            a["visibility"], a["min_disk"], a["min_ram"], a["properties"], a["state"], ctx.check_mode, glance=glance)
        return {"changed": changed, "image": image, "image_backend": backend}
