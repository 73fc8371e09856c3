# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image_fetch (glance-api download into the host cache, seed steps 19-21)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time

from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS, IMAGE_BACKEND_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.files import file_lock
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances, manager


class ActionModule(HostStep):
    TRANSFERS_FILES = True
    SEED_STEPS = "19-21"
    POLICY_RULE = "image:download"
    SERVICE = "glance-api"
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + IMAGE_BACKEND_KEYS)

    _location = None
    _glance = None
    _glance_image = None
    _virtual_size = None

    def prepare(self, ctx, args):
        """Fill the image's format and hashes from the registry (the 'image metadata' of step 21); an image of
        a real Glance is looked up there again, as the caller."""
        with ctx.db.tx() as conn:
            instance = instances.get_instance(conn, args["instance_uuid"], ctx.auth) if args.get("instance_uuid") else None
            flavor = api.get_flavor(conn, instance.flavor_id) if instance is not None else None
        if instance is not None:
            args["instance_uuid"] = instance.uuid
        if args["state"] != "present":
            # removing an instance's disk needs no image (it may be gone from the registry or Glance by now)
            return instance
        ref = args.get("image_id") or (instance.image_id if instance is not None else None)
        if instance is None:
            ref = _images.boot_image_ref(ctx, ref)  # image_backend=glance: a Glance image bootflow has not seen yet
        with ctx.db.tx() as conn:
            image = _images.find_image(conn, ref, ctx.auth)
        self._glance, self._glance_image, image = _images.refresh(ctx, image)
        # nova-api checked this at create; the image may have changed since (Glance): again, before writing
        _images.check_bootable(image, flavor)
        self._location = image.location
        self._virtual_size = image.virtual_size
        args["image_id"] = image.id
        for key in ("disk_format", "checksum", "os_hash_algo", "os_hash_value", "size"):
            if key not in ctx.given:
                args[key] = getattr(image, key)
        return instance

    def run_module(self, ctx, module_args):
        if "force_raw_images" not in ctx.given and os.environ.get("BOOTFLOW_FORCE_RAW_IMAGES"):
            # an operator setting of the controller (Nova's [DEFAULT] force_raw_images)
            module_args = dict(module_args, force_raw_images=boolean(os.environ["BOOTFLOW_FORCE_RAW_IMAGES"], strict=False))
        booked = bool(ctx.args.get("auth_token")) and module_args["state"] == "present"
        probed_ns = time.time_ns()
        result = super().run_module(ctx, module_args)
        if booked:
            result.update(transferred_bytes=0, image_source=None)
        if not result.get("base_missing") or module_args.get("url") or module_args.get("src") or not self._location:
            return result
        if ctx.check_mode:
            # predicted without sending anything: the image would be cached, the overlay made on it
            result.update(changed=True, base_missing=False, base_downloaded=True, virtual_size=self._virtual_size,
                          disk_created=bool(module_args.get("instance_uuid"))
                          and module_args["create_disk"])
            return result
        if self._location.startswith(("http://", "https://")):
            return super().run_module(ctx, dict(module_args, url=self._location))
        # the base is not cached on this host: send it once, whatever the number of parallel boots
        with self._host_image_lock(ctx, module_args) as lock_path:
            sent = lock_path[:-len(".lock")] + ".sent"
            # (file times come from a coarse clock, a tick behind time_ns: 50 ms of margin)
            if os.path.exists(sent) and os.stat(sent).st_mtime_ns > probed_ns - 50_000_000:
                # another boot sent this image to this host after we looked: look again
                result = super().run_module(ctx, module_args)
                result.update(transferred_bytes=0, image_source=None)
                if not result.get("base_missing"):
                    ctx.progress("image %s was sent to %s by another boot meanwhile: not sent again"
                                 % (module_args["image_id"], ctx.host))
                    return result
            if self._glance is not None:
                result = self._send_from_glance(ctx, module_args)
            else:
                result = self._send_from_store(ctx, module_args)
            # tells the boots that wait for this lock (they looked before it was sent) to look again
            with open(sent, "w"):
                pass
            os.utime(sent)
        return result

    @contextlib.contextmanager
    def _host_image_lock(self, ctx, module_args):
        lock_dir = os.path.join(_db.resolve_state_dir(ctx.state_dir), "locks")
        os.makedirs(lock_dir, mode=0o700, exist_ok=True)
        key = "%s\0%s\0%s" % (ctx.host, module_args.get("instances_path") or "", module_args["image_id"])
        path = os.path.join(lock_dir, "image-fetch-%s.lock" % hashlib.sha1(key.encode()).hexdigest())
        with file_lock(path):
            yield path

    def _transfer(self, ctx, module_args, local_path, source):
        size = os.path.getsize(local_path)
        ctx.progress("image %s not cached on %s: transferring %d MiB (%s)"
                     % (module_args["image_id"], ctx.host, size // 2 ** 20, source))
        tmpdir = self._make_tmp_path()
        try:
            remote = self._connection._shell.join_path(tmpdir, "image.part")
            self._transfer_file(local_path, remote)
            result = super().run_module(ctx, dict(module_args, src=remote))
        finally:
            self._remove_tmp_path(tmpdir)
        result.update(transferred_bytes=size, image_source=source)
        return result

    def _send_from_store(self, ctx, module_args):
        if not os.path.isfile(self._location):
            raise InvalidRequest("The image store file %s is missing on the controller." % self._location)
        return self._transfer(ctx, module_args, self._location, "store")

    def _send_from_glance(self, ctx, module_args):
        """Stream the image from Glance into a temporary file on the controller (hashes verified on the way),
        then send that file: the hosts cannot reach Glance, and only verified bytes leave the controller."""
        image = self._glance_image
        expected = _glance.expected_hashes(image)
        fd, tmp = tempfile.mkstemp(dir=_images.store_dir(ctx.state_dir), prefix=".glance-%s." % image["id"],
                                   suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                self._glance.download(image, out, expected)
            return self._transfer(ctx, module_args, tmp, "glance")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def record(self, ctx, args, result, instance):
        if instance is None or args["state"] != "present":
            return None
        with ctx.db.tx() as conn:
            return manager.image_ready(conn, instance, result.get("console_log"))
