# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Authorization on a real SQLite DB: the policy table, project scoping, quotas."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import policy as _policy
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


@pytest.fixture()
def cloud(tmp_path):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {}
    for project, user, role in (("pa", "alice", "member"), ("pb", "bob", "member"), ("pa", "rita", "reader")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, role, "present", False)
        token, _ctx = _identity.issue_token(db, keys, user, "pw", project)
        auth[user] = _identity.authenticate(db, keys, token)
    token, _ctx = _identity.issue_token(db, keys, "admin", "pw", "admin")
    auth["admin"] = _identity.authenticate(db, keys, token)
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["admin"], state_dir, "public-img", str(image), "raw", "bare", "public", 0, 0, {}, "present", False)
    _images.apply_image(db, auth["alice"], state_dir, "alice-img", str(image), "raw", "bare", "private", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    _c, inst = _compute_api.create(db, auth["alice"], "vm-a", "m1.tiny", "alice-img", ["net"], 1, None, False)
    return {"db": db, "auth": auth, "inst": inst}


def test_policy_table_names_only_known_roles():
    for rule, roles in _policy.POLICY.items():
        assert roles and set(roles) <= set(_identity.ROLES), rule
        assert "admin" in roles, rule  # admin may do everything


@pytest.mark.parametrize("user,rule,ok", [
    ("alice", "compute:create", True), ("rita", "compute:create", False), ("rita", "compute:get", True),
    ("alice", "network:manage", False), ("admin", "network:manage", True), ("alice", "image:publicize", False),
    ("alice", "identity:user", False), ("rita", "volume:attach", False), ("alice", "volume:attach", True),
])
def test_enforce(cloud, user, rule, ok):
    if ok:
        _policy.enforce(cloud["auth"][user], rule)
    else:
        with pytest.raises(AuthError, match="Policy doesn't allow %s" % rule):
            _policy.enforce(cloud["auth"][user], rule)


def test_member_of_another_project_cannot_see_instance_volume_or_private_image(cloud):
    db, bob, inst = cloud["db"], cloud["auth"]["bob"], cloud["inst"]
    with db.tx() as conn:
        assert instances.find_instance(conn, "vm-a", bob) is None
        assert instances.find_instance(conn, inst.uuid, bob) is None
        with pytest.raises(NotFound):
            instances.get_instance(conn, inst.uuid, bob)
        vol = _volumes.instance_volumes(conn, inst.uuid)[0]
        with pytest.raises(NotFound):
            _volumes.get_volume(conn, vol.name, bob)
        with pytest.raises(NotFound):
            _images.find_image(conn, "alice-img", bob)
        assert _images.find_image(conn, "public-img", bob).visibility == "public"
        # the owner and the admin do see them
        assert instances.get_instance(conn, inst.uuid, cloud["auth"]["alice"]).name == "vm-a"
        assert instances.get_instance(conn, inst.uuid, cloud["auth"]["admin"]).name == "vm-a"
        assert _volumes.get_volume(conn, vol.name, cloud["auth"]["rita"]).id == vol.id


def test_member_cannot_boot_from_another_projects_private_image(cloud):
    with pytest.raises(NotFound, match="Image alice-img could not be found"):
        _compute_api.create(cloud["db"], cloud["auth"]["bob"], "vm-b", "m1.tiny", "alice-img", ["net"], 0, None, False)


def test_quota_exceeded_fails_before_anything_is_created(cloud):
    db, alice = cloud["db"], cloud["auth"]["alice"]
    pa = alice.project_id
    assert _quota.set_limits(db, pa, {"instances": 1}, False)[0] is True
    with db.tx() as conn:
        before = conn.execute(_db.sa.select(_db.sa.func.count()).select_from(_db.table("instances"))).scalar()
    with pytest.raises(QuotaExceeded, match="Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"):
        _compute_api.create(db, alice, "vm-a2", "m1.tiny", "alice-img", ["net"], 0, None, False)
    _quota.set_limits(db, pa, {"instances": 5, "gigabytes": 1}, False)
    with pytest.raises(QuotaExceeded, match="gigabytes"):
        _compute_api.create(db, alice, "vm-a2", "m1.tiny", "alice-img", ["net"], 1, None, False)
    with db.tx() as conn:
        after = conn.execute(_db.sa.select(_db.sa.func.count()).select_from(_db.table("instances"))).scalar()
        assert _quota.usage(conn, pa)["gigabytes"] == 1
    assert after == before
    # another project's usage does not count against alice
    _compute_api.create(db, cloud["auth"]["bob"], "vm-b", "m1.tiny", "public-img", ["net"], 1, None, False)


def test_quota_limits_are_validated(cloud):
    with pytest.raises(Exception, match="Unknown quota resource"):
        _quota.set_limits(cloud["db"], cloud["auth"]["alice"].project_id, {"bananas": 1}, False)


def test_only_an_admin_may_name_the_host(cloud):
    db = cloud["db"]
    with pytest.raises(AuthError, match="compute:force_host"):
        _compute_api.create(db, cloud["auth"]["alice"], "vm-forced", "m1.tiny", "public-img", ["net"], 0, None, False,
                            availability_zone="nova:hv2")
    with db.tx() as conn:
        assert instances.find_instance(conn, "vm-forced", cloud["auth"]["admin"]) is None
    # a zone alone is fine for a member
    _compute_api.create(db, cloud["auth"]["alice"], "vm-zone", "m1.tiny", "public-img", ["net"], 0, None, False,
                        availability_zone="nova")


@pytest.mark.parametrize("value,zone,host", [
    (None, None, None), ("nova", "nova", None), ("nova:hv2", "nova", "hv2"), (":hv2", None, "hv2"),
    ("nova:hv2:node", "nova", "hv2"),
])
def test_parse_availability_zone(value, zone, host):
    assert _compute_api.parse_availability_zone(value) == (zone, host)


def test_forced_host_wins_over_the_weighers(cloud):
    db, admin = cloud["db"], cloud["auth"]["admin"]
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
    for name, mem in (("hv1", 8192), ("hv2", 1024)):
        _placement.upsert_compute_node(db, name, {"vcpus": 4, "memory_mb": mem, "local_gb": 20}, {}, False)
    _c, row = _compute_api.create(db, admin, "vm-forced", "m1.tiny", "public-img", ["net"], 0, None, False,
                                  availability_zone="nova:hv2")
    with db.tx() as conn:
        flavor = _compute_api.get_flavor(conn, "m1.tiny")
        states = _placement.host_states(conn)
    spec = _compute_api.request_spec(flavor, None, row.request)
    assert spec.force_host == "nova:hv2" and spec.availability_zone == "nova"
    sel = _scheduler.select_hosts(states, spec, _scheduler.SchedulerConfig())
    assert sel.host == "hv2" and "hv1" in sel.rejected           # the RAM weigher alone would pick hv1
    free = _scheduler.select_hosts(states, _compute_api.request_spec(flavor, None, {}), _scheduler.SchedulerConfig())
    assert free.host == "hv1"


@pytest.mark.parametrize("value,msg", [(-2, "must be -1 \\(unlimited\\) or more, got -2"),
                                       (2 ** 31, "must be at most 2147483647 \\(or -1 for unlimited\\), got 2147483648")])
def test_quota_limits_out_of_range_are_refused_before_anything_is_written(cloud, value, msg):
    db = cloud["db"]
    with db.tx() as conn:
        pa = _identity.find_project(conn, "admin").id
    with pytest.raises(InvalidRequest, match="Quota ram " + msg):
        _quota.set_limits(db, pa, {"instances": 3, "ram": value}, False)
    with db.tx() as conn:
        assert _quota.limits(conn, pa)["instances"] == _quota.DEFAULTS["instances"]
