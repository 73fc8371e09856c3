# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image (Glance registry: the local store or a real Glance)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth   # the token is validated before anything else
        backend = _images.resolve_backend(a["image_backend"])

        def glance():
            return _images.glance_for(ctx) if backend == "glance" else None

        changed, image, diff = _images.image_request(ctx.db, auth, ctx.state_dir, a, ctx.check_mode, glance=glance,
                                                     progress=ctx.progress)
        out = {"changed": changed, "image": image, "image_backend": backend}
        if ctx.diff:
            out["diff"] = diff
        return out
