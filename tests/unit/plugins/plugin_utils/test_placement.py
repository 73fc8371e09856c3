# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``placement`` claim backend against a REAL Placement (tests/openstack/placement.sh:
openstack-placement 16 on SQLite under uwsgi on 127.0.0.1, started once for the session and stopped by
PID), with the bootflow DB on SQLite and on PostgreSQL (the ``backend`` fixture).

Resource providers synced from compute node reports (inventories with reserved memory and ratios,
custom traits, aggregates and the zone's aggregate), allocation candidates as the capacity pre-filter,
claims (capacity, parallel processes, the same consumer twice, the DB copy, undo when the DB write
fails), release, errors, and auth through a real Keystone (the caller's admin token, a service token
for a member, the catalog). Also the local backend's resource tracker: zone/aggregates/traits,
heartbeats, and boot from volume claiming no local disk.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import uuid

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    InvalidRequest,
    NoValidHostError,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))

import keystone_server  # noqa: E402  # tests/openstack/keystone_server.py
import placement_server  # noqa: E402  # tests/openstack/placement_server.py
from test_faults import cloud  # noqa: E402,F401  # pylint: disable=unused-import  # the reschedule world, a fixture

SPEC = _scheduler.RequestSpec(vcpus=1, memory_mb=256, root_gb=1)
PROJECT, USER = "p-" + uuid.uuid4().hex[:8], "u-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def placement(tmp_path_factory):
    server = placement_server.PlacementServer(tmp_path_factory.mktemp("placement"))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        pytest.fail("cannot start a private Placement (scripts/setup.sh installs it into "
                    "/var/tmp/bootflow-openstack/venv): %s" % exc)
    print("\nplacement (noauth2): setup %.1f s, serving after %.1f s" % (server.timings["setup"], server.timings["serve"]))
    yield server
    server.stop()
    assert server.stopped()


@pytest.fixture()
def client(placement):
    return _placement.connect(placement.url)


@pytest.fixture()
def db(tmp_path, backend):
    database = _db.open_db(backend.new_db_url(), state_dir=str(tmp_path / "state"))
    yield database
    database.dispose()


@pytest.fixture()
def hv():
    """Host names unique to the test: the Placement server is shared by the whole session."""
    prefix = "t%s-" % uuid.uuid4().hex[:8]
    return lambda n: prefix + n


def report(db, client, name, memory_mb, vcpus=4, local_gb=20, **overrides):
    """A compute node report as compute_node's action records it (+ its resource provider)."""
    _changed, node = _placement.upsert_compute_node(db, name, {"vcpus": vcpus, "memory_mb": memory_mb, "local_gb": local_gb,
                                                               "arch": "x86_64"}, overrides, False)
    if client is not None:
        _placement.sync_provider(client, node)
    return node


# --- resource providers ------------------------------------------------------------------------

def test_sync_creates_the_provider_with_inventories_traits_and_aggregates(db, client, placement, hv):
    node = report(db, None, hv("a"), 4096, reserved_host_memory_mb=512, cpu_allocation_ratio=2.0,
                  availability_zone="az1", aggregates=["ssd", "rack1"], traits=["CUSTOM_SSD", "HW_CPU_X86_AVX2"])
    assert _placement.sync_provider(client, node, check_mode=True) == ["provider", "inventories", "traits", "aggregates"]
    assert hv("a") not in placement.providers()
    assert _placement.sync_provider(client, node) == ["provider", "inventories", "traits", "aggregates"]
    assert placement.providers()[hv("a")] == node["id"]
    inv = placement.inventories(node["id"])
    assert {rc: (i["total"], i["reserved"], i["allocation_ratio"], i["max_unit"]) for rc, i in inv.items()} == {
        "VCPU": (4, 0, 2.0, 4), "MEMORY_MB": (4096, 512, 1.0, 4096), "DISK_GB": (20, 0, 1.0, 20)}
    assert sorted(placement.get("/resource_providers/%s/traits" % node["id"])["traits"]) == ["CUSTOM_SSD", "HW_CPU_X86_AVX2"]
    assert sorted(placement.get("/resource_providers/%s/aggregates" % node["id"])["aggregates"]) == sorted(
        [_placement.aggregate_uuid("ssd"), _placement.aggregate_uuid("rack1"), _placement.zone_uuid("az1")])
    # in step: nothing to do; a changed ratio or trait is synced, nothing else
    assert _placement.sync_provider(client, node) == []
    changed, node = _placement.upsert_compute_node(db, hv("a"), {"vcpus": 4, "memory_mb": 4096, "local_gb": 20},
                                                   {"ram_allocation_ratio": 1.5, "traits": ["CUSTOM_SSD"]}, False)
    assert changed and sorted(node["traits"]) == ["CUSTOM_SSD"]
    assert _placement.sync_provider(client, node) == ["inventories", "traits"]
    assert placement.inventories(node["id"])["MEMORY_MB"]["allocation_ratio"] == 1.5
    assert placement.get("/resource_providers/%s/traits" % node["id"])["traits"] == ["CUSTOM_SSD"]


def test_sync_caps_reserved_and_leaves_out_empty_classes(db, client, placement, hv):
    node = report(db, client, hv("tiny"), 256, local_gb=0)   # less memory than the 512 MB reservation, no disk
    inv = placement.inventories(node["id"])
    assert sorted(inv) == ["MEMORY_MB", "VCPU"] and inv["MEMORY_MB"]["reserved"] == 256


def test_sync_refuses_a_name_taken_by_another_provider(db, client, placement, hv):
    status, _body = placement.call("POST", "/resource_providers", {"name": hv("x"), "uuid": str(uuid.uuid4())})
    assert status == 200
    _c, node = _placement.upsert_compute_node(db, hv("x"), {"vcpus": 1, "memory_mb": 1024, "local_gb": 1}, {}, False)
    with pytest.raises(_placement.PlacementError, match="already has a resource provider named %s" % hv("x")):
        _placement.sync_provider(client, node)


def test_an_unknown_standard_trait_is_a_clear_error(db, client, hv):
    _c, node = _placement.upsert_compute_node(db, hv("t"), {"vcpus": 1, "memory_mb": 1024, "local_gb": 1},
                                              {"traits": ["NOT_A_STANDARD_TRAIT"]}, False)
    with pytest.raises(_placement.PlacementError, match="refused the traits of"):
        _placement.sync_provider(client, node)


# --- candidates and claims ---------------------------------------------------------------------

def test_claims_respect_placement_capacity_and_keep_a_db_copy(db, client, placement, hv):
    node = report(db, client, hv("a"), 512 + 2 * 256)   # room for 2
    c0, c1, cx = (str(uuid.uuid4()) for _i in range(3))   # Placement's consumers are UUIDs
    for consumer in (c0, c1):
        host, _alts, tried = _placement.claim(db, consumer, SPEC, [hv("a")], placement=client,
                                              project_id=PROJECT, user_id=USER)
        assert host == hv("a") and tried == {}
    with pytest.raises(NoValidHostError) as err:
        _placement.claim(db, cx, SPEC, [hv("a")], placement=client, project_id=PROJECT, user_id=USER)
    reason = err.value.details["claim_failures"][hv("a")]
    assert reason.startswith("Placement: ") and "MEMORY_MB" in reason, reason
    assert placement.usages(node["id"]) == {"VCPU": 2, "MEMORY_MB": 512, "DISK_GB": 2}
    with db.tx() as conn:
        row = _placement.existing_allocation(conn, c0)
    assert (row.hostname, row.backend, row.memory_mb) == (hv("a"), "placement", 256)
    # Placement's own record: exactly this consumer on this provider, with the instance's project and user
    assert placement.allocations(c0) == {node["id"]: {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}}
    got = placement.get("/allocations/%s" % c0)
    assert (got["project_id"], got["user_id"], got["consumer_generation"]) == (PROJECT, USER, 1)

    # the candidates: no room left on this host; its reason is the local filters' own
    assert node["id"] not in client.allocation_candidates(SPEC)
    with db.tx() as conn:
        states = [s for s in _placement.host_states(conn) if s.name == hv("a")]
    kept, rejected = _placement.apply_candidates(states, {}, SPEC, _scheduler.SchedulerConfig())
    assert kept == [] and rejected == {hv("a"): "CapacityFilter: RAM: requested 256 MB, free 0 MB"}

    # release: Placement's allocation and the DB copy go, and the room is back
    assert _placement.release(db, c0, placement=client) == hv("a")
    assert placement.allocations(c0) == {}
    assert placement.usages(node["id"])["MEMORY_MB"] == 256
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, c0) is None
    assert _placement.release(db, c0, placement=client) is None   # idempotent
    summary = client.allocation_candidates(SPEC)[node["id"]]
    assert summary["MEMORY_MB"] == (512, 256)


def test_candidates_carry_placement_usage_and_honour_zone_aggregates_and_traits(db, client, hv):
    a = report(db, client, hv("a"), 4096, availability_zone="az1", aggregates=["ssd"], traits=["CUSTOM_SSD"])
    b = report(db, client, hv("b"), 4096, availability_zone="az2")
    both = client.allocation_candidates(SPEC)
    assert {a["id"], b["id"]} <= set(both)
    assert set(client.allocation_candidates(_scheduler.RequestSpec(1, 256, 1, availability_zone="az2"))) & {a["id"], b["id"]} \
        == {b["id"]}
    for extra in ({"member_of": "ssd"}, {"member_of": "in:gpu,ssd"}, {"trait:CUSTOM_SSD": "required"}):
        got = client.allocation_candidates(_scheduler.RequestSpec(1, 256, 1, flavor_extra_specs=extra))
        assert set(got) & {a["id"], b["id"]} == {a["id"]}, extra
    got = client.allocation_candidates(_scheduler.RequestSpec(1, 256, 1, flavor_extra_specs={"trait:CUSTOM_SSD": "forbidden"}))
    assert set(got) & {a["id"], b["id"]} == {b["id"]}
    # usage comes from Placement: an allocation made by someone else (not in our DB) counts
    status, _body = _placement.Placement(client.url, "admin").request(
        "PUT", "/allocations/%s" % uuid.uuid4(), {"allocations": {b["id"]: {"resources": {"MEMORY_MB": 1000}}},
                                                  "project_id": PROJECT, "user_id": USER, "consumer_generation": None,
                                                  "consumer_type": "INSTANCE"}, expect=(204,))
    assert status == 204
    with db.tx() as conn:
        states = [s for s in _placement.host_states(conn) if s.name in (hv("a"), hv("b"))]
    kept, rejected = _placement.apply_candidates(states, client.allocation_candidates(SPEC), SPEC, _scheduler.SchedulerConfig())
    assert rejected == {} and {s.name: s.memory_mb_used for s in kept} == {hv("a"): 0, hv("b"): 1000}
    kept, rejected = _placement.apply_candidates(states, {}, SPEC, _scheduler.SchedulerConfig())
    assert set(rejected) == {hv("a"), hv("b")} and rejected[hv("a")].startswith("PlacementFilter: Placement has no allocation")


def test_candidates_limit_like_max_placement_results(db, client, hv):
    """Nova sends ``limit`` (max_placement_results): Placement returns that many candidates; the hosts it left out
    that our filters pass are rejected as beyond the limit, those our filters reject keep their own reason."""
    zone = "zl" + uuid.uuid4().hex[:6]       # the session's Placement is shared: this test's own hosts
    nodes = {name: report(db, client, hv(name), memory, availability_zone=zone)
             for name, memory in (("a", 4096), ("b", 4096), ("c", 4096), ("full", 512))}
    spec = _scheduler.RequestSpec(1, 256, 1, availability_zone=zone)
    assert set(client.allocation_candidates(spec)) == {nodes[n]["id"] for n in ("a", "b", "c")}
    limited = client.allocation_candidates(spec, limit=2)
    assert len(limited) == 2 and set(limited) < {nodes[n]["id"] for n in ("a", "b", "c")}
    with db.tx() as conn:
        states = [s for s in _placement.host_states(conn) if s.name in {hv(n) for n in nodes}]
    cfg = _scheduler.SchedulerConfig(max_placement_results=2)
    kept, rejected = _placement.apply_candidates(states, limited, spec, cfg)
    left_out = ({hv(n) for n in ("a", "b", "c")} - {s.name for s in kept}).pop()
    assert len(kept) == 2 and rejected == {
        hv("full"): "CapacityFilter: RAM: requested 256 MB, free 0 MB",
        left_out: "PlacementFilter: not among the 2 allocation candidates Placement returned (max_placement_results)"}
    # fewer candidates than the limit: a host left out has no room in Placement's view
    _kept, rejected = _placement.apply_candidates(states, limited, spec, _scheduler.SchedulerConfig())
    assert rejected[left_out].startswith("PlacementFilter: Placement has no allocation candidate")


def _claim_worker(args):
    """One claim in its own process (own engine, own HTTP client): the host, or None for No valid host."""
    db_url, state_dir, url, consumer, hosts = args
    database = _db.open_db(db_url, state_dir=state_dir)
    try:
        return _placement.claim(database, consumer, SPEC, hosts, placement=_placement.connect(url),
                                project_id=PROJECT, user_id=USER)[0]
    except NoValidHostError:
        return None
    finally:
        database.dispose()


def test_parallel_claims_never_overcommit_a_provider(db, client, placement, hv, tmp_path):
    hosts = [hv("a"), hv("b")]
    nodes = [report(db, client, hv("a"), 512 + 3 * 256), report(db, client, hv("b"), 512 + 2 * 256)]   # 3 + 2
    consumers = [str(uuid.uuid4()) for _i in range(12)]
    with multiprocessing.get_context("fork").Pool(6) as pool:
        got = pool.map(_claim_worker, [(db.url, str(tmp_path / "state"), placement.url, c, hosts) for c in consumers])
    assert sorted(h for h in got if h) == [hv("a")] * 3 + [hv("b")] * 2 and got.count(None) == 7
    for node, slots in zip(nodes, (3, 2)):
        usage, inv = placement.usages(node["id"]), placement.inventories(node["id"])["MEMORY_MB"]
        assert usage["MEMORY_MB"] == slots * 256 <= (inv["total"] - inv["reserved"]) * inv["allocation_ratio"]
        assert len(placement.provider_allocations(node["id"])) == slots
    with db.tx() as conn:
        rows = {c: _placement.existing_allocation(conn, c) for c in consumers}
    for consumer, host in zip(consumers, got):
        held = placement.allocations(consumer)
        if host is None:
            assert held == {} and rows[consumer] is None
        else:
            node_id = next(n["id"] for n in nodes if n["hostname"] == host)
            assert list(held) == [node_id] and rows[consumer].hostname == host and rows[consumer].backend == "placement"


def test_the_same_consumer_claimed_twice_at_once_gets_one_allocation(db, client, placement, hv, tmp_path):
    nodes = [report(db, client, hv("a"), 4096), report(db, client, hv("b"), 4096)]
    consumer = str(uuid.uuid4())
    with multiprocessing.get_context("fork").Pool(4) as pool:
        got = pool.map(_claim_worker, [(db.url, str(tmp_path / "state"), placement.url, consumer, order)
                                       for order in ([hv("a"), hv("b")], [hv("b"), hv("a")]) * 2])
    held = placement.allocations(consumer)
    assert len(held) == 1 and len(set(got)) == 1
    with db.tx() as conn:
        row = _placement.existing_allocation(conn, consumer)
    assert row.hostname == got[0] and held == {row.compute_node_id: {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}}
    assert sum(placement.usages(n["id"])["MEMORY_MB"] for n in nodes) == 256


def test_a_failed_db_write_takes_the_placement_claim_back(db, client, placement, hv):
    node = report(db, client, hv("a"), 4096)
    consumer = str(uuid.uuid4())
    # a real failure of the DB write after Placement said yes: the copy's row breaks a check the DB enforces
    with db.tx() as conn:
        if db.is_sqlite:
            conn.execute(_db.sa.text("CREATE TRIGGER no_boom BEFORE INSERT ON allocations WHEN NEW.consumer_id = '%s' "
                                     "BEGIN SELECT RAISE(ABORT, 'injected failure'); END" % consumer))
        else:
            conn.execute(_db.sa.text("ALTER TABLE allocations ADD CONSTRAINT no_boom CHECK (consumer_id <> '%s')" % consumer))
    with pytest.raises(_db.sa.exc.DBAPIError):
        _placement.claim(db, consumer, SPEC, [hv("a")], placement=client, project_id=PROJECT, user_id=USER)
    assert placement.allocations(consumer) == {} and placement.usages(node["id"])["MEMORY_MB"] == 0


def test_release_follows_the_backend_that_holds_the_claim(db, client, placement, hv):
    report(db, client, hv("a"), 4096)
    consumer = str(uuid.uuid4())
    _placement.claim(db, consumer, SPEC, [hv("a")], placement=client, project_id=PROJECT, user_id=USER)
    with pytest.raises(InvalidRequest, match="held by Placement: release it with placement_backend=placement"):
        _placement.release(db, consumer)
    assert _placement.release(db, consumer, check_mode=True, placement=client) == hv("a")
    assert placement.allocations(consumer) != {}
    # an allocation Placement holds without a DB copy (a crash between the two) is released too
    with db.tx() as conn:
        conn.execute(_db.table("allocations").delete().where(_db.table("allocations").c.consumer_id == consumer))
    assert _placement.release(db, consumer, placement=client) == hv("a")
    assert placement.allocations(consumer) == {}


def test_a_claim_moves_to_a_migration_and_back_without_the_usage_dropping(db, client, placement, hv):
    """A resize hands the instance's claim to its migration's ID (one POST /allocations for both consumers: the
    provider's usage never drops), and a revert hands it back; the DB copy follows."""
    node = report(db, client, hv("a"), 4096)
    instance, migration = str(uuid.uuid4()), str(uuid.uuid4())
    _placement.claim(db, instance, SPEC, [hv("a")], placement=client, project_id=PROJECT, user_id=USER)
    held = placement.allocations(instance)
    assert _placement.move_allocation(db, instance, migration, client, PROJECT, USER) == hv("a")
    assert placement.allocations(instance) == {} and placement.allocations(migration) == held
    got = placement.get("/allocations/%s" % migration)
    assert (got["project_id"], got["user_id"], got["consumer_type"]) == (PROJECT, USER, "MIGRATION")
    assert placement.usages(node["id"]) == {"VCPU": 1, "MEMORY_MB": 256, "DISK_GB": 1}
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, instance) is None
        assert _placement.existing_allocation(conn, migration).hostname == hv("a")
    assert _placement.move_allocation(db, instance, migration, client, PROJECT, USER) is None   # moved already
    assert _placement.move_allocation(db, migration, instance, client, PROJECT, USER, consumer_type="INSTANCE") == hv("a")
    assert placement.allocations(instance) == held and placement.allocations(migration) == {}
    assert placement.get("/allocations/%s" % instance)["consumer_type"] == "INSTANCE"
    assert _placement.release(db, instance, placement=client) == hv("a")


def test_placement_errors_are_clear(monkeypatch):
    with pytest.raises(_placement.PlacementError, match="cannot reach Placement at http://127.0.0.1:9"):
        _placement.connect("http://127.0.0.1:9").allocations("x")
    with pytest.raises(InvalidRequest, match="http:// or https://"):
        _placement.connect("placement:8778")
    monkeypatch.delenv("BOOTFLOW_PLACEMENT_URL", raising=False)
    with pytest.raises(InvalidRequest, match="needs Placement's URL"):
        _placement.connect(None)
    monkeypatch.setenv("BOOTFLOW_PLACEMENT_URL", "http://127.0.0.1:8778/")
    assert _placement.connect(None).url == "http://127.0.0.1:8778"
    monkeypatch.delenv("BOOTFLOW_PLACEMENT_BACKEND", raising=False)
    assert _placement.resolve_backend() == "local" and _placement.resolve_backend("local") == "local"
    with pytest.raises(AuthError, match="differs from the operator's"):
        _placement.resolve_backend("placement")   # a task cannot move the claims off the operator's backend
    monkeypatch.setenv("BOOTFLOW_PLACEMENT_BACKEND", "placement")
    assert _placement.resolve_backend("placement") == "placement"
    monkeypatch.setenv("BOOTFLOW_PLACEMENT_BACKEND", "nova")
    with pytest.raises(InvalidRequest, match="from the BOOTFLOW_PLACEMENT_BACKEND environment variable"):
        _placement.resolve_backend()


def test_noauth2_refuses_a_request_without_the_admin_token(placement):
    with pytest.raises(AuthError, match="needs the admin or service role"):
        _placement.Placement(placement.url, "somebody").request("GET", "/resource_providers")


# --- Keystone auth -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ks_placement(tmp_path_factory):
    ks = keystone_server.KeystoneServer(tmp_path_factory.mktemp("keystone"))
    server = placement_server.PlacementServer(tmp_path_factory.mktemp("placement-ks"), keystone=ks)
    try:
        ks.start()
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        ks.stop()
        pytest.fail("cannot start a private Keystone + Placement: %s" % exc)
    yield ks, server
    server.stop()
    ks.stop()
    assert server.stopped() and ks.all_stopped()


@pytest.fixture()
def no_openrc(monkeypatch):
    for name in ("OS_AUTH_URL", "OS_CLOUD", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_INTERFACE",
                 "OS_REGION_NAME", "BOOTFLOW_PLACEMENT_CLOUD", "BOOTFLOW_PLACEMENT_URL", "OS_CLIENT_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_keystone_admin_token_and_the_catalog(ks_placement, no_openrc, db, tmp_path, hv):
    ks, server = ks_placement
    keystone = _keystone.Keystone(ks.url, str(tmp_path))
    token = ks.admin_token()
    auth = keystone.validate(token)
    client = _placement.connect(None, "keystone", token, auth, keystone, str(tmp_path))
    assert client.url == server.url and client.token == token   # found in the catalog, the caller's own token
    node = report(db, client, hv("k"), 4096)
    consumer = str(uuid.uuid4())
    assert _placement.claim(db, consumer, SPEC, [hv("k")], placement=client, project_id=auth.project_id,
                            user_id=auth.user_id)[0] == hv("k")
    assert server.usages(node["id"])["MEMORY_MB"] == 256
    assert _placement.release(db, consumer, placement=client) == hv("k")


def test_keystone_member_gets_a_service_token_or_a_clear_refusal(ks_placement, no_openrc, monkeypatch, tmp_path):
    ks, server = ks_placement
    keystone = _keystone.Keystone(ks.url, str(tmp_path))
    member = ks.users["member"]
    token = ks.password_token("member", member["password"], "demo")
    auth = keystone.validate(token)
    with pytest.raises(AuthError, match="Placement accepts admin or service tokens only; user member"):
        _placement.connect(server.url, "keystone", token, auth, keystone, str(tmp_path))
    # the controller's service credentials (openrc variables): the placement service user, at the controller's
    # Keystone (OS_AUTH_URL) - without one, no service token at all
    with open(os.path.join(server.dir, "placement-password")) as f:
        monkeypatch.setenv("OS_PASSWORD", f.read().strip())
    monkeypatch.setenv("OS_USERNAME", "placement")
    monkeypatch.setenv("OS_PROJECT_NAME", "service")
    with pytest.raises(AuthError, match="the controller configures no Keystone for its service credentials"):
        _placement.connect(server.url, "keystone", token, auth, keystone, str(tmp_path))
    monkeypatch.setenv("OS_AUTH_URL", ks.url)
    client = _placement.connect(server.url, "keystone", token, auth, keystone, str(tmp_path))
    assert client.token != token
    assert client.request("GET", "/resource_providers")[0] == 200
    # a member's own token is refused by Placement itself (policy admin_or_service_api)
    with pytest.raises(AuthError, match="403"):
        _placement.Placement(server.url, token).request("GET", "/resource_providers")


# --- issue 16: service credentials go only to the controller's endpoints -------------------------

class _Listener:
    """The attacker's endpoint: a tiny HTTP server on 127.0.0.1 (a thread) that records every request."""

    def __init__(self):
        import http.server   # pylint: disable=import-outside-toplevel
        import threading   # pylint: disable=import-outside-toplevel
        seen = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                seen.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
                body = b'{"token": {"roles": [{"name": "admin"}]}}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args):   # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def listener():
    out = _Listener()
    yield out
    out.close()


def _run_step(module, args, state_dir, db_url):
    """The real action plugin's step (plugins/action/<module>.py) on a real StepContext: the task's ``args``
    (as given), the spec's defaults for the rest."""
    import importlib   # pylint: disable=import-outside-toplevel
    import types   # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.module_utils import argspec   # pylint: disable=import-outside-toplevel
    from ansible_collections.bootflow.cloud.plugins.plugin_utils import steps   # pylint: disable=import-outside-toplevel

    spec = argspec.module_kwargs(module)["argument_spec"]
    full = {k: v.get("default") for k, v in spec.items()}
    full.update(args, state_dir=state_dir, db_url=db_url)
    action = types.SimpleNamespace(_task=types.SimpleNamespace(check_mode=False, diff=False))
    ctx = steps.StepContext(action, full, {}, [k for k, v in args.items() if v is not None])
    cls = importlib.import_module("ansible_collections.bootflow.cloud.plugins.action.%s" % module).ActionModule
    try:
        return cls.__new__(cls).step(ctx)
    finally:
        ctx.close()


def _dump(db):
    with db.tx() as conn:
        return {name: sorted(repr(tuple(r)) for r in conn.execute(_db.table(name).select()).fetchall())
                for name in ("instances", "allocations", "compute_nodes", "instance_steps")}


@pytest.fixture()
def openrc(ks_placement, no_openrc, monkeypatch):
    """The controller's configuration: its Keystone (OS_AUTH_URL) and the placement service user."""
    ks, server = ks_placement
    with open(os.path.join(server.dir, "placement-password")) as f:
        monkeypatch.setenv("OS_PASSWORD", f.read().strip())
    monkeypatch.setenv("OS_USERNAME", "placement")
    monkeypatch.setenv("OS_PROJECT_NAME", "service")
    monkeypatch.setenv("OS_AUTH_URL", ks.url)
    return ks, server


@pytest.mark.parametrize("module", ["schedule", "reschedule"])
@pytest.mark.parametrize("urls", ["both", "auth_url", "placement_url"])
def test_attack_a_member_pointing_auth_url_or_placement_url_at_its_listener_gets_nothing(
        openrc, listener, db, tmp_path, module, urls, monkeypatch):
    ks, _server = openrc
    # the operator's controller: its state dir, database and backends (the task only repeats them)
    monkeypatch.setenv("BOOTFLOW_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("BOOTFLOW_DB_URL", db.url)
    monkeypatch.setenv("BOOTFLOW_AUTH_BACKEND", "keystone")
    monkeypatch.setenv("BOOTFLOW_PLACEMENT_BACKEND", "placement")
    member = ks.users["member"]
    token = ks.password_token("member", member["password"], "demo")
    args = {"auth_token": token, "auth_backend": "keystone", "placement_backend": "placement", "instance": "vm1"}
    if module == "reschedule":
        args.update(host="hv1")
    if urls in ("both", "auth_url"):
        args["auth_url"] = listener.url
    if urls in ("both", "placement_url"):
        args["placement_url"] = listener.url
    before = _dump(db)
    with pytest.raises(AuthError, match="is not the operator's Keystone|placement_url given in the task"):
        _run_step(module, args, str(tmp_path / "state"), db.url)
    assert listener.requests == []          # no password, no service token, not even the member's own token
    assert _dump(db) == before


def test_the_service_token_never_comes_from_the_steps_keystone(openrc, listener, tmp_path):
    """connect() for a member: the service user's password goes to the controller's Keystone (OS_AUTH_URL),
    even when the step's Keystone (a task's auth_url) is the listener; the service token to Placement's
    configured URL only."""
    ks, server = openrc
    member = ks.users["member"]
    token = ks.password_token("member", member["password"], "demo")
    real = _keystone.Keystone(ks.url, str(tmp_path))
    auth = real.validate(token)
    fake = _keystone.Keystone(listener.url, str(tmp_path))
    client = _placement.connect(server.url, "keystone", token, auth, fake, str(tmp_path))
    assert client.token != token and client.request("GET", "/resource_providers")[0] == 200
    # no configured placement URL: the catalog of the controller's Keystone, not of the step's
    client = _placement.connect(None, "keystone", token, auth, fake, str(tmp_path))
    assert client.url == server.url
    with pytest.raises(AuthError, match="placement_url given in the task"):
        _placement.connect(None, "keystone", token, auth, fake, str(tmp_path), task_url=listener.url)
    assert listener.requests == []
    # an admin may name Placement's URL in a task, and then sends its own token
    admin = ks.admin_token()
    client = _placement.connect(None, "keystone", admin, real.validate(admin), real, str(tmp_path), task_url=server.url)
    assert client.url == server.url and client.token == admin


# --- the resource tracker (local DB) ----------------------------------------------------------

def test_zone_aggregates_and_traits_reach_the_host_states(db, hv):
    changed, node = _placement.upsert_compute_node(db, hv("a"), {"vcpus": 2, "memory_mb": 2048, "local_gb": 10},
                                                   {"availability_zone": "az1", "aggregates": ["b", "a", "b"],
                                                    "traits": ["CUSTOM_X"]}, False)
    assert changed and node["aggregates"] == ["a", "b"] and node["availability_zone"] == "az1"
    assert _placement.upsert_compute_node(db, hv("a"), {"vcpus": 2, "memory_mb": 2048, "local_gb": 10},
                                          {"availability_zone": "az1", "aggregates": ["a", "b"], "traits": ["CUSTOM_X"]},
                                          False)[0] is False
    with db.tx() as conn:
        state = _placement.host_states(conn)[0]
    assert (state.availability_zone, state.aggregates, state.traits, state.uuid) == (
        "az1", frozenset({"a", "b"}), frozenset({"CUSTOM_X"}), node["id"])
    sel = _scheduler.select_hosts([state], _scheduler.RequestSpec(1, 256, 1, availability_zone="az1",
                                                                  flavor_extra_specs={"member_of": "b"}))
    assert sel.host == hv("a")


def test_a_disabled_host_stays_disabled_when_it_reports_again(db, hv):
    report_ = {"vcpus": 2, "memory_mb": 2048, "local_gb": 10}
    assert _placement.upsert_compute_node(db, hv("a"), report_, {}, False)[1]["disabled"] is False   # new: enabled
    assert _placement.upsert_compute_node(db, hv("a"), report_, {"disabled": True}, False)[1]["disabled"] is True
    changed, node = _placement.upsert_compute_node(db, hv("a"), report_, {"disabled": None}, False)   # not given
    assert not changed and node["disabled"] is True
    with db.tx() as conn:
        state = _placement.host_states(conn)[0]
    assert _scheduler.compute_filter(state, SPEC, time.time(), _scheduler.SchedulerConfig()) == "disabled"


def test_heartbeat_refreshes_only_the_last_seen_time(db, hv):
    with pytest.raises(NotFound, match="is not a registered compute node"):
        _placement.heartbeat(db, hv("a"))
    with pytest.raises(NotFound):
        _placement.report_age(db, hv("a"))
    _c, node = _placement.upsert_compute_node(db, hv("a"), {"vcpus": 2, "memory_mb": 2048, "local_gb": 10},
                                              {"memory_mb": 1024}, False)
    nodes = _db.table("compute_nodes")
    with db.tx() as conn:   # as if the last report was 10 minutes ago
        conn.execute(nodes.update().values(updated_at=_db.now() - __import__("datetime").timedelta(minutes=10)))
    assert _placement.report_age(db, hv("a")) > 599
    with db.tx() as conn:
        state = _placement.host_states(conn)[0]
    assert _scheduler.compute_filter(state, SPEC, time.time(), _scheduler.SchedulerConfig()).startswith("down (last update")
    after = _placement.heartbeat(db, hv("a"))
    assert _placement.report_age(db, hv("a")) < 5
    assert (after["memory_mb"], after["generation"]) == (1024, node["generation"])   # inventory untouched
    with db.tx() as conn:
        state = _placement.host_states(conn)[0]
    assert _scheduler.compute_filter(state, SPEC, time.time(), _scheduler.SchedulerConfig()) is None


# --- boot from volume ------------------------------------------------------------------------------

class _Row:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def test_boot_from_volume_requests_no_local_disk(db, hv):
    flavor = _Row(vcpus=1, ram_mb=256, disk_gb=10, extra_specs={})
    image = _Row(properties={})
    local = _compute_api.request_spec(flavor, image, {"flavor": "f"})
    bfv = _compute_api.request_spec(flavor, image, {"flavor": "f", "boot_from_volume": True, "root_volume_size_gb": 10})
    assert (local.root_gb, local.disk_gb) == (10, 10)
    assert (bfv.root_gb, bfv.disk_gb) == (0, 0)
    assert _scheduler.requested_resources(bfv) == {"VCPU": 1, "MEMORY_MB": 256}
    # a host with 5 GB of local disk: no room for the flavor's root disk, room for a volume-backed boot
    _placement.upsert_compute_node(db, hv("a"), {"vcpus": 2, "memory_mb": 2048, "local_gb": 5}, {}, False)
    with pytest.raises(NoValidHostError, match="DISK: requested 10 GB, free 5 GB"):
        _placement.claim(db, str(uuid.uuid4()), local, [hv("a")])
    consumer = str(uuid.uuid4())
    assert _placement.claim(db, consumer, bfv, [hv("a")])[0] == hv("a")
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, consumer).disk_gb == 0
        assert _placement.host_states(conn)[0].local_gb_used == 0


# --- the conductor's reschedule with the placement backend ------------------------------------------

def test_reschedule_moves_the_claim_in_placement(cloud, client, placement, hv):
    """test_faults' world (identity, flavor, image, network; its own hosts stay out of Placement) with two hosts
    of ours in the real Placement: the conductor releases the claim there and claims the alternate."""
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import (  # pylint: disable=import-outside-toplevel
        faults as _faults,
    )
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import reschedule as _reschedule

    db, auth = cloud["db"], cloud["auth"]
    a, b = report(db, client, hv("a"), 2048), report(db, client, hv("b"), 2048)
    _c, row = _compute_api.create(db, auth, "vm1", "m1.tiny", "img", ["net"], 0, None, False)
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)
    assert _placement.claim(db, row.uuid, spec, [hv("a"), hv("b")], placement=client)[0] == hv("a")   # project/user: the instance's
    assert placement.get("/allocations/%s" % row.uuid)["project_id"] == auth.project_id
    failure = _faults.Failure("cannot start: Hook script execution failed", "error",
                              "28 | nova-compute -> libvirt: define and start the domain", "domain", hv("a"))
    out = _reschedule.failed_build(db, auth, row.uuid, hv("a"), failure, alternates=[hv("b")], placement=client)
    assert out["rescheduled"] and out["host"] == hv("b")
    assert placement.allocations(row.uuid) == {b["id"]: {"VCPU": 1, "MEMORY_MB": 128, "DISK_GB": 1}}
    assert placement.usages(a["id"])["MEMORY_MB"] == 0
    with db.tx() as conn:
        copy = _placement.existing_allocation(conn, row.uuid)
    assert (copy.hostname, copy.backend) == (hv("b"), "placement")


# --- server groups: the claim-time policy check with the claims in Placement -------------------------

def _group_members(cloud, policy, n, rules=None):
    """A group of the world's project and ``n`` instances created into it (nova-api's create)."""
    from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import (  # pylint: disable=import-outside-toplevel
        server_groups as _server_groups,
    )

    db, auth = cloud["db"], cloud["auth"]
    name = "g-" + uuid.uuid4().hex[:8]
    _server_groups.ensure(db, auth, name, policy, rules, "present", False)
    return [_compute_api.create(db, auth, "%s-%d" % (name, i), "m1.tiny", "img", ["net"], 0, None, False,
                                server_group=name)[1].uuid for i in range(n)]


def _held_in_placement(placement, uuids, nodes):
    """consumer -> host name of its allocation in Placement itself (None when it holds none)."""
    by_rp = {n["id"]: n["hostname"] for n in nodes}
    out = {}
    for consumer in uuids:
        held = placement.allocations(consumer)
        assert len(held) <= 1, held
        out[consumer] = by_rp[next(iter(held))] if held else None
    return out


def test_racing_anti_affinity_members_never_share_a_host_in_placement(cloud, client, placement, hv, tmp_path):
    from test_server_groups import check_anti_affinity_race, run_race  # pylint: disable=import-outside-toplevel

    db = cloud["db"]
    hosts = [hv("a"), hv("b"), hv("c")]
    nodes = [report(db, client, h, 8192) for h in hosts]       # room for 30 m1.tiny each
    uuids = _group_members(cloud, "anti-affinity", 6)
    got = run_race(db, str(tmp_path / "state"), uuids, hosts, placement_url=placement.url)
    placed = check_anti_affinity_race(db, got, hosts)
    # Placement's own view: exactly the claims that said yes, one on each provider
    assert _held_in_placement(placement, uuids, nodes) == {u: placed.get(u) for u in uuids}
    assert [len(placement.provider_allocations(n["id"])) for n in nodes] == [1, 1, 1]


def test_racing_affinity_members_end_on_one_host_in_placement(cloud, client, placement, hv, tmp_path):
    from test_server_groups import check_affinity_race, run_race  # pylint: disable=import-outside-toplevel

    db = cloud["db"]
    hosts = [hv("a"), hv("b"), hv("c")]
    nodes = [report(db, client, h, 8192) for h in hosts]
    uuids = _group_members(cloud, "affinity", 6)
    got = run_race(db, str(tmp_path / "state"), uuids, hosts, subset=3, placement_url=placement.url)
    placed = check_affinity_race(db, got)
    assert _held_in_placement(placement, uuids, nodes) == placed
    assert sorted(len(placement.provider_allocations(n["id"])) for n in nodes) == [0, 0, 6]


def test_a_group_claim_refused_or_failing_after_placement_leaves_nothing(cloud, client, placement, hv):
    """The policy refusal comes before Placement is asked; a DB copy that fails after Placement said yes (inside
    the transaction that holds the group's lock) takes the Placement allocation back."""
    db = cloud["db"]
    a_node, b_node = report(db, client, hv("a"), 8192), report(db, client, hv("b"), 8192)
    first, second, third = _group_members(cloud, "anti-affinity", 3)
    spec = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)
    assert _placement.claim(db, first, spec, [hv("a")], placement=client)[0] == hv("a")
    with pytest.raises(NoValidHostError, match="anti-affinity: 1 group member\\(s\\) already on the host"):
        _placement.claim(db, second, spec, [hv("a")], placement=client)
    assert placement.allocations(second) == {}
    with db.tx() as conn:
        if db.is_sqlite:
            conn.execute(_db.sa.text("CREATE TRIGGER no_boom_g BEFORE INSERT ON allocations WHEN NEW.consumer_id = '%s' "
                                     "BEGIN SELECT RAISE(ABORT, 'injected failure'); END" % third))
        else:
            conn.execute(_db.sa.text("ALTER TABLE allocations ADD CONSTRAINT no_boom_g CHECK (consumer_id <> '%s')" % third))
    with pytest.raises(_db.sa.exc.DBAPIError):
        _placement.claim(db, third, spec, [hv("b")], placement=client)
    assert placement.allocations(third) == {} and placement.usages(b_node["id"])["MEMORY_MB"] == 0
    assert placement.usages(a_node["id"])["MEMORY_MB"] == 128
    # the group lock was released with the failed transaction: the next member claims at once
    assert _placement.claim(db, second, spec, [hv("a"), hv("b")], placement=client)[:1] == (hv("b"),)
