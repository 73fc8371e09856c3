# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.snapshot: nova-api's createImage (policy, state, the image name, task_state)
on the controller, nova-compute's copy of the root disk on the instance's host, then the upload of that copy into
the image registry (or Glance) from the controller."""

from __future__ import annotations

import glob
import os
import tempfile

from ansible.errors import AnsibleError

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError, Conflict, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.api import get_flavor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule, check_instance_option

# what Nova sets on a snapshot (nova/compute/api.py's snapshot and _create_image); the base image's own
# properties are inherited as Nova inherits the instance's image_* system metadata
SNAPSHOT_PROPERTIES = ("image_type", "instance_uuid", "base_image_ref", "user_id")
# what describes the base image's upload, not its content: never inherited (Glance reserves os_glance_*)
NOT_INHERITED_PREFIXES = ("os_glance", "owner_specified.", "stores")


def _staging_prefix(instance):
    """The controller's staging copy of an instance's snapshot is named after the instance, so that a re-run after
    a dead controller finds what that run left."""
    return ".snapshot-%s-" % instance.uuid


class ActionModule(HostStep):
    SEED_STEPS = "day-2"
    SERVICE = "nova-compute"
    POLICY_RULE = actions.SNAPSHOT.rule
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + ("instance", "image_name"))

    _instance = None
    _image = None
    _upload = None

    def step(self, ctx):
        self._instance = self._image = self._upload = None
        check_instance_option(ctx.args, "the instance's UUID (instance_uuid)")
        result = super().step(ctx)
        if self._instance is not None:
            result.update(uuid=self._instance.uuid, vm_state=self._instance.vm_state)
        if self._image is not None:
            result["image"] = self._image
        return result

    def _glance(self, ctx):
        return _images.glance_for(ctx) if _images.resolve_backend(None) == "glance" else None

    def prepare(self, ctx, args):
        name = args.get("image_name")
        if not name:
            raise InvalidRequest("image_name (the new image's name) is required when auth_token is given.")
        validate_name("image", name)
        if args["state"] != "present":
            raise InvalidRequest("state absent removes a snapshot file a run left on the host; it is not used with "
                                 "auth_token (delete the image with bootflow.cloud.image instead).")
        enforce(ctx.auth, "image:upload")     # the image is the caller's: Glance's rule applies too
        with ctx.db.tx() as conn:
            instance = actions.root_disk_instance(conn, args["instance"], ctx.auth, ctx.host, "snapshot",
                                                  args["instance_uuid"] if "instance_uuid" in ctx.given else None)
            args["instance_uuid"] = instance.uuid
        self._instance = instance
        glance = self._glance(ctx)
        existing = _images.images_named(ctx.db, ctx.auth, name, glance)
        if actions.resumes(instance, actions.SNAPSHOT):
            # a controller that died mid-upload left its image queued or saving, and its staging copy: made again,
            # not a Conflict (the task_state's compare-and-swap means no other upload of this instance runs now)
            unfinished = _images.unfinished_snapshots(existing, instance.uuid)
            if not ctx.check_mode:
                _images.discard_unfinished(ctx.db, ctx.state_dir, unfinished, glance)
                for path in glob.glob(os.path.join(_images.store_dir(ctx.state_dir), _staging_prefix(instance) + "*")):
                    os.unlink(path)
            existing = [i for i in existing if i not in unfinished]
        ours = [i for i in existing if _images.image_property(i, "instance_uuid") == instance.uuid
                and _images.field_getter(i)("status") == "active"]
        if ours and len(ours) == len(existing):
            # the snapshot a run made already: an Ansible re-run changes nothing (Nova would make another)
            self._image = _images.image_dict(ours[0]) if not isinstance(ours[0], dict) else ours[0]
            raise SkipModule({"changed": False, "msg": "image %s is already a snapshot of instance %s"
                              % (name, instance.name)})
        if existing:
            raise Conflict("An image named %s already exists (%s) and is not a snapshot of instance %s: choose another "
                           "name." % (name, ", ".join(_images.field_getter(i)("id") for i in existing), instance.name))
        if glance is None:
            with ctx.db.tx() as conn:
                _quota.check_image(conn, ctx.auth.project_id, 0)    # before the copy; its size is checked at upload
        if ctx.check_mode:
            return instance
        with ctx.db.tx() as conn:
            if actions.resumes(instance, actions.SNAPSHOT):
                moved = instances.move_state(conn, instance.uuid, instance.vm_state, instances.IMAGE_SNAPSHOT,
                                             expected_task_state=instance.task_state)
            else:
                moved = actions.begin(conn, instance, actions.SNAPSHOT)
        self.api_step(ctx, instance, moved, "snapshot")
        self._instance = moved
        return moved

    def run_module(self, ctx, module_args):
        """The host's copy, then (with a token) the copy fetched to the controller and uploaded as the image. The
        host's file is removed in every case, and so is the controller's staging copy."""
        result = super().run_module(ctx, module_args)
        if not module_args.get("auth_token") or ctx.check_mode:
            return result
        instance = self._instance
        with ctx.db.tx() as conn:
            self._instance = instances.move_state(conn, instance.uuid, instance.vm_state, instances.IMAGE_UPLOADING,
                                                  expected_task_state=instances.IMAGE_SNAPSHOT)
        fd, staging = tempfile.mkstemp(prefix=_staging_prefix(instance), suffix=".part",
                                       dir=_images.store_dir(ctx.state_dir))
        os.close(fd)
        try:
            ctx.progress("copying the snapshot of %s (%s bytes) to the controller" % (instance.name, result.get("size")))
            try:
                self._connection.fetch_file(result["path"], staging)
            except AnsibleError as exc:
                raise BootflowError("cannot fetch the snapshot %s from %s: %s" % (result["path"], ctx.host, exc))
            ctx.progress("uploading image %s" % module_args["image_name"])
            self._image = self._upload_image(ctx, module_args["image_name"], instance, staging)
        except BootflowError:
            raise
        except Exception as exc:     # an OSError of the staging copy: still the step's failure, reverted
            raise BootflowError("the upload of the snapshot of %s failed: %s" % (instance.name, exc)) from exc
        finally:
            os.unlink(staging)
            self._remove_host_copy(ctx, module_args)
        return result

    def _upload_image(self, ctx, name, instance, filename):
        with ctx.db.tx() as conn:
            base = _images.image_record(conn, instance.image_id) if instance.image_id else None
            flavor = get_flavor(conn, instance.flavor_id)
        properties = {k: v for k, v in (getattr(base, "properties", None) or {}).items()
                      if k not in SNAPSHOT_PROPERTIES and not k.startswith(NOT_INHERITED_PREFIXES)}
        properties.update(image_type="snapshot", instance_uuid=instance.uuid, base_image_ref=instance.image_id or "",
                          user_id=ctx.auth.user_id)
        min_disk = max(flavor.disk_gb or 0, getattr(base, "min_disk", 0) or 0)
        glance = self._glance(ctx)
        try:
            _changed, image, _diff = _images.apply_image(
                ctx.db, ctx.auth, ctx.state_dir, name, filename, "qcow2", "bare", "private", min_disk,
                getattr(base, "min_ram", 0) or 0, properties, "present", False, glance=glance)
        except BaseException:
            if glance is None:
                _images.discard_failed_snapshot(ctx.db, ctx.state_dir, ctx.auth.project_id, name, instance.uuid)
            raise
        return image

    def _remove_host_copy(self, ctx, module_args):
        args = {k: v for k, v in module_args.items() if k not in self.CONTROLLER_ONLY and v is not None}
        args["state"] = "absent"
        res = self._execute_module(module_name=self._task.resolved_action or self._task.action, module_args=args,
                                   task_vars=ctx.task_vars)
        if res.get("failed"):
            ctx.progress("could not remove the snapshot file on the host: %s" % res.get("msg"))

    def record(self, ctx, args, result, instance):
        with ctx.db.tx() as conn:
            row = instances.move_state(conn, instance.uuid, instance.vm_state, None,
                                       expected_task_state=instances.IMAGE_UPLOADING)
        return row.vm_state, row.task_state

    def failed(self, ctx, args, instance, exc):
        """The copy or the upload failed: the task_state goes back to none (Nova's reverts_task_state); the registry
        keeps no image of it (the upload removes what it made)."""
        with ctx.db.tx() as conn:
            instances.move_state(conn, instance.uuid, instance.vm_state, None,
                                 expected_task_state=(instances.IMAGE_SNAPSHOT, instances.IMAGE_UPLOADING))

    def step_action(self, args, instance):
        return "snapshot"
