# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api's and nova-compute's bookkeeping of a resize (a new flavor for an instance, on its host): the migration
record, the claims held on the old and the new flavor until the resize is confirmed or reverted, and the
vm_state/task_state each step saves.

PRIVATE to the collection: may change at any time. Controller side only.

The flow, as Nova's (nova/compute/api.py ``resize``, ``confirm_resize``, ``revert_resize``; the compute manager's
``prep_resize``, ``resize_instance``, ``finish_resize``, ``confirm_resize``, ``revert_resize``):

- ``begin``: task_state resize_prep, a migration (status pre-migrating), the instance's claim handed to the
  migration's id, and a new claim of the new flavor for the instance, through the scheduler. Both claims are
  held until the end: on the same host, its usage counts the old and the new flavor, as Placement's migration
  allocations do.
- ``migrating`` / ``migrated``: the host powers the guest off and keeps its old disk aside (task_state
  resize_migrating); then the instance has the new flavor (task_state resize_finish, migration post-migrating).
- ``finished``: the domain runs (or is defined, for a stopped instance) with the new flavor: vm_state resized
  (the API's VERIFY_RESIZE), migration finished.
- ``confirmed``: the old disk removed; the migration's claim released; vm_state back to what it was.
- ``reverted``: the old disk and domain back; the new claim released and the migration's handed back to the
  instance; the old flavor again. A resize that fails before it finished is rolled back the same way, and its
  migration is in status error.
"""

from __future__ import annotations

import datetime

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    Conflict,
    InvalidRequest,
    NoValidHostError,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances, scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images

# a migration's statuses (nova/objects/migration.py's, the subset a resize walks through)
PRE_MIGRATING, MIGRATING, POST_MIGRATING, FINISHED = "pre-migrating", "migrating", "post-migrating", "finished"
CONFIRMING, CONFIRMED, REVERTING, REVERTED, FAILED = "confirming", "confirmed", "reverting", "reverted", "error"
OPEN = (PRE_MIGRATING, MIGRATING, POST_MIGRATING, FINISHED, CONFIRMING, REVERTING)
# nova.conf's resize_confirm_window default: 0, never confirmed automatically
DEFAULT_CONFIRM_WINDOW = 0


def open_migration(conn, instance_uuid):
    """The instance's resize in progress (a migration row in an OPEN status), or None."""
    mig = _db.table("migrations")
    return conn.execute(mig.select().where(mig.c.instance_uuid == instance_uuid, mig.c.status.in_(OPEN))
                        .order_by(mig.c.created_at.desc())).first()


def last_migration(conn, instance_uuid):
    mig = _db.table("migrations")
    return conn.execute(mig.select().where(mig.c.instance_uuid == instance_uuid)
                        .order_by(mig.c.created_at.desc())).first()


def _set_status(conn, migration_id, status, expected=None):
    mig = _db.table("migrations")
    query = mig.update().where(mig.c.id == migration_id)
    if expected is not None:
        query = query.where(mig.c.status.in_(expected if isinstance(expected, tuple) else (expected,)))
    if conn.execute(query.values(status=status, updated_at=_db.now())).rowcount != 1:
        row = conn.execute(mig.select().where(mig.c.id == migration_id)).first()
        raise Conflict("Migration %s changed under us: expected status %s, found %s."
                       % (migration_id, expected, row.status if row else "gone"))


def check_flavor(conn, instance, flavor_ref):
    """nova-api's checks of the new flavor: it exists, it is not the current one, its root disk is not smaller
    (a disk is never shrunk: Nova's CannotResizeDisk), the image still fits it, and the project's cores and RAM
    quota allows the growth. Returns the new flavor's row."""
    new = _compute_api.get_flavor(conn, flavor_ref)
    old = _compute_api.get_flavor(conn, instance.flavor_id)
    if new.id == old.id:
        raise InvalidRequest("Instance %s already has flavor %s: a resize needs another flavor."
                             % (instance.name, old.name))
    if (new.disk_gb or 0) < (old.disk_gb or 0):
        raise InvalidRequest("Resize of instance %s to flavor %s is not allowed: its root disk (%d GB) is smaller "
                             "than flavor %s's (%d GB), and a disk is never shrunk."
                             % (instance.name, new.name, new.disk_gb or 0, old.name, old.disk_gb or 0))
    image = _images.image_record(conn, instance.image_id) if instance.image_id else None
    if image is not None:
        _images.check_bootable(image, new)
    _quota.check(conn, instance.project_id, {"cores": max(new.vcpus - old.vcpus, 0),
                                             "ram": max(new.ram_mb - old.ram_mb, 0)})
    return new


def begin(db, instance, new_flavor, host, cfg, placement=None):
    """nova-api's resize and the scheduler's claim: task_state resize_prep (compare-and-swap on none), a
    migration on ``host`` (the source and the destination: the resize stays on the instance's host), then the
    claims (``claim_both``). A host where the new flavor does not fit puts everything back and raises
    NoValidHostError: the instance keeps its flavor, its claim and its state. Returns (migration row, instance
    row, selection)."""
    migration_id = _db.new_id()
    mig = _db.table("migrations")
    with db.tx() as conn:
        moved = actions.begin(conn, instance, actions.RESIZE)
        conn.execute(mig.insert().values(
            id=migration_id, instance_uuid=instance.uuid, migration_type="resize", status=PRE_MIGRATING,
            source_compute=host, dest_compute=host, old_flavor_id=instance.flavor_id, new_flavor_id=new_flavor.id,
            old_vm_state=instance.vm_state, created_at=_db.now()))
        migration = conn.execute(mig.select().where(mig.c.id == migration_id)).first()
    selection = claim_both(db, instance, migration, new_flavor, cfg, placement)
    return migration, moved, selection


def claim_both(db, instance, migration, new_flavor, cfg, placement=None):
    """The instance's claim handed to the migration, then the new flavor scheduled and claimed for the instance on
    the migration's destination. Each part is done once: a resize interrupted between them (the controller died)
    finishes what is missing when it is run again. A flavor that does not fit rolls everything back
    (NoValidHostError). Returns the scheduler's selection, or None when both claims were made already."""
    owner = {"project_id": instance.project_id, "user_id": instance.user_id}
    with db.tx() as conn:
        moved_already = _placement.existing_allocation(conn, migration.id) is not None
        claimed_already = moved_already and _placement.existing_allocation(conn, instance.uuid) is not None
    if claimed_already:
        return None
    if not moved_already:
        _placement.move_allocation(db, instance.uuid, migration.id, placement, **owner)
    host = migration.dest_compute
    try:
        with db.tx() as conn:
            image = _images.image_record(conn, instance.image_id) if instance.image_id else None
        spec = _compute_api.request_spec(new_flavor, image, instance.request, None)
        selection = scheduling.select(db, spec, cfg, [host], placement)
        _placement.claim(db, instance.uuid, spec, [host], placement=placement, **owner)
    except (NoValidHostError, ValueError) as exc:
        _undo_begin(db, instance, migration.id, placement, owner)
        if isinstance(exc, ValueError):
            raise InvalidRequest(str(exc)) from exc
        raise NoValidHostError("Flavor %s does not fit on host %s beside the claim the instance holds until the "
                               "resize is confirmed: %s" % (new_flavor.name, host, exc),
                               rejected=exc.details.get("rejected") or {}) from exc
    return selection


def _undo_begin(db, instance, migration_id, placement, owner):
    """The claim failed: the instance's claim comes back from the migration, which ends in error, and the
    task_state goes back to none."""
    _placement.move_allocation(db, migration_id, instance.uuid, placement, consumer_type="INSTANCE", **owner)
    with db.tx() as conn:
        _set_status(conn, migration_id, FAILED)
        instances.move_state(conn, instance.uuid, instance.vm_state, None, expected_task_state=instances.RESIZE_PREP)


def migrating(conn, instance, migration):
    """The host starts (nova-compute's resize_instance): task_state resize_migrating, migration migrating."""
    _set_status(conn, migration.id, MIGRATING, expected=(PRE_MIGRATING, MIGRATING, POST_MIGRATING))
    return instances.move_state(conn, instance.uuid, instance.vm_state, instances.RESIZE_MIGRATING,
                                expected_task_state=(instances.RESIZE_PREP, instances.RESIZE_MIGRATING,
                                                     instances.RESIZE_FINISH))


def migrated(conn, instance, migration):
    """The guest is off and its old disk kept aside: the instance has the new flavor from now on (finish_resize),
    task_state resize_finish, migration post-migrating. The request remembers the flavors it had, so that a
    re-run of boot.yml naming the first flavor still finds the same request."""
    _set_status(conn, migration.id, POST_MIGRATING, expected=(MIGRATING, POST_MIGRATING))
    new = _compute_api.get_flavor(conn, migration.new_flavor_id)
    old = _compute_api.get_flavor(conn, migration.old_flavor_id)
    request = instance.request or {}
    before = [f for f in request.get("previous_flavors", []) if f != new.name]
    if old.name not in before:
        before.append(old.name)
    instances.update_request(conn, instance.uuid, previous_flavors=before)
    return instances.move_state(conn, instance.uuid, instance.vm_state, instances.RESIZE_FINISH,
                                expected_task_state=(instances.RESIZE_MIGRATING, instances.RESIZE_FINISH),
                                flavor_id=new.id, power_state="SHUTDOWN")


def finished(conn, instance, state):
    """The domain runs with the new flavor (``state`` running; defined for a stopped instance): vm_state resized,
    task_state none, migration finished. Returns (vm_state, task_state)."""
    migration = open_migration(conn, instance.uuid)
    if migration is not None:
        _set_status(conn, migration.id, FINISHED, expected=(POST_MIGRATING, FINISHED))
    row = instances.move_state(conn, instance.uuid, instances.RESIZED, None,
                               expected_task_state=instances.RESIZE_FINISH,
                               power_state="RUNNING" if state == "running" else "SHUTDOWN")
    return row.vm_state, row.task_state


def require_open(conn, instance, action):
    """The migration a confirm or revert acts on; NotFound when the instance has none open."""
    migration = open_migration(conn, instance.uuid)
    if migration is None:
        raise NotFound("Instance %s (%s) has no resize in progress to %s." % (instance.name, instance.uuid, action))
    return migration


def begin_confirm(conn, instance, migration):
    """nova-api's confirm_resize: migration confirming (compare-and-swap on finished: two confirms get one
    Conflict)."""
    _set_status(conn, migration.id, CONFIRMING, expected=(FINISHED, CONFIRMING))


def confirmed(db, instance, migration, power_state, placement=None):
    """The old disk is gone from the host: the migration's claim (the old flavor) is released, the migration
    confirmed, and the instance back in the vm_state it had before the resize (active or stopped, as its guest
    is now). Returns (vm_state, task_state)."""
    _placement.release(db, migration.id, placement=placement)
    with db.tx() as conn:
        _set_status(conn, migration.id, CONFIRMED, expected=CONFIRMING)
        vm_state = instances.ACTIVE if power_state == "RUNNING" else instances.STOPPED
        row = instances.move_state(conn, instance.uuid, vm_state, None, expected_task_state=None,
                                   power_state=power_state)
    return row.vm_state, row.task_state


def begin_revert(conn, instance, migration):
    """nova-api's revert_resize (vm_state resized) or the rollback of a resize that failed on the way (any of its
    task_states): task_state resize_reverting, migration reverting. Returns the instance row."""
    # not while a confirm runs (confirming): one of the two wins
    _set_status(conn, migration.id, REVERTING, expected=(PRE_MIGRATING, MIGRATING, POST_MIGRATING, FINISHED, REVERTING))
    return instances.move_state(conn, instance.uuid, instance.vm_state, instances.RESIZE_REVERTING,
                                expected_task_state=(None, instances.RESIZE_PREP, instances.RESIZE_MIGRATING,
                                                     instances.RESIZE_FINISH, instances.RESIZE_REVERTING))


def reverted(db, instance, migration, power_state, placement=None, fault=None):
    """The old disk and domain are back: the new flavor's claim is released and the migration's handed back to
    the instance, which has its old flavor again. A revert asked for ends the migration reverted; a rollback
    (``fault``: why the resize failed) in error, with the fault on the instance. The vm_state is the one the
    instance had before. Returns (vm_state, task_state)."""
    with db.tx() as conn:
        moved = _placement.existing_allocation(conn, migration.id) is not None
    if moved:   # else the instance's claim never left it (the resize stopped before): it is the old one, kept
        _placement.release(db, instance.uuid, placement=placement)
        _placement.move_allocation(db, migration.id, instance.uuid, placement, project_id=instance.project_id,
                                   user_id=instance.user_id, consumer_type="INSTANCE")
    with db.tx() as conn:
        _set_status(conn, migration.id, FAILED if fault else REVERTED, expected=REVERTING)
        old = _compute_api.get_flavor(conn, migration.old_flavor_id)
        fields = {"fault": {"message": fault, "step": "resize", "host": migration.source_compute,
                            "at": instances.now_iso()}} if fault else {"fault": sa.null()}
        row = instances.move_state(conn, instance.uuid, migration.old_vm_state, None,
                                   expected_task_state=instances.RESIZE_REVERTING, flavor_id=old.id,
                                   power_state=power_state, **fields)
    return row.vm_state, row.task_state


def expired(conn, host, window, now=None):
    """The resizes on ``host`` waiting for a confirm for ``window`` seconds or more (nova-compute's
    ``_poll_unconfirmed_resizes``, nova.conf's ``resize_confirm_window``; 0 = never): a list of
    (instance uuid, instance name)."""
    if not window:
        return []
    mig, inst = _db.table("migrations"), _db.table("instances")
    limit = (now or _db.now()) - datetime.timedelta(seconds=window)
    rows = conn.execute(sa.select(inst.c.uuid, inst.c.name).select_from(
        mig.join(inst, inst.c.uuid == mig.c.instance_uuid)).where(
            mig.c.status == FINISHED, mig.c.dest_compute == host, mig.c.updated_at <= limit,
            inst.c.vm_state == instances.RESIZED, inst.c.task_state.is_(None), inst.c.deleted == 0)
        .order_by(mig.c.updated_at)).fetchall()
    return [(r.uuid, r.name) for r in rows]


def release_open(db, ref, auth, placement=None):
    """The open resize of instance ``ref``, which is being deleted: the migration's claim released, the migration
    confirmed (Nova confirms the resize of an instance it deletes). Returns the migration's id or None."""
    with db.tx() as conn:
        row = instances.find_instance(conn, ref, auth)
        migration = open_migration(conn, row.uuid) if row is not None else None
    if migration is None:
        return None
    _placement.release(db, migration.id, placement=placement)
    with db.tx() as conn:
        _set_status(conn, migration.id, CONFIRMED)
    return migration.id
