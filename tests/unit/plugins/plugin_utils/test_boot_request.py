# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A fleet's boot request (plugin_utils/compute/boot_request.py) and its scheduling as one request
(scheduling.select_for_list): the list expanded and checked before anything is written, one transaction
for the whole list, min_count, and the claims of a list seeing each other. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NotFound, QuotaExceeded
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import boot_request as _br
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduling as _scheduling
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking

DEFAULTS = {"flavor": "m1.tiny", "image": "img", "networks": ["net"]}


# --- expand: pure --------------------------------------------------------------------------------

def test_count_names_the_instances_and_defaults_fill_the_items():
    out = _br.expand([{"name": "web", "count": 3, "min_count": 2}, {"name": "db", "flavor": "m1.big"}], DEFAULTS)
    assert [e["name"] for e in out] == ["web-1", "web-2", "web-3", "db"]
    assert [(e["item"], e["launch_index"]) for e in out] == [(0, 0), (0, 1), (0, 2), (1, 0)]
    assert out[0]["flavor"] == "m1.tiny" and out[3]["flavor"] == "m1.big" and out[0]["min_count"] == 2
    assert out[3]["min_count"] is None and out[3]["volume_size_gb"] == 0 and out[3]["metadata"] == {}


def test_networks_take_a_fixed_ip():
    (e,) = _br.expand([{"name": "db", "networks": ["a", {"network": "b", "fixed_ip": "10.0.0.5"}]}], DEFAULTS)
    assert e["networks"] == ["a", "b"] and e["fixed_ips"] == {"b": "10.0.0.5"}


@pytest.mark.parametrize("items, message", [
    ([{"name": "a"}, {"name": "a"}], "names in one request must be unique"),
    ([{"name": "web", "count": 2}, {"name": "web-2"}], "web-2 is also given by instances[0]"),
    ([{"name": "a", "count": 0}], "count must be at least 1"),
    ([{"name": "a", "count": -3}], "count must be at least 1"),
    ([{"name": "a", "count": 101}], "count must be at most 100"),
    ([{"name": "a", "count": 2, "min_count": 3}], "min_count 3 is more than count 2"),
    ([{"name": "a", "count": "many"}], "count must be an integer"),
    ([{"name": "a", "colour": "red"}], "unknown option(s) colour"),
    ([{"name": " a"}], "instances[0]"),
    (["a"], "must be a mapping"),
    ([{"name": "a", "networks": []}], "At least one network is required."),
    ([{"name": "a", "networks": "private"}], "networks must be a list"),
    ([{"name": "a", "networks": [{"network": "net", "ip": "1.2.3.4"}]}], "networks[0] must be"),
    ([{"name": "a", "networks": [{"network": "net", "fixed_ip": "300.1.1.1"}]}], "is not an IPv4 address"),
    ([{"name": "a", "count": 2, "networks": [{"network": "net", "fixed_ip": "10.0.0.5"}]}],
     "a fixed_ip cannot be used with count 2"),
    ([{"name": "a", "networks": [{"network": "net", "fixed_ip": "10.0.0.5"}]},
      {"name": "b", "networks": [{"network": "net", "fixed_ip": "10.0.0.5"}]}], "is also asked for by a"),
    ([{"name": "a", "metadata": {"k": "v" * 256}}], "metadata"),
    ([{"name": "a", "state": "gone"}], "state must be present or absent"),
])
def test_bad_items_are_refused_naming_the_item(items, message):
    with pytest.raises(InvalidRequest) as exc:
        _br.expand(items, DEFAULTS)
    assert message in str(exc.value)


def test_flavor_and_image_are_required_for_a_boot_not_for_a_lookup():
    with pytest.raises(InvalidRequest, match=r"instances\[0\] \(a\): flavor is required"):
        _br.expand([{"name": "a"}], {})
    assert [e["name"] for e in _br.expand([{"name": "a", "count": 2}], {}, names_only=True)] == ["a-1", "a-2"]


# --- record and schedule: real DB --------------------------------------------------------------------

@pytest.fixture
def cloud(tmp_path, backend):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(backend.new_db_url(), state_dir=state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    _token, auth = _identity.issue_token(db, _identity.key_repository(state_dir), "admin", "pw", "admin")
    image_file = tmp_path / "disk.raw"
    image_file.write_bytes(b"\0" * (1024 * 1024))
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 512, 1, {}, "present", False)
    _compute_api.ensure_flavor(db, "m1.huge", 1, 4000, 1, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "img", str(image_file), "raw", "bare", "public", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    for name in ("hv1", "hv2", "hv3"):
        # 1024 MB usable each (reserved 512): two m1.tiny per host
        _placement.upsert_compute_node(db, name, {"vcpus": 4, "memory_mb": 1536, "local_gb": 20}, {}, False)
    yield {"db": db, "auth": auth}
    db.dispose()


def _live(db):
    inst = _db.table("instances")
    with db.tx() as conn:
        return sorted(r.name for r in conn.execute(inst.select().where(inst.c.deleted == 0)))


def _record(cloud, items, check_mode=False):
    return _br.record(cloud["db"], cloud["auth"], _br.expand(items, DEFAULTS), check_mode)


def test_the_whole_list_is_recorded_in_one_transaction(cloud):
    db = cloud["db"]
    items = [{"name": "web", "count": 3}, {"name": "db", "networks": [{"network": "net", "fixed_ip": "10.0.0.50"}],
                                           "metadata": {"role": "db"}}]
    changed, present, absent = _record(cloud, items)
    assert changed and absent == [] and [p["name"] for p in present] == ["web-1", "web-2", "web-3", "db"]
    assert all(p["created"] and p["status"] == "BUILD" for p in present)
    with db.tx() as conn:
        rows = {p["name"]: conn.execute(_db.table("instances").select().where(
            _db.table("instances").c.uuid == p["uuid"])).first() for p in present}
    assert len({r.request["reservation_id"] for n, r in rows.items() if n.startswith("web")}) == 1
    assert rows["db"].request["reservation_id"] != rows["web-1"].request["reservation_id"]
    assert rows["db"].request["metadata"] == {"role": "db"} and list(rows["db"].request["fixed_ips"].values()) == ["10.0.0.50"]
    # the same list again: nothing new
    changed, present, absent = _record(cloud, items)
    assert not changed and absent == [] and not any(p["created"] for p in present)


@pytest.mark.parametrize("bad, error", [
    ({"name": "x", "image": "no-such-image"}, NotFound),
    ({"name": "x", "flavor": "no-such-flavor"}, NotFound),
    ({"name": "x", "server_group": "no-such-group"}, NotFound),
    ({"name": "x", "key_name": "no-such-key"}, NotFound),
    ({"name": "x", "networks": [{"network": "net", "fixed_ip": "10.9.9.9"}]}, InvalidRequest),
])
def test_bad_input_in_the_last_item_records_nothing(cloud, bad, error):
    items = [{"name": "a"}, {"name": "b", "count": 3}, bad]
    with pytest.raises(error):
        _record(cloud, items)
    assert _live(cloud["db"]) == []


def test_the_quota_is_the_whole_lists(cloud):
    db, auth = cloud["db"], cloud["auth"]
    _quota.set_limits(db, auth.project_id, {"instances": 4}, False)
    with pytest.raises(QuotaExceeded):
        _record(cloud, [{"name": "a", "count": 3}, {"name": "b", "count": 2}])
    assert _live(db) == []
    _record(cloud, [{"name": "a", "count": 3}, {"name": "b"}])
    assert len(_live(db)) == 4


def test_check_mode_validates_everything_and_writes_nothing(cloud):
    changed, present, absent = _record(cloud, [{"name": "a", "count": 2}], check_mode=True)
    assert absent == [] and changed and [p["uuid"] for p in present] == [None, None] and _live(cloud["db"]) == []
    with pytest.raises(NotFound):
        _record(cloud, [{"name": "a"}, {"name": "b", "image": "nope"}], check_mode=True)


def test_absent_items_are_found_not_recorded(cloud):
    _record(cloud, [{"name": "old"}])
    changed, present, absent = _record(cloud, [{"name": "new"}, {"name": "old", "state": "absent"},
                                               {"name": "never", "state": "absent"}])
    assert [p["name"] for p in present] == ["new"] and [a["name"] for a in absent] == ["old"]
    found = _br.lookup(cloud["db"], cloud["auth"], absent)
    assert [f["name"] for f in found] == ["old"] and found[0]["status"] == "BUILD"
    report = _br.query(cloud["db"], cloud["auth"], _br.expand([{"name": "new"}, {"name": "ghost"}], {}, names_only=True))
    assert [(r["name"], r["status"]) for r in report] == [("new", "BUILD"), ("ghost", "ABSENT")]


def _schedule(cloud, present, hosts=None):
    cfg = _scheduling.config(None, {}, 1, 3, 0)
    return _scheduling.select_for_list(cloud["db"], cloud["auth"], [p["uuid"] for p in present], cfg, hosts)


def test_the_list_is_placed_as_one_request_each_claim_seeing_the_ones_before(cloud):
    """Six instances, two fit per host: the list fills the three hosts; a seventh has no room."""
    _c, present, _a = _record(cloud, [{"name": "web", "count": 7}])
    out = _schedule(cloud, present)
    hosts = [p["host"] for p in out["placed"]]
    assert sorted(hosts) == ["hv1", "hv1", "hv2", "hv2", "hv3", "hv3"]
    assert [u["name"] for u in out["unplaced"]] == ["web-7"] and "No valid host" in out["unplaced"][0]["fault"]
    assert all(p["alternates"] is not None for p in out["placed"]) and out["withdrawn"] == []
    with cloud["db"].tx() as conn:
        assert all(_placement.existing_allocation(conn, p["uuid"]) is not None for p in out["placed"])


def test_anti_affinity_holds_across_the_list(cloud):
    db, auth = cloud["db"], cloud["auth"]
    _server_groups.ensure(db, auth, "spread", "anti-affinity", {}, "present", False)
    _c, present, _a = _record(cloud, [{"name": "web", "count": 4, "server_group": "spread"}])
    out = _schedule(cloud, present)
    assert sorted(p["host"] for p in out["placed"]) == ["hv1", "hv2", "hv3"]
    assert [u["name"] for u in out["unplaced"]] == ["web-4"]


def test_an_unmet_min_count_leaves_nothing_of_its_item_and_the_others_go_on(cloud):
    db = cloud["db"]
    _c, present, _a = _record(cloud, [{"name": "web", "count": 2},
                                      {"name": "big", "count": 3, "min_count": 2, "flavor": "m1.huge"},
                                      {"name": "one-big", "flavor": "m1.huge"}])
    out = _schedule(cloud, present)
    assert sorted(w["name"] for w in out["withdrawn"]) == ["big-1", "big-2", "big-3"]
    assert "fewer than min_count 2" in out["withdrawn"][0]["reason"]
    assert [p["name"] for p in out["placed"]] == ["web-1", "web-2"]
    # without a min_count an impossible item is in ERROR, with its fault; the withdrawn ones are gone
    assert [u["name"] for u in out["unplaced"]] == ["one-big"]
    assert _live(db) == ["one-big", "web-1", "web-2"]
    with db.tx() as conn:
        assert conn.execute(_db.table("allocations").select()).fetchall().__len__() == 2


def test_a_met_min_count_builds_what_was_placed(cloud):
    _c, present, _a = _record(cloud, [{"name": "web", "count": 8, "min_count": 5}])
    out = _schedule(cloud, present)
    assert len(out["placed"]) == 6 and out["withdrawn"] == [] and len(out["unplaced"]) == 2
