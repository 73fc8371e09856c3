# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A resize's bookkeeping on a real database, SQLite and PostgreSQL (plugin_utils/compute/resize.py): nova-api's
checks of the new flavor, the claims on the old and the new flavor held together until a confirm or a revert
(the host's usage exact at every step), the migration's statuses, the vm_state/task_state of each step, a claim
that does not fit put back with nothing changed, the rollback of a failed resize, the resizes waiting longer than
the confirm window, and the release of a resize never confirmed when its instance is deleted. Placement's move of
an allocation between consumers is tested against a real Placement in test_placement.py."""

from __future__ import annotations

import datetime
from collections import namedtuple

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    Conflict,
    InvalidRequest,
    NoValidHostError,
    NotFound,
    QuotaExceeded,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances, manager, scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import resize as _resize
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from test_faults import cloud as world  # noqa: F401  # pylint: disable=unused-import  # the reschedule world, a fixture

CFG = scheduling.config(None, {}, 1, 3, 0)
Row = namedtuple("Row", "name uuid vm_state task_state")


@pytest.fixture()
def cloud(world):
    """The reschedule world of test_faults.py (hv1: 2048 MB, 512 reserved) with the flavors a resize goes between."""
    for name, vcpus, ram, disk in (("small", 1, 256, 1), ("big", 2, 512, 2), ("huge", 2, 1536, 2), ("thin", 1, 256, 0)):
        _compute_api.ensure_flavor(world["db"], name, vcpus, ram, disk, {}, "present", False)
    return world


def active_on_hv1(cloud, name="vm1", vm_state="active"):
    """An instance built on hv1 with flavor small: its claim there, vm_state active (or stopped)."""
    db, auth = cloud["db"], cloud["auth"]
    _c, row = _compute_api.create(db, auth, name, "small", "img", ["net"], 0, None, False)
    _placement.claim(db, row.uuid, _scheduler.RequestSpec(vcpus=1, memory_mb=256, root_gb=1), ["hv1"])
    with db.tx() as conn:
        return instances.move_state(conn, row.uuid, vm_state, None, host="hv1")


def usage(db):
    """hv1's usage (vcpus, memory_mb, disk_gb) summed over its allocations, and who holds them."""
    with db.tx() as conn:
        rows = conn.execute(_db.table("allocations").select()).fetchall()
    return (sum(r.vcpus for r in rows), sum(r.memory_mb for r in rows), sum(r.disk_gb for r in rows)), \
        sorted(r.consumer_id for r in rows)


def row(db, uuid):
    with db.tx() as conn:
        inst = instances.get_instance(conn, uuid)
        return inst, _compute_api.get_flavor(conn, inst.flavor_id).name, _resize.last_migration(conn, uuid)


def flavor(db, name):
    with db.tx() as conn:
        return _compute_api.get_flavor(conn, name)


def resized(cloud, inst, to="big"):
    """The whole resize up to VERIFY_RESIZE, as the action plugin and the domain step drive it."""
    db = cloud["db"]
    migration, moved, _sel = _resize.begin(db, inst, flavor(db, to), "hv1", CFG)
    with db.tx() as conn:
        moved = _resize.migrating(conn, moved, migration)
        moved = _resize.migrated(conn, moved, migration)
        manager.domain_step_done(conn, "hv1", moved, "running" if inst.vm_state == "active" else "defined")
    return migration


def test_a_resize_holds_both_claims_until_the_confirm_frees_the_old_one(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud)
    assert usage(db) == ((1, 256, 1), [inst.uuid])
    migration, moved, selection = _resize.begin(db, inst, flavor(db, "big"), "hv1", CFG)
    assert selection.host == "hv1" and (moved.vm_state, moved.task_state) == ("active", "resize_prep")
    assert (migration.status, migration.source_compute, migration.dest_compute, migration.old_vm_state) == (
        "pre-migrating", "hv1", "hv1", "active")
    # the old flavor's claim is the migration's, the new one the instance's: the host counts both
    assert usage(db) == ((3, 768, 3), sorted([inst.uuid, migration.id]))
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, migration.id).memory_mb == 256
        assert _placement.existing_allocation(conn, inst.uuid).memory_mb == 512
        moved = _resize.migrating(conn, moved, migration)
        assert (moved.task_state, instances.api_status(moved.vm_state, moved.task_state)) == ("resize_migrating", "RESIZE")
        moved = _resize.migrated(conn, moved, migration)
        assert moved.task_state == "resize_finish" and moved.power_state == "SHUTDOWN"
        assert moved.request["previous_flavors"] == ["small"]
        assert manager.domain_step_done(conn, "hv1", moved, "running") == ("resized", None)
    inst_now, name, mig = row(db, inst.uuid)
    assert (name, mig.status, instances.api_status(inst_now.vm_state, inst_now.task_state)) == (
        "big", "finished", "VERIFY_RESIZE")
    assert usage(db) == ((3, 768, 3), sorted([inst.uuid, migration.id]))
    # confirm: the migration's claim goes, the instance active again with the new flavor; a revert cannot start
    # while the confirm runs
    with db.tx() as conn:
        _resize.begin_confirm(conn, inst_now, mig)
        _resize.begin_confirm(conn, inst_now, mig)         # the same confirm, carried on after a crash
    with db.tx() as conn, pytest.raises(Conflict, match="expected status"):
        _resize.begin_revert(conn, inst_now, mig)
    assert _resize.confirmed(db, inst_now, mig, "RUNNING") == ("active", None)
    assert usage(db) == ((2, 512, 2), [inst.uuid])
    inst_now, name, mig = row(db, inst.uuid)
    assert (name, mig.status, inst_now.power_state) == ("big", "confirmed", "RUNNING")


def test_a_revert_gives_back_the_old_flavor_and_its_claim_and_frees_the_new_one(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud)
    migration = resized(cloud, inst)
    inst_now, _name, mig = row(db, inst.uuid)
    with db.tx() as conn:
        moved = _resize.begin_revert(conn, inst_now, mig)
    assert (moved.task_state, instances.api_status(moved.vm_state, moved.task_state)) == (
        "resize_reverting", "REVERT_RESIZE")
    assert _resize.reverted(db, moved, mig, "RUNNING") == ("active", None)
    assert usage(db) == ((1, 256, 1), [inst.uuid])
    inst_now, name, mig = row(db, inst.uuid)
    assert (name, mig.id, mig.status, inst_now.fault) == ("small", migration.id, "reverted", None)


def test_a_stopped_instance_is_resized_stopped_and_confirmed_stopped(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud, vm_state="stopped")
    resized(cloud, inst)
    inst_now, _name, mig = row(db, inst.uuid)
    assert (inst_now.vm_state, inst_now.power_state, mig.old_vm_state) == ("resized", "SHUTDOWN", "stopped")
    with db.tx() as conn:
        _resize.begin_confirm(conn, inst_now, mig)
    assert _resize.confirmed(db, inst_now, mig, "SHUTDOWN") == ("stopped", None)


def test_a_new_flavor_that_does_not_fit_beside_the_old_claim_changes_nothing(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud)
    active_on_hv1(cloud, "vm2")
    before = usage(db)
    # huge (1536 MB) fits the host's 2048 MB alone, but not beside the two small claims (2 x 256)
    with pytest.raises(NoValidHostError, match="does not fit on host hv1 beside the claim"):
        _resize.begin(db, inst, flavor(db, "huge"), "hv1", CFG)
    assert usage(db) == before
    inst_now, name, mig = row(db, inst.uuid)
    assert (inst_now.vm_state, inst_now.task_state, name, mig.status) == ("active", None, "small", "error")
    with db.tx() as conn:
        assert _resize.open_migration(conn, inst.uuid) is None


@pytest.mark.parametrize("to,match", [
    ("small", "already has flavor small"),
    ("thin", r"root disk \(0 GB\) is smaller"),
    ("nope", "Flavor nope could not be found"),
])
def test_nova_api_refuses_a_flavor_it_cannot_resize_to(cloud, to, match):
    inst = active_on_hv1(cloud)
    with cloud["db"].tx() as conn, pytest.raises((InvalidRequest, NotFound), match=match):
        _resize.check_flavor(conn, inst, to)


def test_the_growth_must_fit_the_quota(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud)
    _quota.set_limits(db, inst.project_id, {"cores": 1}, False)
    with db.tx() as conn, pytest.raises(QuotaExceeded, match="Quota exceeded for cores: Requested 1"):
        _resize.check_flavor(conn, inst, "big")


@pytest.mark.parametrize("vm_state", ["paused", "suspended", "error", "resized"])
def test_a_resize_is_refused_where_nova_refuses_it(vm_state):
    with pytest.raises(Conflict, match="Cannot 'resize' instance web-1 .* vm_state %s" % vm_state):
        actions.plan(Row("web-1", "u-1", vm_state, None), "resize")


def test_confirm_and_revert_need_a_resized_instance():
    for action in ("confirm_resize", "revert_resize"):
        with pytest.raises(Conflict, match="vm_state active"):
            actions.plan(Row("web-1", "u-1", "active", None), action)
        assert actions.plan(Row("web-1", "u-1", "resized", None), action) is actions.FLOWS[action]


def test_a_resize_that_failed_on_its_way_is_rolled_back_with_its_fault(cloud):
    db = cloud["db"]
    inst = active_on_hv1(cloud)
    migration, moved, _sel = _resize.begin(db, inst, flavor(db, "big"), "hv1", CFG)
    with db.tx() as conn:
        moved = _resize.migrating(conn, moved, migration)
        moved = _resize.migrated(conn, moved, migration)      # the spawn with the new flavor fails next
        moved = _resize.begin_revert(conn, moved, _resize.open_migration(conn, inst.uuid))
    assert _resize.reverted(db, moved, migration, "RUNNING", fault="resize to big failed at 'domain'") == ("active", None)
    inst_now, name, mig = row(db, inst.uuid)
    assert (name, mig.status, inst_now.fault["message"], inst_now.fault["step"]) == (
        "small", "error", "resize to big failed at 'domain'", "resize")
    assert usage(db) == ((1, 256, 1), [inst.uuid])


def test_resizes_waiting_longer_than_the_window_are_the_ones_to_confirm(cloud):
    db = cloud["db"]
    old, new = active_on_hv1(cloud, "old"), active_on_hv1(cloud, "new")
    m_old, _m_new = resized(cloud, old, "big"), resized(cloud, new, "big")
    with db.tx() as conn:
        conn.execute(_db.table("migrations").update().where(_db.table("migrations").c.id == m_old.id)
                     .values(updated_at=_db.now() - datetime.timedelta(seconds=600)))
        assert _resize.expired(conn, "hv1", 300) == [(old.uuid, "old")]
        assert _resize.expired(conn, "hv1", 0) == []            # 0: never confirmed automatically
        assert _resize.expired(conn, "hv2", 300) == []
        assert sorted(_resize.expired(conn, "hv1", 1, now=_db.now() + datetime.timedelta(seconds=5))) == sorted(
            [(old.uuid, "old"), (new.uuid, "new")])


def test_deleting_a_resized_instance_releases_the_old_claim_too(cloud):
    db, auth = cloud["db"], cloud["auth"]
    inst = active_on_hv1(cloud)
    migration = resized(cloud, inst)
    assert _resize.release_open(db, inst.uuid, auth) == migration.id
    assert usage(db) == ((2, 512, 2), [inst.uuid])
    assert row(db, inst.uuid)[2].status == "confirmed"
    assert _resize.release_open(db, inst.uuid, auth) is None


def test_a_boot_rerun_naming_the_first_flavor_finds_the_resized_instance(cloud):
    db, auth = cloud["db"], cloud["auth"]
    inst = active_on_hv1(cloud)
    resized(cloud, inst)
    for name in ("small", "big"):
        changed, again = _compute_api.create(db, auth, "vm1", name, "img", ["net"], 0, None, False)
        assert not changed and again.uuid == inst.uuid
    with pytest.raises(Conflict, match="different flavor"):
        _compute_api.create(db, auth, "vm1", "huge", "img", ["net"], 0, None, False)


def test_a_resize_interrupted_between_its_two_claims_finishes_them_once(cloud):
    """The controller died after the old claim passed to the migration and before the new one was made: running the
    claims again makes only the missing one; run once more, nothing changes. A rollback at that point gives the
    instance its old claim back and nothing else."""
    db = cloud["db"]
    inst, big = active_on_hv1(cloud), flavor(db, "big")
    with db.tx() as conn:
        instances.move_state(conn, inst.uuid, "active", "resize_prep", expected_task_state=None)
        conn.execute(_db.table("migrations").insert().values(
            id="m-1", instance_uuid=inst.uuid, migration_type="resize", status="pre-migrating", source_compute="hv1",
            dest_compute="hv1", old_flavor_id=inst.flavor_id, new_flavor_id=big.id,
            old_vm_state="active", created_at=_db.now()))
        migration = _resize.open_migration(conn, inst.uuid)
    _placement.move_allocation(db, inst.uuid, "m-1")
    assert usage(db) == ((1, 256, 1), ["m-1"])
    assert _resize.claim_both(db, inst, migration, big, CFG).host == "hv1"
    assert usage(db) == ((3, 768, 3), sorted(["m-1", inst.uuid]))
    assert _resize.claim_both(db, inst, migration, big, CFG) is None
    assert usage(db) == ((3, 768, 3), sorted(["m-1", inst.uuid]))


def test_a_rollback_before_the_old_claim_moved_keeps_it(cloud):
    db = cloud["db"]
    inst, big = active_on_hv1(cloud), flavor(db, "big")
    with db.tx() as conn:
        moved = instances.move_state(conn, inst.uuid, "active", "resize_prep", expected_task_state=None)
        conn.execute(_db.table("migrations").insert().values(
            id="m-2", instance_uuid=inst.uuid, migration_type="resize", status="pre-migrating", source_compute="hv1",
            dest_compute="hv1", old_flavor_id=inst.flavor_id, new_flavor_id=big.id,
            old_vm_state="active", created_at=_db.now()))
        migration = _resize.open_migration(conn, inst.uuid)
        moved = _resize.begin_revert(conn, moved, migration)
    assert _resize.reverted(db, moved, migration, "RUNNING", fault="died") == ("active", None)
    assert usage(db) == ((1, 256, 1), [inst.uuid]) and row(db, inst.uuid)[1] == "small"
