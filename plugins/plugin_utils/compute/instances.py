# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The instance record: its vm_state/task_state machine, its fault, its step log (Nova's
``objects.Instance`` and ``instance_actions``). Every service that reads or moves an instance does it
through here.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import time

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import user_data_summary
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound

# nova/compute/vm_states.py and task_states.py (the subset the boot flow and the power actions walk through)
BUILDING, ACTIVE, ERROR, DELETED = "building", "active", "error", "deleted"
STOPPED, PAUSED, SUSPENDED, RESIZED = "stopped", "paused", "suspended", "resized"
SCHEDULING, NETWORKING, BLOCK_DEVICE_MAPPING, SPAWNING, DELETING = (
    "scheduling", "networking", "block_device_mapping", "spawning", "deleting")
POWERING_OFF, POWERING_ON, REBOOTING, REBOOTING_HARD = "powering-off", "powering-on", "rebooting", "rebooting_hard"
PAUSING, UNPAUSING, SUSPENDING, RESUMING = "pausing", "unpausing", "suspending", "resuming"
REBUILDING, REBUILD_SPAWNING = "rebuilding", "rebuild_spawning"
IMAGE_SNAPSHOT, IMAGE_UPLOADING = "image_snapshot", "image_uploading"
RESIZE_PREP, RESIZE_MIGRATING, RESIZE_FINISH, RESIZE_REVERTING = (
    "resize_prep", "resize_migrating", "resize_finish", "resize_reverting")
TASK_STATES = (SCHEDULING, NETWORKING, BLOCK_DEVICE_MAPPING, SPAWNING, DELETING, POWERING_OFF, POWERING_ON,
               REBOOTING, REBOOTING_HARD, PAUSING, UNPAUSING, SUSPENDING, RESUMING, REBUILDING, REBUILD_SPAWNING,
               IMAGE_SNAPSHOT, IMAGE_UPLOADING, RESIZE_PREP, RESIZE_MIGRATING, RESIZE_FINISH, RESIZE_REVERTING)
VM_STATES = (BUILDING, ACTIVE, STOPPED, PAUSED, SUSPENDED, RESIZED, ERROR, DELETED)
# nova/api/openstack/common.py's _STATE_MAP: the API status of a vm_state, and of some of its task_states
_STATUS = {BUILDING: "BUILD", ACTIVE: "ACTIVE", STOPPED: "SHUTOFF", PAUSED: "PAUSED", SUSPENDED: "SUSPENDED",
           RESIZED: "VERIFY_RESIZE", ERROR: "ERROR", DELETED: "DELETED"}
_TASK_STATUS = {REBOOTING: "REBOOT", REBOOTING_HARD: "HARD_REBOOT", REBUILDING: "REBUILD", REBUILD_SPAWNING: "REBUILD",
                RESIZE_PREP: "RESIZE", RESIZE_MIGRATING: "RESIZE", RESIZE_FINISH: "RESIZE"}


def find_instance(conn, ref, auth=None, include_deleted=False):
    """Instance by uuid or name, limited to the caller's project unless admin."""
    inst = _db.table("instances")
    query = inst.select().where(sa.or_(inst.c.uuid == ref, inst.c.name == ref))
    if not include_deleted:
        query = query.where(inst.c.deleted == 0)
    if auth is not None and "admin" not in auth.roles:
        query = query.where(inst.c.project_id == auth.project_id)
    elif auth is not None:
        # an admin's name lookup is scoped to its own project; a UUID reaches any project
        query = query.where(sa.or_(inst.c.uuid == ref, inst.c.project_id == auth.project_id))
    rows = conn.execute(query).fetchall()
    if not rows:
        return None
    if len(rows) > 1:
        raise Conflict("Multiple instances match %s; use the UUID." % ref)
    return rows[0]


def get_instance(conn, ref, auth=None):
    row = find_instance(conn, ref, auth)
    if row is None:
        raise NotFound("Instance %s could not be found." % ref)
    return row


def require_not_running(row, what):
    """Refuse to release what a still-running guest uses (its domain is removed first)."""
    if row.power_state == "RUNNING":
        raise Conflict("Instance %s is still running on %s: cannot %s before its domain is removed "
                       "(playbooks/delete.yml does it in order)." % (row.name, row.host, what))


def require_on_host(row, host, hint):
    """Refuse a host step for an instance that is not on ``host`` (the task's target): ``hint`` says what to do."""
    if row.host != host:
        raise InvalidRequest("Instance %s (%s) is on host %s, not on %s: %s."
                             % (row.name, row.uuid, row.host or "none", host, hint))


def move_state(conn, uuid, vm_state, task_state, expected_task_state=(), **fields):
    """Compare-and-swap on task_state (Nova's ``expected_task_state``). Returns the new row."""
    inst = _db.table("instances")
    query = inst.update().where(inst.c.uuid == uuid, inst.c.deleted == 0)
    if expected_task_state != ():
        expected = expected_task_state if isinstance(expected_task_state, (list, tuple)) else (expected_task_state,)
        conds = [inst.c.task_state.is_(None) if e is None else inst.c.task_state == e for e in expected]
        query = query.where(sa.or_(*conds))
    res = conn.execute(query.values(vm_state=vm_state, task_state=task_state, updated_at=_db.now(), **fields))
    if res.rowcount != 1:
        row = conn.execute(inst.select().where(inst.c.uuid == uuid)).first()
        raise Conflict("Instance %s changed under us: expected task_state %s, found %s/%s."
                       % (uuid, expected_task_state, row.vm_state if row else "gone", row.task_state if row else "-"))
    return conn.execute(inst.select().where(inst.c.uuid == uuid)).first()


def update_request(conn, uuid, **items):
    """Merge ``items`` into the instance's request record (what the build needs to remember: the retry
    bookkeeping, where the host put the console log)."""
    inst = _db.table("instances")
    request = conn.execute(sa.select(inst.c.request).where(inst.c.uuid == uuid)).scalar() or {}
    conn.execute(inst.update().where(inst.c.uuid == uuid).values(request=dict(request, **items), updated_at=_db.now()))


def set_power_state(conn, uuid, power_state, **fields):
    """The power state the hypervisor reports (Nova's ``power_state``), with further instance columns."""
    inst = _db.table("instances")
    conn.execute(inst.update().where(inst.c.uuid == uuid).values(power_state=power_state, updated_at=_db.now(),
                                                                 **fields))


def set_fault(conn, uuid, message, step, host):
    """vm_state ERROR with a recorded fault (like add_instance_fault_from_exc)."""
    record_fault(conn, uuid, {"message": message, "step": step, "host": host, "at": now_iso()})


def record_fault(conn, uuid, fault, **fields):
    """vm_state ERROR, task_state None and ``fault`` (a dict with at least message, step, host, at);
    ``fields`` are further instance columns to write (e.g. ``host=None`` once nothing is left on it)."""
    inst = _db.table("instances")
    conn.execute(inst.update().where(inst.c.uuid == uuid, inst.c.deleted == 0).values(
        vm_state=ERROR, task_state=None, updated_at=_db.now(), fault=fault, **fields))


def now_iso():
    """The time as the fault records it (UTC, ISO 8601 with Z)."""
    return _db.now().isoformat() + "Z"


def record_step(conn, instance_uuid, seed_steps, service, action, host, before, after, changed, ms):
    conn.execute(_db.table("instance_steps").insert().values(
        instance_uuid=instance_uuid, seed_steps=seed_steps, service=service, action=action, host=host,
        vm_state_from=before[0], task_state_from=before[1], vm_state=after[0], task_state=after[1],
        changed=bool(changed), ms=int(ms), created_at=_db.now()))


def step_row(instance, seed_steps, service, action, host, before, after, changed, ms, uuid=None, recorded=False):
    """The ``bootflow_step`` result entry the request_flow callback prints (``recorded``: the same step was
    written into the instance's step log, which its diagram then reads back)."""
    def fmt(state):
        return "%s/%s" % (state[0] or "-", state[1] or "none")
    return {
        "instance": instance, "seed_steps": seed_steps, "service": service, "action": action,
        "host": host, "from": fmt(before), "to": fmt(after), "changed": bool(changed), "ms": int(ms),
        "uuid": uuid, "recorded": bool(recorded),
    }


def instance_dict(row):
    """The instance record as a task returns it. The request's user data (it may hold secrets) is replaced by
    its size and sha256 (``request.user_data_size``, ``request.user_data_sha256``)."""
    out = _db.row_dict(row)
    if isinstance(out.get("request"), dict):
        request = dict(out["request"])
        request["user_data_size"], request["user_data_sha256"] = user_data_summary(request.pop("user_data", None))
        out["request"] = request
    out["domain_name"] = layout.domain_name(row.uuid)
    out["status"] = api_status(row.vm_state, row.task_state)
    return out


def api_status(vm_state, task_state):
    """The status the API shows (BUILD, ACTIVE, REBOOT, HARD_REBOOT, REBUILD, RESIZE, VERIFY_RESIZE, REVERT_RESIZE,
    SHUTOFF, PAUSED, SUSPENDED, ERROR, DELETED)."""
    if vm_state == ACTIVE and task_state in _TASK_STATUS:
        return _TASK_STATUS[task_state]
    if vm_state in (STOPPED, ERROR) and task_state in (REBUILDING, REBUILD_SPAWNING):
        return "REBUILD"
    if vm_state == STOPPED and task_state in (RESIZE_PREP, RESIZE_MIGRATING, RESIZE_FINISH):
        return "RESIZE"
    if task_state == RESIZE_REVERTING:
        return "REVERT_RESIZE"
    return _STATUS.get(vm_state) or (vm_state or "unknown").upper()


def soft_delete(conn, uuid):
    """Mark the record deleted (frees the name). The instance leaves its server group, as Nova's
    ``instance_destroy`` deletes the group membership."""
    inst, members = _db.table("instances"), _db.table("server_group_members")
    conn.execute(inst.update().where(inst.c.uuid == uuid, inst.c.deleted == 0).values(
        vm_state=DELETED, task_state=None, power_state="NOSTATE", deleted_at=_db.now(),
        deleted=int(time.time() * 1000), updated_at=_db.now()))
    conn.execute(members.delete().where(members.c.instance_uuid == uuid))
