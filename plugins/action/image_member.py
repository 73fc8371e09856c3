# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image_member (Glance's image sharing: members of a shared image)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import members as _members
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        changed, member, image, diff = _members.ensure_member(
            ctx, a["image"], a["project"], a["project_domain"], a["state"], a["member_status"], ctx.check_mode)
        out = {"changed": changed, "member": member, "image_backend": _images.resolve_backend(a["image_backend"]),
               "image": {k: getattr(image, k) for k in ("id", "name", "owner", "visibility", "status")}}
        if ctx.diff:
            out["diff"] = diff
        return out
