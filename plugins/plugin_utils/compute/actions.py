# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api's instance actions after the boot (stop, start, reboot, pause, unpause, suspend, resume): which
vm_state each is allowed in (nova/compute/api.py's ``check_instance_state``), the task_state nova-api saves
before it casts to the compute host, and what the compute manager saves once the driver is done.

PRIVATE to the collection: may change at any time. Controller side only.

An action asked of an instance that is already where it leads (stop a stopped one) changes nothing, as an
Ansible task should; Nova's API would answer 409. Reboots always act.
"""

from __future__ import annotations

from collections import namedtuple

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.instances import (
    ACTIVE,
    ERROR,
    PAUSED,
    STOPPED,
    SUSPENDED,
)

# allowed: the vm_states the API accepts (task_state must be None); task: what nova-api saves; done: the
# vm_state the compute manager saves after the driver call; rule: the policy rule (Nova's name)
Action = namedtuple("Action", "allowed task done rule")

ACTIONS = {
    "stop": Action((ACTIVE, ERROR), instances.POWERING_OFF, STOPPED, "os_compute_api:servers:stop"),
    "start": Action((STOPPED,), instances.POWERING_ON, ACTIVE, "os_compute_api:servers:start"),
    "reboot_soft": Action((ACTIVE,), instances.REBOOTING, ACTIVE, "os_compute_api:servers:reboot"),
    "reboot_hard": Action((ACTIVE, STOPPED, PAUSED, SUSPENDED, ERROR), instances.REBOOTING_HARD, ACTIVE,
                          "os_compute_api:servers:reboot"),
    "pause": Action((ACTIVE,), instances.PAUSING, PAUSED, "os_compute_api:os-pause-server:pause"),
    "unpause": Action((PAUSED,), instances.UNPAUSING, ACTIVE, "os_compute_api:os-pause-server:unpause"),
    "suspend": Action((ACTIVE,), instances.SUSPENDING, SUSPENDED, "os_compute_api:os-suspend-server:suspend"),
    "resume": Action((SUSPENDED,), instances.RESUMING, ACTIVE, "os_compute_api:os-suspend-server:resume"),
}


# rebuild (Nova's rebuild: a new image on the same host) is a flow of its own (compute role, rebuild.yml): its
# result is the vm_state the instance had (active, or stopped), an error one becomes active
REBUILD = Action((ACTIVE, STOPPED, ERROR), instances.REBUILDING, None, "os_compute_api:servers:rebuild")

# createImage (a snapshot of the root disk into a new image): the vm_state stays; nova-api saves image_snapshot,
# the compute host image_uploading once its copy is made, and none once the image is active
SNAPSHOT = Action((ACTIVE, STOPPED, PAUSED, SUSPENDED), instances.IMAGE_SNAPSHOT, None,
                  "os_compute_api:servers:create_image")
# resize (a new flavor; compute role resize.yml): the instance goes to RESIZED (the API's VERIFY_RESIZE), then
# confirm_resize frees the old flavor's claim and revert_resize goes back to it (plugin_utils/compute/resize.py)
RESIZE = Action((ACTIVE, STOPPED), instances.RESIZE_PREP, None, "os_compute_api:servers:resize")
CONFIRM_RESIZE = Action((instances.RESIZED,), None, None, "os_compute_api:servers:confirm_resize")
REVERT_RESIZE = Action((instances.RESIZED,), instances.RESIZE_REVERTING, None, "os_compute_api:servers:revert_resize")
FLOWS = {"rebuild": REBUILD, "snapshot": SNAPSHOT, "resize": RESIZE, "confirm_resize": CONFIRM_RESIZE,
         "revert_resize": REVERT_RESIZE}


def plan(instance, action):
    """What ``action`` does to ``instance`` (a row): None when the instance is already where it leads, else the
    Action. Raises Conflict (Nova's InstanceInvalidState, HTTP 409) when the action is not allowed in the
    instance's vm_state or while another task runs on it.

    The same action found in its own task_state was interrupted after nova-api saved it (the controller died):
    it is carried on, as nova-compute's _init_instance finishes interrupted power actions at start-up, instead of
    leaving the instance blocked."""
    act = FLOWS.get(action) or ACTIONS[action]
    if instance.task_state is not None and not resumes(instance, act):
        raise Conflict("Cannot '%s' instance %s (%s) while it is in task_state %s."
                       % (action, instance.name, instance.uuid, instance.task_state))
    already = act.done is not None and not action.startswith("reboot") and instance.vm_state == act.done
    if already and instance.vm_state not in act.allowed:
        return None
    if instance.vm_state not in act.allowed:
        raise Conflict("Cannot '%s' instance %s (%s) while it is in vm_state %s (allowed: %s)."
                       % (action, instance.name, instance.uuid, instance.vm_state, ", ".join(act.allowed)))
    return act


# why an action on the root disk's image cannot work on a volume-backed instance
_VOLUME_BACKED = {
    "rebuild": "rebuilding it is not supported (its root disk is a volume, not an image's copy)",
    "snapshot": "its snapshot would be a volume snapshot, which is not supported (its root disk is not on the host)",
    "resize": "resizing a volume-backed instance is not supported yet (its root disk is a volume, not on the host)",
}


def root_disk_instance(conn, ref, auth, host, action, given_uuid=None):
    """nova-api's lookup for an action on an instance's root disk (rebuild, snapshot): the caller's instance ``ref``,
    on ``host``, ``given_uuid`` (the task's instance_uuid, when it set one) its own, the action allowed in its state,
    and its root disk a copy of an image on the host, not a volume. Returns the instance row."""
    instance = instances.get_instance(conn, ref, auth)
    instances.require_on_host(instance, host, "%s it on its host (playbooks/server_action.yml does)" % action)
    if given_uuid is not None and given_uuid != instance.uuid:
        raise InvalidRequest("instance_uuid %s is not instance %s's (%s)." % (given_uuid, instance.name, instance.uuid))
    plan(instance, action)
    if (instance.request or {}).get("boot_from_volume"):
        why = _VOLUME_BACKED[action]
        raise InvalidRequest("Instance %s (%s) boots from a volume: %s." % (instance.name, instance.uuid, why))
    return instance


def resumes(instance, act):
    """Whether ``instance`` is in the middle of ``act`` (its task_state is the action's own, a rebuild's spawn or a
    snapshot's upload): running the action again carries it on (a snapshot is made again, as nova-compute's
    _init_instance clears an interrupted snapshot's task_state)."""
    own = {REBUILD: (act.task, instances.REBUILD_SPAWNING), SNAPSHOT: (act.task, instances.IMAGE_UPLOADING),
           RESIZE: (act.task, instances.RESIZE_MIGRATING, instances.RESIZE_FINISH)}
    return instance.task_state in own.get(act, (act.task,))


def begin(conn, instance, act):
    """nova-api saves the action's task_state (compare-and-swap on task_state None: two actions at once get
    one Conflict). Returns the new row."""
    return instances.move_state(conn, instance.uuid, instance.vm_state, act.task, expected_task_state=None)


def finish(conn, instance, act, power_state):
    """The compute manager saves the result: vm_state ``act.done``, task_state None and the power state the
    hypervisor reports. Returns (vm_state, task_state)."""
    row = instances.move_state(conn, instance.uuid, act.done, None, expected_task_state=act.task,
                               power_state=power_state)
    return row.vm_state, row.task_state


def revert(conn, instance, act, power_state=None):
    """The driver call failed: the task_state goes back to None and the vm_state stays (Nova's
    ``reverts_task_state``); the power state is what the host reported, when it did."""
    fields = {"power_state": power_state} if power_state else {}
    row = instances.move_state(conn, instance.uuid, instance.vm_state, None, expected_task_state=act.task, **fields)
    return row.vm_state, row.task_state


def begin_rebuild(conn, instance, image):
    """nova-api's rebuild: task_state rebuilding (compare-and-swap on none) and the instance's image is the new one
    from now on. The vm_state stays until the spawn (a stopped instance is rebuilt stopped). The request keeps every
    image the instance had before, so that a re-run of boot.yml naming its first image still finds the same
    request. Returns the new row."""
    request = instance.request or {}
    before = [i for i in request.get("previous_images", []) if i != image.id]
    if instance.image_id and instance.image_id != image.id and instance.image_id not in before:
        before.append(instance.image_id)
    instances.update_request(conn, instance.uuid, previous_images=before)
    # in the same transaction: a conflict here rolls the request back too
    return instances.move_state(conn, instance.uuid, instance.vm_state, instances.REBUILDING, expected_task_state=None,
                                image_id=image.id)
