# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api's boot-from-volume validation on a real SQLite file: the root volume record (vda,
creating) and its size rules (flavor disk, image min_disk and virtual size), refused before anything
is written; quota counted; the conductor spec's root/data volumes."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    Conflict,
    InvalidRequest,
    QuotaExceeded,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor

GIB = 1024 ** 3


@pytest.fixture()
def cloud(tmp_path):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(None, state_dir=state_dir)  # SQLite in the state dir
    _identity.bootstrap(db, "admin", "pw", "admin")
    _token, auth = _identity.issue_token(db, _identity.key_repository(state_dir), "admin", "pw", "admin")
    small = tmp_path / "small.raw"
    small.write_bytes(b"\0" * (1024 * 1024))
    big = tmp_path / "big.qcow2"  # a qcow2 of 2 GiB virtual size, made by the real qemu-img
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "2G"], check=True)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _compute_api.ensure_flavor(db, "m1.two", 1, 128, 2, {}, "present", False)
    _compute_api.ensure_flavor(db, "m1.nodisk", 1, 128, 0, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "img", str(small), "raw", "bare", "public", 0, 0, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "big", str(big), "qcow2", "bare", "public", 0, 0, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "min3", str(small), "raw", "bare", "public", 3, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    yield {"db": db, "auth": auth}
    db.dispose()


def _rows(db, table):
    with db.tx() as conn:
        return [dict(r._mapping) for r in conn.execute(_db.table(table).select())]


def _bfv(cloud, name="vm1", flavor="m1.tiny", image="img", volume_size_gb=0, **kw):
    kw.setdefault("boot_from_volume", True)
    return _compute_api.create(cloud["db"], cloud["auth"], name, flavor, image, ["net"], volume_size_gb, None, False, **kw)


def test_root_volume_record_defaults_to_the_flavor_disk(cloud):
    changed, row = _bfv(cloud, volume_size_gb=1, root_volume_delete_on_termination=False)
    assert changed and row.request["boot_from_volume"] is True and row.request["root_volume_size_gb"] == 1
    vols = {v["device"]: v for v in _rows(cloud["db"], "volumes")}
    assert set(vols) == {"vda", "vdb"}
    assert (vols["vda"]["status"], vols["vda"]["size_gb"], vols["vda"]["instance_uuid"]) == ("creating", 1, row.uuid)
    assert not vols["vda"]["delete_on_termination"] and vols["vdb"]["delete_on_termination"]
    with cloud["db"].tx() as conn:
        spec = conductor.spec(conn, row)
    assert spec["boot_from_volume"] and spec["root_volume"]["id"] == vols["vda"]["id"]
    assert [v["device"] for v in spec["data_volumes"]] == ["vdb"]
    assert [v["device"] for v in spec["volumes"]] == ["vda", "vdb"]
    # same request again: no change; another root size: conflict
    assert _bfv(cloud, volume_size_gb=1, root_volume_delete_on_termination=False)[0] is False
    with pytest.raises(Conflict, match="root volume"):
        _bfv(cloud, volume_size_gb=1, root_volume_size_gb=2)


def test_a_plain_boot_has_no_root_volume(cloud):
    _c, row = _bfv(cloud, volume_size_gb=1, boot_from_volume=False)
    assert "boot_from_volume" not in row.request
    with cloud["db"].tx() as conn:
        spec = conductor.spec(conn, row)
    assert spec["root_volume"] is None and [v["device"] for v in spec["data_volumes"]] == ["vdb"]


@pytest.mark.parametrize("flavor,image,kw,msg", [
    ("m1.two", "img", {"root_volume_size_gb": 1}, "smaller than flavor m1.two's disk"),
    ("m1.nodisk", "big", {"root_volume_size_gb": 1}, "smaller than the image"),
    ("m1.nodisk", "big", {}, "between 1 and"),            # no size and a flavor without a disk
    ("m1.tiny", "min3", {"root_volume_size_gb": 2}, "min_disk"),
    ("m1.tiny", "img", {"root_volume_size_gb": 99999}, "between 1 and"),
    ("m1.tiny", "img", {"root_volume_size_gb": 2, "boot_from_volume": False}, "only valid with boot_from_volume"),
])
def test_too_small_root_volume_is_refused_before_anything_is_written(cloud, flavor, image, kw, msg):
    with pytest.raises(InvalidRequest, match=msg):
        _bfv(cloud, flavor=flavor, image=image, volume_size_gb=1, **kw)
    assert _rows(cloud["db"], "instances") == [] and _rows(cloud["db"], "volumes") == []


def test_root_volume_fits_the_image_virtual_size(cloud):
    _c, row = _bfv(cloud, flavor="m1.nodisk", image="big", root_volume_size_gb=2)
    assert [(v["device"], v["size_gb"]) for v in _rows(cloud["db"], "volumes")] == [("vda", 2)]
    assert row.request["root_volume_size_gb"] == 2


@pytest.mark.parametrize("limits,resource", [({"gigabytes": 3}, "gigabytes"), ({"volumes": 1}, "volumes")])
def test_root_volume_counts_against_the_volume_quotas(cloud, limits, resource):
    _quota.set_limits(cloud["db"], cloud["auth"].project_id, limits, False)
    with pytest.raises(QuotaExceeded, match="Quota exceeded for %s" % resource):
        _bfv(cloud, volume_size_gb=2, root_volume_size_gb=2)
    assert _rows(cloud["db"], "instances") == [] and _rows(cloud["db"], "volumes") == []
    assert _bfv(cloud, volume_size_gb=0, root_volume_size_gb=1)[0]  # one 1 GB root volume fits both limits
