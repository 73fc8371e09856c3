# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Failed builds: the classification (pure, _faults) and the conductor's reschedule / ERROR
(_reschedule) on a real SQLite file and a real PostgreSQL server (the ``backend`` fixture)."""

from __future__ import annotations

import time

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import cleanups as _cleanups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import reschedule as _reschedule
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, Conflict, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

F = _faults.Failure


# --- classification ------------------------------------------------------------------------------

@pytest.mark.parametrize("failure,reschedulable,category", [
    # host failures: Nova's RescheduledException
    (F("domain bootflow-x: Hook script execution failed: internal error: Child process (LC_ALL=C "
       "/etc/libvirt/hooks/qemu bootflow-x prepare begin -) unexpected exit status 1", "error", action="domain"),
     True, "host"),
    (F("volume volume-1: cannot connect to libvirt: Failed to connect socket", "error", action="volume"), True, "host"),
    (F("dnsmasq for network n started but wrote no pid file /x", "error", action="dhcp_lease"), True, "host"),
    (F("cannot read /root/.ansible/tmp/image.part: [Errno 28] No space left on device", "error",
       action="image_fetch"), True, "host_resources"),
    (F("qemu-img create of /x/disk failed (rc=1): Could not write: No space left on device", "error"),
     True, "host_resources"),
    (F("libvirt: internal error: process exited while connecting to monitor: Cannot allocate memory", "error"),
     True, "host_resources"),
    (F("the host was unreachable"), True, "host"),
    # request failures: Nova's BuildAbortException
    (F("checksum mismatch (sha512): expected ab got cd", "error", action="image_fetch"), False, "image"),
    (F("size mismatch: expected 10 bytes got 11", "error"), False, "image"),
    (F("image format mismatch: declared qcow2 but the content is raw; refusing it", "error"), False, "image"),
    (F("unsafe image: qcow2 with a backing file '/etc/passwd'", "error"), False, "image"),
    (F("Image guest is not active (status queued).", "invalid"), False, "image"),
    (F("root_gb (1073741824 bytes) is smaller than the image's virtual size (2147483648 bytes)", "error"),
     False, "flavor"),
    (F("No more IP addresses available on subnet 10.0.0.0/29", "invalid", action="port"), False, "no_ips"),
    (F("Quota exceeded for ram: requested 128, in use 0, limit 64", "quota"), False, "quota"),
    (F("The token has expired.", "auth"), False, "auth"),
    (F("Instance x changed under us: expected task_state scheduling", "conflict"), False, "conflict"),
    (F("Volume volume-x could not be found.", "not_found"), False, "invalid"),
    (F("The task includes an option with an undefined variable. 'dict object' has no attribute 'id'"),
     False, "playbook"),
    # a resource failure wins over the rest of the text
    (F("cannot read image.part: [Errno 28] No space left on device (checksum pending)", "error"),
     True, "host_resources"),
])
def test_classify(failure, reschedulable, category):
    verdict = _faults.classify(failure)
    assert (verdict.reschedulable, verdict.category) == (reschedulable, category), verdict
    assert verdict.reason


def test_failure_of_a_loop_result_takes_the_first_failed_item():
    result = {"failed": True, "msg": "One or more items failed", "results": [
        {"failed": False, "changed": True},
        {"failed": True, "msg": "cannot delete volume v: busy", "error": "error"},
        {"failed": True, "msg": "second"}]}
    f = _faults.failure_of(result, task="25-27 | cinder-volume: create", action="bootflow.cloud.volume", host="hv1")
    assert f == F("cannot delete volume v: busy", "error", "25-27 | cinder-volume: create", "volume", "hv1")


def test_failure_of_odd_results():
    assert _faults.failure_of(None).message == "the build failed (no message)"
    assert _faults.failure_of({"unreachable": True}).message == "the host was unreachable"
    assert _faults.failure_of({"exception": "Traceback\n  x\nValueError: boom"}).message == "ValueError: boom"
    long = _faults.failure_of({"msg": "x" * 5000}).message
    assert len(long) == _faults.MAX_MESSAGE and long.endswith("...")


def _retry(hosts, n):
    return {"num_attempts": n, "hosts": list(hosts), "failures": [{"host": h} for h in hosts]}


HOST_FAIL = _faults.Verdict(True, "host", "x")


def test_decide_reschedules_to_untried_alternates_in_order():
    d = _faults.decide(HOST_FAIL, _retry(["hv1"], 1), ["hv2", "hv1", "hv3"], 3, "u")
    assert d == _faults.Decision(True, ("hv2", "hv3"), "")


def test_decide_stops_after_max_attempts_with_novas_message():
    d = _faults.decide(HOST_FAIL, _retry(["hv1", "hv2", "hv3"], 3), ["hv4"], 3, "u-1")
    assert not d.reschedule
    assert d.reason.startswith("Exceeded maximum number of retries. Exhausted all hosts available for retrying "
                               "build failures for instance u-1.")
    assert "3 of max_attempts=3" in d.reason and "hv1, hv2, hv3" in d.reason
    assert not _faults.decide(HOST_FAIL, _retry(["hv1"], 1), ["hv2"], 1, "u").reschedule


def test_decide_without_alternates_left():
    d = _faults.decide(HOST_FAIL, _retry(["hv1", "hv2"], 2), ["hv1", "hv2"], 3, "u")
    assert not d.reschedule and "no alternate host left" in d.reason


def test_decide_never_reschedules_a_request_failure():
    image = _faults.Verdict(False, "image", "bad bytes")
    assert _faults.decide(image, _retry(["hv1"], 1), ["hv2"], 3, "u").reason == "Not rescheduled (image): bad bytes."
    assert not _faults.counts_against_host(image) and _faults.counts_against_host(HOST_FAIL)


def test_retry_bookkeeping():
    r = _faults.retry_of({})
    assert r == {"num_attempts": 1, "hosts": [], "failures": []}
    r = _faults.add_failure(r, {"host": "hv1", "message": "m"})
    r = _faults.add_failure(r, {"host": "hv1", "message": "again"})
    assert r["hosts"] == ["hv1"] and len(r["failures"]) == 2
    assert _faults.next_attempt(r)["num_attempts"] == 2
    assert _faults.retry_of({"retry": _faults.next_attempt(r)}) == dict(r, num_attempts=2)


# --- the conductor on a real database --------------------------------------------------------------

@pytest.fixture()
def cloud(tmp_path, backend):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(backend.new_db_url(), state_dir=state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    _token, auth = _identity.issue_token(db, _identity.key_repository(state_dir), "admin", "pw", "admin")
    image_file = tmp_path / "disk.raw"
    image_file.write_bytes(b"\0" * (1024 * 1024))
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth, state_dir, "img", str(image_file), "raw", "bare", "public", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/28", None, None, None, None, [], "present", False)
    for name, mem in (("hv1", 2048), ("hv2", 1536), ("hv3", 1024)):
        _placement.upsert_compute_node(db, name, {"vcpus": 2, "memory_mb": mem, "local_gb": 20}, {}, False)
    yield {"db": db, "auth": auth}
    db.dispose()


SPEC = _scheduler.RequestSpec(vcpus=1, memory_mb=128, root_gb=1)


def _built_on(cloud, host, name="vm1"):
    """An instance whose build on ``host`` got as far as a port and a volume (then failed)."""
    db, auth = cloud["db"], cloud["auth"]
    _c, row = _compute_api.create(db, auth, name, "m1.tiny", "img", ["net"], 1, None, False)
    got, _alts, _tried = _placement.claim(db, row.uuid, SPEC, [host])
    assert got == host
    with db.tx() as conn:
        instances.move_state(conn, row.uuid, "building", "block_device_mapping", host=host)
        vols = _db.table("volumes")
        conn.execute(vols.update().where(vols.c.instance_uuid == row.uuid).values(status="attaching", host=host))
    _networking.allocate_port(db, row.uuid, "net", host)
    return row.uuid


def _state(db, uuid):
    with db.tx() as conn:
        inst = instances.get_instance(conn, uuid)
        alloc = _placement.existing_allocation(conn, uuid)
        ports = _networking.instance_ports(conn, uuid)
        vols = conn.execute(_db.table("volumes").select().where(_db.table("volumes").c.instance_uuid == uuid)).fetchall()
        steps = conn.execute(_db.table("instance_steps").select().where(
            _db.table("instance_steps").c.instance_uuid == uuid).order_by(_db.table("instance_steps").c.id)).fetchall()
    return {"vm": (inst.vm_state, inst.task_state), "host": inst.host, "fault": inst.fault,
            "retry": (inst.request or {}).get("retry"), "claim": alloc.hostname if alloc else None,
            "ports": len(ports), "vols": [(v.status, v.host, v.device) for v in vols],
            "steps": [(s.seed_steps, s.action, s.host) for s in steps]}


DOMAIN_FAIL = F("domain bootflow-x: cannot start: Hook script execution failed", "error",
                "28 | nova-compute -> libvirt: define and start the domain", "domain", "hv1")


def test_host_failure_is_rescheduled_to_the_next_alternate(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2", "hv3"], started=time.monotonic())
    assert out["rescheduled"] and out["host"] == "hv2" and out["alternates"] == ["hv3"] and out["num_attempts"] == 2
    st = _state(db, uuid)
    assert st["vm"] == ("building", "scheduling") and st["host"] == "hv2" and st["claim"] == "hv2"
    assert st["ports"] == 0 and st["vols"] == [("creating", None, "vdb")] and st["fault"] is None
    assert st["retry"]["num_attempts"] == 2 and st["retry"]["hosts"] == ["hv1"]
    assert st["retry"]["failures"][0]["message"] == DOMAIN_FAIL.message
    assert st["steps"][-1] == ("8-12", "reschedule", "hv2")
    assert out["bootflow_step"]["from"] == "building/block_device_mapping"
    # the conductor's spec shows the attempts
    with db.tx() as conn:
        spec = conductor.spec(conn, instances.get_instance(conn, uuid))
    assert spec["retry"]["hosts"] == ["hv1"] and spec["fault"] is None


def test_every_host_failing_ends_in_error_after_max_attempts(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    alts = ["hv2", "hv3"]
    for host in ("hv1", "hv2", "hv3"):
        failure = F("start failed on %s" % host, "error", "28 | domain", "domain", host)
        out = _reschedule.failed_build(db, auth, uuid, host, failure, alternates=alts, max_attempts=3)
        alts = out["alternates"]
    assert not out["rescheduled"] and out["num_attempts"] == 3
    st = _state(db, uuid)
    assert st["vm"] == ("error", None) and st["host"] is None and st["claim"] is None and st["ports"] == 0
    assert st["vols"] == [("creating", None, "vdb")]
    fault = st["fault"]
    assert fault["message"] == "start failed on hv3" and fault["host"] == "hv3" and fault["step"] == "28 | domain"
    assert fault["reason"].startswith("Exceeded maximum number of retries") and fault["at"].endswith("Z")
    assert [a["host"] for a in fault["attempts"]] == ["hv1", "hv2", "hv3"]
    assert [s for s in st["steps"] if s[0] in ("8-12", "fault")] == [
        ("8-12", "reschedule", "hv2"), ("8-12", "reschedule", "hv3"), ("fault", "build_failed", "hv3")]
    # the capacity is free again on every host
    with db.tx() as conn:
        assert _db.count(conn, "allocations") == 0


def test_max_attempts_one_means_no_reschedule(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2"], max_attempts=1)
    assert not out["rescheduled"] and "1 of max_attempts=1" in out["reason"]
    assert _state(db, uuid)["vm"] == ("error", None)


def test_request_failure_goes_straight_to_error(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    bad = F("checksum mismatch (sha512): expected aa got bb", "error", "19-21 | glance-api", "image_fetch", "hv1")
    out = _reschedule.failed_build(db, auth, uuid, "hv1", bad, alternates=["hv2", "hv3"])
    assert not out["rescheduled"] and not out["reschedulable"] and out["category"] == "image"
    st = _state(db, uuid)
    assert st["vm"] == ("error", None) and st["claim"] is None and st["ports"] == 0 and st["host"] is None
    assert st["fault"]["category"] == "image" and st["fault"]["reason"].startswith("Not rescheduled (image)")
    assert len(st["fault"]["attempts"]) == 1


def test_a_stale_alternate_is_skipped(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    big = _scheduler.RequestSpec(vcpus=1, memory_mb=1024, root_gb=1)   # hv2: 1536 - 512 reserved
    assert _placement.claim(db, "someone-else", big, ["hv2"])[0] == "hv2"
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2", "hv3"])
    assert out["rescheduled"] and out["host"] == "hv3" and out["alternates"] == []


def test_no_alternate_can_be_claimed(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    big = _scheduler.RequestSpec(vcpus=1, memory_mb=1024, root_gb=1)
    assert _placement.claim(db, "someone-else", big, ["hv2"])[0] == "hv2"
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2"])
    assert not out["rescheduled"] and "no alternate could be claimed" in out["reason"]
    st = _state(db, uuid)
    assert st["vm"] == ("error", None) and st["claim"] is None and st["host"] is None


def _failed_builds(db, host):
    with db.tx() as conn:
        nodes = _db.table("compute_nodes")
        return conn.execute(nodes.select().where(nodes.c.hostname == host)).first().failed_builds


def test_failed_cleanup_is_recorded_released_and_rescheduled(cloud):
    """libvirtd down (or the host gone): the undo could not run there. The conductor does not wait for the
    host - it records the residue for the host to remove when it is back, releases the claim and the ports,
    and reschedules; the host's failed_builds goes up (BuildFailureWeigher)."""
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    with db.tx() as conn:
        mac = _networking.instance_ports(conn, uuid)[0].mac
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2"],
                                   cleanup_error="Undo | libvirt: destroy and undefine the domain: no connection")
    assert out["rescheduled"] and out["host"] == "hv2"
    st = _state(db, uuid)
    assert st["vm"] == ("building", "scheduling") and st["host"] == "hv2" and st["claim"] == "hv2"
    assert st["ports"] == 0 and st["vols"] == [("creating", None, "vdb")]
    residue = out["residue"]["residue"]
    assert residue["domain_name"] == "bootflow-%s" % uuid and [p["mac"] for p in residue["ports"]] == [mac]
    assert [v["pool"] for v in residue["volumes"]] == ["bootflow"]
    assert _failed_builds(db, "hv1") == 1 and _failed_builds(db, "hv2") == 0
    left = _cleanups.pending(db, auth, "hv1")
    assert [c["instance_uuid"] for c in left] == [uuid] and left[0]["reason"].startswith("Undo | libvirt")
    assert _cleanups.pending(db, auth, "hv2") == []
    # another host cannot close it; check mode marks nothing; then hv1 removed it
    assert _cleanups.done(db, auth, "hv2", [left[0]["id"]]) == []
    assert _cleanups.done(db, auth, "hv1", [left[0]["id"]], check_mode=True) == [left[0]["id"]]
    assert len(_cleanups.pending(db, auth, "hv1")) == 1
    assert _cleanups.done(db, auth, "hv1", [left[0]["id"]]) == [left[0]["id"]]
    assert _cleanups.pending(db, auth, "hv1") == []


def test_failed_cleanup_without_an_alternate_ends_in_error_with_nothing_held(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=[],
                                   cleanup_error="hv1 did not answer")
    assert not out["rescheduled"]
    st = _state(db, uuid)
    assert st["vm"] == ("error", None) and st["host"] is None and st["claim"] is None and st["ports"] == 0
    assert st["fault"]["cleanup_error"] == "hv1 did not answer"
    assert len(_cleanups.pending(db, auth, "hv1")) == 1


def test_residue_of_an_instance_back_on_the_host_spares_the_new_build(cloud):
    """Rescheduled away from hv1 and later built on hv1 again: only the old DHCP reservation is residue."""
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2"], cleanup_error="down")
    with db.tx() as conn:
        instances.move_state(conn, uuid, "building", "networking", host="hv1")
    _networking.allocate_port(db, uuid, "net", "hv1")
    (entry,) = _cleanups.pending(db, auth, "hv1")
    assert entry["residue"]["domain_name"] is None and entry["residue"]["volumes"] == []
    assert len(entry["residue"]["ports"]) == 1   # the old MAC, not the new port's


def test_a_successful_build_resets_the_failed_builds(cloud):
    db = cloud["db"]
    _placement.count_failed_build(db, "hv3")
    _placement.count_failed_build(db, "hv3")
    assert _failed_builds(db, "hv3") == 2
    with db.tx() as conn:
        states = {h.name: h.failed_builds for h in _placement.host_states(conn)}
        _placement.reset_failed_builds(conn, "hv3")
    assert states == {"hv1": 0, "hv2": 0, "hv3": 2} and _failed_builds(db, "hv3") == 0


def test_the_alternates_come_from_the_schedule_when_the_task_names_none(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    with db.tx() as conn:
        instances.update_request(conn, uuid, alternates=["hv3", "hv2"])
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL)
    assert out["rescheduled"] and out["host"] == "hv3" and out["alternates"] == ["hv2"]
    with db.tx() as conn:
        assert instances.get_instance(conn, uuid).request["alternates"] == ["hv2"]


def test_an_instance_a_step_put_in_error_is_cleaned_up_not_rescheduled(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    with db.tx() as conn:
        instances.set_fault(conn, uuid, "No more IP addresses available on subnet 10.0.0.0/28", "port", "hv1")
    nips = F("No more IP addresses available on subnet 10.0.0.0/28", "invalid", "22-24 | port", "port", "hv1")
    out = _reschedule.failed_build(db, auth, uuid, "hv1", nips, alternates=["hv2"])
    assert not out["rescheduled"] and out["category"] == "no_ips"
    st = _state(db, uuid)
    assert st["vm"] == ("error", None) and st["claim"] is None and st["ports"] == 0
    # an unexpected failure on an instance already in ERROR is not rescheduled either
    uuid2 = _built_on(cloud, "hv2", name="vm2")
    with db.tx() as conn:
        instances.set_fault(conn, uuid2, "boom", "x", "hv2")
    out = _reschedule.failed_build(db, auth, uuid2, "hv2", F("boom", "error", host="hv2"), alternates=["hv3"])
    assert not out["rescheduled"] and out["category"] == "error"


def test_check_mode_changes_nothing(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    before = _state(db, uuid)
    out = _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, alternates=["hv2"], check_mode=True)
    assert out["changed"] and not out["rescheduled"] and out["host"] is None
    assert _state(db, uuid) == before


def test_refusals(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    before = _state(db, uuid)
    with pytest.raises(Conflict, match="holds its claim on hv1, not on hv2"):
        _reschedule.failed_build(db, auth, uuid, "hv2", DOMAIN_FAIL, alternates=["hv3"])
    with pytest.raises(InvalidRequest, match="max_attempts must be at least 1"):
        _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL, max_attempts=0)
    reader = _identity.AuthContext("u", "r", auth.project_id, "admin", ("reader",), time.time() + 60, "a")
    with pytest.raises(AuthError, match="compute:set_error"):
        _reschedule.failed_build(db, reader, uuid, "hv1", DOMAIN_FAIL)
    assert _state(db, uuid) == before
    with db.tx() as conn:
        instances.move_state(conn, uuid, "active", None)
    with pytest.raises(Conflict, match="is active: only a failed build"):
        _reschedule.failed_build(db, auth, uuid, "hv1", DOMAIN_FAIL)


# --- issue 16: the alternates are the scheduler's, and every one is filtered again --------------------

def _whole_state(db):
    """Every row of the tables a reschedule touches: nothing may change when one is refused."""
    out = {}
    with db.tx() as conn:
        for name in ("instances", "allocations", "compute_nodes", "ports", "volumes", "instance_steps"):
            table = _db.table(name)
            out[name] = sorted(tuple(sorted((k, repr(v)) for k, v in r._mapping.items()))
                               for r in conn.execute(table.select()).fetchall())
    return out


def _member(auth):
    return _identity.AuthContext("m-id", "mallory", auth.project_id, "admin", ("member",), time.time() + 60, "a")


def test_attack_a_member_naming_a_disabled_host_as_alternate_is_refused_state_unchanged(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    with db.tx() as conn:
        instances.update_request(conn, uuid, alternates=["hv2"])
    _placement.upsert_compute_node(db, "hv3", {"vcpus": 2, "memory_mb": 1024, "local_gb": 20}, {"disabled": True},
                                   False)
    before = _whole_state(db)
    with pytest.raises(AuthError, match="alternates names the hosts to build on, which only an admin may do"):
        _reschedule.failed_build(db, _member(auth), uuid, "hv1", DOMAIN_FAIL, alternates=["hv3"])
    assert _whole_state(db) == before
    # the member's own reschedule (no alternates) takes the scheduler's, and never the disabled host
    out = _reschedule.failed_build(db, _member(auth), uuid, "hv1", DOMAIN_FAIL)
    assert out["rescheduled"] and out["host"] == "hv2"


def test_a_stored_alternate_disabled_since_scheduling_is_skipped_a_stale_report_is_not(cloud):
    db, auth = cloud["db"], cloud["auth"]
    uuid = _built_on(cloud, "hv1")
    _placement.upsert_compute_node(db, "hv4", {"vcpus": 2, "memory_mb": 2048, "local_gb": 20}, {}, False)
    _placement.upsert_compute_node(db, "hv5", {"vcpus": 2, "memory_mb": 2048, "local_gb": 20}, {}, False)
    with db.tx() as conn:
        instances.update_request(conn, uuid, alternates=["hv2", "hv4", "hv3"])
    # after scheduling: hv2 is disabled, hv4 has not reported for an hour
    _placement.upsert_compute_node(db, "hv2", {"vcpus": 2, "memory_mb": 1536, "local_gb": 20}, {"disabled": True},
                                   False)
    nodes = _db.table("compute_nodes")
    with db.tx() as conn:
        conn.execute(nodes.update().where(nodes.c.hostname == "hv4").values(updated_at=_db.now() - _dt(3600)))
    out = _reschedule.failed_build(db, _member(auth), uuid, "hv1", DOMAIN_FAIL)
    # liveness was judged when the request was scheduled (heartbeats come with boot.yml, not continuously): a
    # stale report alone does not skip an alternate in a later build pass, a disabled host does
    assert out["rescheduled"] and out["host"] == "hv4", out
    assert out["claim_failures"] == {"hv2": "ComputeFilter: disabled"}, out["claim_failures"]
    # an admin's alternates are filtered the same way: nothing left passes -> ERROR, nothing held
    uuid2 = _built_on(cloud, "hv1", name="vm2")
    out = _reschedule.failed_build(db, auth, uuid2, "hv1", DOMAIN_FAIL, alternates=["hv2", "nohost"])
    assert not out["rescheduled"] and "No alternate passes the filters" in out["reason"]
    assert out["claim_failures"]["nohost"] == "not a registered compute node"
    st = _state(db, uuid2)
    assert st["vm"] == ("error", None) and st["claim"] is None


def test_the_recheck_runs_the_zone_filter_and_the_operator_hosts(cloud):
    db, auth = cloud["db"], cloud["auth"]
    _c, row = _compute_api.create(db, auth, "vmz", "m1.tiny", "img", ["net"], 0, None, False, availability_zone="nova")
    _placement.upsert_compute_node(db, "hv2", {"vcpus": 2, "memory_mb": 1536, "local_gb": 20},
                                   {"availability_zone": "az9"}, False)
    with db.tx() as conn:
        row = instances.get_instance(conn, row.uuid)
    passed, skipped = _reschedule.recheck(db, row, ["hv2", "hv3", "hv1"], _scheduler.SchedulerConfig(), hosts=["hv2", "hv3"])
    assert passed == ["hv3"]
    assert skipped["hv2"].startswith("AvailabilityZoneFilter: host is in zone az9")
    assert "operator setting scheduler.hosts" in skipped["hv1"]


def _dt(seconds):
    import datetime   # pylint: disable=import-outside-toplevel
    return datetime.timedelta(seconds=seconds)
