# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image (Glance registry: the local store or a real Glance)."""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import ControllerStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name


class ActionModule(ControllerStep):
    def step(self, ctx):
        a = ctx.args
        auth = ctx.auth
        enforce(auth, {"absent": "image:delete", "deactivated": "image:deactivate"}.get(a["state"], "image:upload"))
        if a["visibility"] == "public" and a["state"] == "present":
            enforce(auth, "image:publicize")
        if a["state"] == "deactivated" and (a["filename"] or a["url"]):
            raise InvalidRequest("filename and url are not used with state deactivated (it works on the registered "
                                 "image); leave them out.")
        backend = _images.resolve_backend(a["image_backend"])
        glance = _images.glance_for(ctx) if backend == "glance" else None
        filename = a["filename"]
        if a["url"] and a["state"] == "present":
            if a["url_timeout"] <= 0:
                raise InvalidRequest("url_timeout must be a positive number of seconds, got %d." % a["url_timeout"])
            validate_name("image", a["name"])  # before the download, not after it
            ctx.progress("downloading image %s" % a["name"])
            filename = _images.download_url(a["url"], ctx.state_dir, a["url_timeout"], a["validate_certs"])
        try:
            changed, image, diff = _images.apply_image(
                ctx.db, auth, ctx.state_dir, a["name"], filename, a["disk_format"], a["container_format"],
                a["visibility"], a["min_disk"], a["min_ram"], a["properties"], a["state"], ctx.check_mode,
                glance=glance)
        except InvalidRequest as exc:
            if filename == a["filename"]:
                raise
            # the staging file's name means nothing to the caller: say where the bytes came from
            raise InvalidRequest("%s (the image downloaded from %s)" % (exc, _images.redact_url(a["url"]))) from exc
        finally:
            if filename != a["filename"]:
                os.unlink(filename)   # the staging copy of the download
        out = {"changed": changed, "image": image, "image_backend": backend}
        if ctx.diff:
            out["diff"] = diff
        return out
