# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's bookkeeping on the controller: what the instance record (and its volumes' and
ports' records) become once a host step succeeded (Nova's compute manager saves these states
around each driver call). The host steps' action plugins call one function each.

PRIVATE to the collection: may change at any time. Controller side only. Every function takes an
open connection (``db.tx()``) and returns the instance's new (vm_state, task_state), or None when
nothing changed.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import resize as _resize
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.instances import (
    BLOCK_DEVICE_MAPPING,
    BUILDING,
    DELETING,
    NETWORKING,
    SCHEDULING,
    SPAWNING,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes


def _state(row):
    return row.vm_state, row.task_state


def image_ready(conn, instance, console_log=None):
    """The image is in the host's cache and the instance's directory made: compute took over from the
    scheduler (Nova's ``_do_build_and_run_instance``: task_state None). ``console_log``: where the host
    put the guest's console log (the conductor's spec says so from now on)."""
    if instance.vm_state != BUILDING:
        return None
    if console_log and (instance.request or {}).get("console_log") != console_log:
        instances.update_request(conn, instance.uuid, console_log=console_log)
    return _state(instances.move_state(conn, instance.uuid, BUILDING, None,
                                       expected_task_state=(SCHEDULING, None, NETWORKING, BLOCK_DEVICE_MAPPING)))


def port_bound(conn, port_id, host, instance):
    """dnsmasq on ``host`` holds the port's reservation: the port is ACTIVE there; a building
    instance is networking."""
    _networking.bind_port(conn, port_id, host)
    if instance is not None and instance.vm_state == BUILDING and instance.task_state != NETWORKING:
        return _state(instances.move_state(conn, instance.uuid, BUILDING, NETWORKING))
    return None


def volume_ready(conn, volume, host, size_gb, instance):
    """The volume exists in ``host``'s pool with ``size_gb``: a new one becomes available there; a
    building instance is mapping its block devices."""
    if volume.status == "creating":
        _volumes.set_status(conn, volume.id, "available", host=host)
    if size_gb != volume.size_gb:
        _volumes.set_size(conn, volume.id, size_gb)
    if instance is not None and instance.vm_state == BUILDING and instance.task_state != BLOCK_DEVICE_MAPPING:
        return _state(instances.move_state(conn, instance.uuid, BUILDING, BLOCK_DEVICE_MAPPING))
    return None


def volume_deleted(conn, volume):
    """The volume is gone from its host's pool."""
    _volumes.set_status(conn, volume.id, "deleting")
    _volumes.set_status(conn, volume.id, "deleted", instance_uuid=None, device=None)


def spawning(conn, instance):
    """Nova saves task_state SPAWNING before ``driver.spawn()``. Returns the new row."""
    return instances.move_state(conn, instance.uuid, BUILDING, SPAWNING)


def spawned(conn, instance):
    """The domain runs: the volumes reserved for it are in-use, the instance ACTIVE."""
    for vol in _volumes.instance_volumes(conn, instance.uuid):
        if vol.status == "attaching":
            _volumes.set_status(conn, vol.id, "in-use")
    if instance.host:
        _placement.reset_failed_builds(conn, instance.host)
    return _state(instances.move_state(conn, instance.uuid, instances.ACTIVE, None, expected_task_state=SPAWNING,
                                       power_state="RUNNING", launched_at=_db.now()))


def domain_step_done(conn, host, instance, state):
    """The domain step succeeded on ``host`` (``state``: running or absent). libvirt answered there, which is
    the host's heartbeat (the next boot's step 8 need not ask it again so soon); then what the instance becomes."""
    _placement.seen(conn, host)
    if instance.task_state == instances.REBUILD_SPAWNING and state in ("running", "defined"):
        return rebuilt(conn, instance, state)
    if instance.task_state == instances.RESIZE_FINISH and state in ("running", "defined"):
        return _resize.finished(conn, instance, state)
    if state == "running" and instance.vm_state == BUILDING:
        return spawned(conn, instance)
    if state == "absent":
        return domain_removed(conn, instance)
    return None


def rebuild_spawning(conn, instance):
    """The host powered the guest off and removed its old root disk and config drive: the new image's spawn is
    next (Nova's REBUILD_SPAWNING)."""
    return _state(instances.move_state(conn, instance.uuid, instance.vm_state, instances.REBUILD_SPAWNING,
                                       expected_task_state=(instances.REBUILDING, instances.REBUILD_SPAWNING),
                                       power_state="SHUTDOWN"))


def rebuilt(conn, instance, state):
    """The domain is defined again on the new root disk (``state`` running, or defined for an instance that was
    stopped): the vm_state it is to have after the rebuild, task_state none."""
    running = state == "running"
    vm_state = instances.ACTIVE if running else instances.STOPPED
    return _state(instances.move_state(conn, instance.uuid, vm_state, None, expected_task_state=instances.REBUILD_SPAWNING,
                                       power_state="RUNNING" if running else "SHUTDOWN",
                                       fault=_db.sa.null()))   # SQL NULL: None would be JSON 'null'


def domain_removed(conn, instance):
    """The domain is gone: its volumes are available again, the instance has no power state. A failed
    build being undone keeps its task_state (the conductor decides what comes next); any other
    instance is being deleted."""
    for vol in _volumes.instance_volumes(conn, instance.uuid):
        if vol.status == "in-use":
            _volumes.set_status(conn, vol.id, "available")
    task_state = instance.task_state if instance.vm_state == BUILDING else DELETING
    instances.set_power_state(conn, instance.uuid, "NOSTATE", task_state=task_state)
    return instance.vm_state, task_state
