# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller services on a real SQLite file and on a real PostgreSQL server (every test runs on
both, see the ``backend`` fixture in conftest.py): nova-api validation, scheduler claims, IPAM.

Concurrency cases run in separate processes (each its own engine and connection), as parallel
ansible-playbook runs would.
"""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    NoValidHostError,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances


def _auth(db, state_dir):
    _identity.bootstrap(db, "admin", "pw", "admin")
    _token, ctx = _identity.issue_token(db, _identity.key_repository(state_dir), "admin", "pw", "admin")
    return ctx


@pytest.fixture()
def cloud(tmp_path, backend):
    state_dir = str(tmp_path / "state")
    db_url = backend.new_db_url()   # None: SQLite in the state dir (the embedded default)
    db = _db.open_db(db_url, state_dir=state_dir)
    auth = _auth(db, state_dir)
    image_file = tmp_path / "disk.raw"
    image_file.write_bytes(b"\0" * (1024 * 1024))
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _compute_api.ensure_flavor(db, "m1.big", 1, 4096, 1, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "img", str(image_file), "raw", "bare", "public", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    yield {"db": db, "auth": auth, "state_dir": state_dir, "tmp": tmp_path, "db_url": db_url}
    db.dispose()


def _count(db, table):
    with db.tx() as conn:
        return conn.execute(_db.sa.select(_db.sa.func.count()).select_from(_db.table(table))).scalar()


def test_schema_is_at_head_and_file_is_private(cloud):
    assert cloud["db"].schema_revision() == _db.SCHEMA_HEAD
    if cloud["db_url"] is None:
        assert cloud["db"].is_sqlite
        assert os.stat(os.path.join(cloud["state_dir"], "bootflow.db")).st_mode & 0o777 == 0o600
    else:
        assert cloud["db"].is_postgresql and not os.path.exists(os.path.join(cloud["state_dir"], "bootflow.db"))


@pytest.mark.parametrize("flavor,image,nets,msg,exc", [
    ("m1.nope", "img", ["net"], "Flavor m1.nope could not be found.", NotFound),
    ("m1.tiny", "nope", ["net"], "Image nope could not be found.", NotFound),
    ("m1.tiny", "img", ["nope"], "Network nope could not be found.", NotFound),
    ("m1.tiny", "img", [], "At least one network", InvalidRequest),
])
def test_create_validates_everything_before_writing(cloud, flavor, image, nets, msg, exc):
    with pytest.raises(exc, match=msg):
        _compute_api.create(cloud["db"], cloud["auth"], "vm1", flavor, image, nets, 1, None, False)
    assert _count(cloud["db"], "instances") == 0
    assert _count(cloud["db"], "volumes") == 0


def test_create_limits_user_data_as_nova_counts_it_base64_encoded(cloud):
    db, auth = cloud["db"], cloud["auth"]
    with pytest.raises(InvalidRequest, match=r"user_data is 49150 bytes, 65536 once base64-encoded"):
        _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 1, "#" * 49150, False)
    assert _count(db, "instances") == 0 and _count(db, "volumes") == 0
    changed, row = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 1, "#" * 49149, False)
    assert changed and len(row.request["user_data"]) == 49149


def test_create_is_idempotent_and_refuses_a_different_request(cloud):
    db, auth = cloud["db"], cloud["auth"]
    changed, row = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 1, None, False)
    assert changed and (row.vm_state, row.task_state) == ("building", "scheduling")
    changed2, row2 = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 1, None, False)
    assert not changed2 and row2.uuid == row.uuid
    with pytest.raises(Conflict, match="different flavor"):
        _compute_api.create(db, auth, "vm1", "m1.big", "img", ["net"], 1, None, False)
    assert _count(db, "instances") == 1 and _count(db, "volumes") == 1


def test_rerun_for_an_existing_instance_converges_whatever_became_of_its_image_and_quota(cloud):
    db, auth = cloud["db"], cloud["auth"]
    images = _db.table("images")
    _c, row = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 1, None, False)
    with db.tx() as conn:   # the image is deactivated and the project's quota is used up since
        conn.execute(images.update().where(images.c.id == row.image_id).values(status="deactivated"))
        conn.execute(_db.table("quotas").insert().values(project_id=auth.project_id, resource="instances", hard_limit=0))
    before = {t: _count(db, t) for t in ("instances", "volumes", "instance_steps")}
    for ref in ("img", row.image_id):   # by name or by ID, as it was booted
        changed, again = _compute_api.create(db, auth, "vm1", "m1.tiny", ref, ["net"], 1, None, False)
        assert not changed and again.uuid == row.uuid
    with pytest.raises(Conflict, match="different flavor"):
        _compute_api.create(db, auth, "vm1", "m1.big", "img", ["net"], 1, None, False)
    with pytest.raises(Conflict, match="different flavor"):
        _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 2, None, False)
    # a new instance still gets every check
    with pytest.raises(InvalidRequest, match=r"Image img is not active \(status deactivated\)"):
        _compute_api.create(db, auth, "vm2", "m1.tiny", "img", ["net"], 1, None, False)
    assert {t: _count(db, t) for t in before} == before


def test_check_mode_create_writes_nothing(cloud):
    changed, row = _compute_api.create(cloud["db"], cloud["auth"], "vm1", "m1.tiny", "img", ["net"], 1, None, True)
    assert changed and row is None and _count(cloud["db"], "instances") == 0


def test_reader_may_not_create(cloud):
    reader = _identity.AuthContext("u", "r", cloud["auth"].project_id, "admin", ("reader",), time.time() + 60, "a")
    with pytest.raises(AuthError, match="Policy doesn.t allow compute:create"):
        _compute_api.create(cloud["db"], reader, "vm1", "m1.tiny", "img", ["net"], 0, None, False)


def test_move_state_is_compare_and_swap(cloud):
    db, auth = cloud["db"], cloud["auth"]
    _c, row = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 0, None, False)
    with db.tx() as conn:
        instances.move_state(conn, row.uuid, "building", "networking", expected_task_state="scheduling")
    with pytest.raises(Conflict, match="expected task_state"):
        with db.tx() as conn:
            instances.move_state(conn, row.uuid, "building", "spawning", expected_task_state="scheduling")


def _report(db, name, memory_mb):
    _placement.upsert_compute_node(db, name, {"vcpus": 2, "memory_mb": memory_mb, "local_gb": 20}, {}, False)


def test_claim_respects_capacity_and_reserved_memory(cloud):
    db = cloud["db"]
    _report(db, "hv1", 1024)  # 1024 - 512 reserved = 512 MB for guests
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=256, root_gb=1)
    for i in range(2):
        host, _alts, _tried = _placement.claim(db, "consumer-%d" % i, spec, ["hv1"])
        assert host == "hv1"
    with pytest.raises(NoValidHostError, match="hv1"):
        _placement.claim(db, "consumer-x", spec, ["hv1"])
    assert _count(db, "allocations") == 2
    assert _placement.release(db, "consumer-0") == "hv1"
    assert _placement.claim(db, "consumer-y", spec, ["hv1"])[0] == "hv1"


def _claim_worker(args):
    db_url, state_dir, consumer = args
    db = _db.open_db(db_url, state_dir=state_dir)
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=256, root_gb=1)
    try:
        return _placement.claim(db, consumer, spec, ["hv1", "hv2"])[0]
    except NoValidHostError:
        return None
    finally:
        db.dispose()


def test_parallel_claims_never_overcommit(cloud):
    db = cloud["db"]
    _report(db, "hv1", 512 + 3 * 256)   # room for 3
    _report(db, "hv2", 512 + 2 * 256)   # room for 2
    with multiprocessing.get_context("fork").Pool(6) as pool:
        got = pool.map(_claim_worker, [(cloud["db_url"], cloud["state_dir"], "c%02d" % i) for i in range(12)])
    assert sorted(h for h in got if h) == ["hv1"] * 3 + ["hv2"] * 2
    assert got.count(None) == 7
    with db.tx() as conn:
        states = {h.name: h for h in _placement.host_states(conn)}
    for name in ("hv1", "hv2"):
        assert states[name].memory_mb_used <= states[name].memory_mb - 512


def _port_worker(args):
    db_url, state_dir, uuid = args
    db = _db.open_db(db_url, state_dir=state_dir)
    try:
        return _networking.allocate_port(db, uuid, "net", "hv1")[1]["ip"]
    except InvalidRequest as exc:
        return str(exc)
    except Exception as exc:  # pylint: disable=broad-except
        return "%s: %s" % (type(exc).__name__, exc)
    finally:
        db.dispose()


def test_parallel_port_allocation_never_hands_out_an_ip_twice(cloud):
    # /28: 16 addresses - network, broadcast, gateway, DHCP = 12 allocatable
    with multiprocessing.get_context("fork").Pool(6) as pool:
        got = pool.map(_port_worker, [(cloud["db_url"], cloud["state_dir"], "00000000-0000-0000-0000-%012d" % i)
                                      for i in range(16)])
    ips = [g for g in got if g.startswith("10.0.0.")]
    errors = [g for g in got if not g.startswith("10.0.0.")]
    assert len(ips) == 12 and len(set(ips)) == 12, got
    assert all("No more IP addresses available on subnet 10.0.0.0/28" in e for e in errors), errors
    with cloud["db"].tx() as conn:
        macs = [r.mac for r in conn.execute(_db.table("ports").select())]
    assert len(macs) == len(set(macs)) == 12


def test_fixed_ip_taken_outside_or_gateway_is_refused(cloud):
    db = cloud["db"]
    _networking.allocate_port(db, "u1", "net", "hv1", fixed_ip="10.0.0.5")
    for ip, why in (("10.0.0.5", "already allocated"), ("10.0.1.5", "not in subnet"), ("10.0.0.1", "gateway")):
        with pytest.raises(InvalidRequest, match=why):
            _networking.allocate_port(db, "u2", "net", "hv1", fixed_ip=ip)
    assert _count(db, "ports") == 1


def test_fixed_ips_are_checked_before_any_port_and_an_existing_port_keeps_its_ip(cloud):
    db = cloud["db"]
    _networking.allocate_port(db, "u1", "net", "hv1", fixed_ip="10.0.0.5")
    with db.tx() as conn:
        net_id = _networking.find_network(conn, "net").id
        for ip, why in (("10.0.0.5", "already allocated"), ("10.0.1.5", "not in subnet"), ("nope", "not a valid IP")):
            with pytest.raises(InvalidRequest, match="Invalid fixed IP for network net: .*" + why):
                _networking.check_fixed_ips(conn, "u2", {net_id: ip})
        _networking.check_fixed_ips(conn, "u1", {net_id: "10.0.0.5"})   # its own port's IP: fine
        with pytest.raises(Conflict, match="already has port .* with IP 10.0.0.5 on network net; it cannot get 10.0.0.6"):
            _networking.check_fixed_ips(conn, "u1", {net_id: "10.0.0.6"})
    with pytest.raises(Conflict, match="cannot get 10.0.0.6"):
        _networking.allocate_port(db, "u1", "net", "hv1", fixed_ip="10.0.0.6")
    assert _count(db, "ports") == 1


def test_subnet_dns_servers_must_be_ipv4_addresses(cloud):
    db = cloud["db"]
    with pytest.raises(InvalidRequest, match="Invalid subnet s2: DNS server '1.1.1.1;reboot' is not a valid IP address"):
        _networking.ensure_subnet(db, "net", "s2", "10.1.0.0/24", None, None, None, None, ["1.1.1.1;reboot"], "present", False)
    with pytest.raises(InvalidRequest, match="only IPv4"):
        _networking.ensure_subnet(db, "net", "s2", "10.1.0.0/24", None, None, None, None, ["fd00::1"], "present", False)
    assert _networking.ensure_subnet(db, "net", "s2", "10.1.0.0/24", None, None, None, None, [" 9.9.9.9"], "present",
                                     False)[1]["dns_servers"] == ["9.9.9.9"]
