# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server groups (Nova's os-server-groups) on a real SQLite file and a real PostgreSQL server (the
``backend`` fixture): create / look up / delete, validation, immutability, project scoping, the
server_groups and server_group_members quotas, membership written with the instance and removed with
it, the members' hosts, the scheduler's RequestSpec, and the claim re-checking the hard policies.

The race: N processes, each with its own engine, schedule members of one group on the same snapshot
(the filters pass every host for each of them), wait for each other at a barrier, then claim at once.
Only the claim-time check, serialised per group, keeps anti-affinity (never two on a host) and affinity
(all on one host). The same race against a real Placement is in test_placement.py.
"""

from __future__ import annotations

import multiprocessing
import random
import time

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import reschedule as _reschedule
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NoValidHostError,
    NotFound,
    QuotaExceeded,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

CTX = multiprocessing.get_context("fork")
HOSTS = ["sg1", "sg2", "sg3"]
RACERS = 6


@pytest.fixture()
def world(tmp_path, backend):
    """Identity (admin; alice member and rita reader of pa; bob member of pb), a flavor, an image, a network,
    and three compute nodes with room for far more guests than any test boots."""
    state_dir = str(tmp_path / "state")
    db = _db.open_db(backend.new_db_url(), state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {}
    for project, user, role in (("pa", "alice", "member"), ("pb", "bob", "member"), ("pa", "rita", "reader")):
        _identity.ensure_project(db, project, "", True, "present", False)
        _identity.ensure_user(db, user, "pw", project, True, "on_create", "present", False)
        _identity.ensure_role_assignment(db, user, project, role, "present", False)
        auth[user] = _identity.issue_token(db, keys, user, "pw", project)[1]
    auth["admin"] = _identity.issue_token(db, keys, "admin", "pw", "admin")[1]
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["admin"], state_dir, "img", str(image), "raw", "bare", "public", 0, 0, {}, "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    for name in HOSTS:
        _placement.upsert_compute_node(db, name, {"vcpus": 16, "memory_mb": 16384, "local_gb": 200}, {}, False)
    yield {"db": db, "auth": auth, "state_dir": state_dir}
    db.dispose()


def group(world, name, policy, rules=None, who="alice", check_mode=False):
    return _server_groups.ensure(world["db"], world["auth"][who], name, policy, rules, "present", check_mode)


def boot(world, name, server_group=None, who="alice", check_mode=False):
    """nova-api's create (steps 3-7) of an m1.tiny instance, optionally into a group."""
    return _compute_api.create(world["db"], world["auth"][who], name, "m1.tiny", "img", ["net"], 0, None, check_mode,
                               server_group=server_group)


def counts(db):
    with db.tx() as conn:
        return {t: _db.count(conn, t) for t in ("server_groups", "server_group_members", "instances", "volumes",
                                                "allocations")}


def spec_of(db, uuid):
    """The RequestSpec the schedule step builds for the instance (flavor, request, server group, retries)."""
    with db.tx() as conn:
        row = instances.get_instance(conn, uuid)
        flavor = _compute_api.get_flavor(conn, row.flavor_id)
        info = _server_groups.scheduling_info(conn, uuid)
    return _compute_api.request_spec(flavor, None, row.request, info)


# --- the group records ----------------------------------------------------------------------------

def test_create_look_up_idempotent_and_immutable(world):
    db = world["db"]
    changed, before, after = group(world, "web", "anti-affinity", {"max_server_per_host": 2}, check_mode=True)
    assert changed and before is None and after["id"] is None and after["rules"] == {"max_server_per_host": 2}
    assert counts(db)["server_groups"] == 0
    changed, before, web = group(world, "web", "anti-affinity", {"max_server_per_host": "2"})   # Nova accepts "2"
    assert changed and before is None
    assert (web["name"], web["policy"], web["rules"], web["members"], web["hosts"]) == (
        "web", "anti-affinity", {"max_server_per_host": 2}, [], [])
    assert web["project_id"] == world["auth"]["alice"].project_id and web["created_at"].endswith("Z")
    # the same again: no change, the same group
    assert group(world, "web", "anti-affinity", {"max_server_per_host": 2}) == (False, web, web)
    # policy and rules are immutable: a clear conflict, nothing changed
    for policy, rules in (("affinity", None), ("anti-affinity", None), ("anti-affinity", {"max_server_per_host": 3})):
        with pytest.raises(Conflict, match="already exists .* with policy anti-affinity and rules "
                                           "{'max_server_per_host': 2}; a server group's policy and rules cannot be "
                                           "changed"):
            group(world, "web", policy, rules)
    # looked up without a policy, by name or ID, also by a reader
    assert group(world, "web", None) == (False, web, web)
    assert group(world, web["id"], None, who="rita") == (False, web, web)
    with pytest.raises(NotFound, match="Server group nope could not be found \\(give a policy to create it\\)"):
        group(world, "nope", None)
    assert counts(db)["server_groups"] == 1


@pytest.mark.parametrize("policy,rules,message", [
    ("affinity", {"max_server_per_host": 2}, "Only anti-affinity policy supports rules"),
    ("soft-anti-affinity", {"max_server_per_host": 1}, "Only anti-affinity policy supports rules"),
    ("anti-affinity", {"max_servers": 2}, "Unknown server group rule\\(s\\) max_servers"),
    ("anti-affinity", {"max_server_per_host": 0}, "must be an integer from 1 to 2147483647, got 0"),
    ("anti-affinity", {"max_server_per_host": -1}, "must be an integer from 1"),
    ("anti-affinity", {"max_server_per_host": "two"}, "must be an integer from 1"),
    ("anti-affinity", {"max_server_per_host": True}, "must be an integer from 1"),
    ("anti-affinity", {"max_server_per_host": 2 ** 31}, "must be an integer from 1"),
    ("anti-affinity", ["max_server_per_host"], "rules must be a dictionary"),
    ("spread", None, "Invalid server group policy 'spread'"),
])
def test_invalid_policy_or_rules_write_nothing(world, policy, rules, message):
    with pytest.raises(InvalidRequest, match=message):
        group(world, "g", policy, rules)
    assert counts(world["db"])["server_groups"] == 0


def test_invalid_names_and_rules_without_a_policy(world):
    for bad in ("", " web", "a\nb", "x" * 256):
        with pytest.raises(InvalidRequest, match="Invalid server group name"):
            group(world, bad, "affinity")
    with pytest.raises(InvalidRequest, match="rules need a policy"):
        group(world, "web", None, {"max_server_per_host": 2})
    assert counts(world["db"])["server_groups"] == 0


def test_groups_are_project_scoped_and_need_a_role(world):
    db, auth = world["db"], world["auth"]
    _c, _b, web = group(world, "web", "anti-affinity")
    # bob (project pb) sees no group web: not by name, not by ID; his own web is another group
    for ref in ("web", web["id"]):
        with pytest.raises(NotFound):
            group(world, ref, None, who="bob")
        assert _server_groups.ensure(db, auth["bob"], ref, None, None, "absent", False) == (False, None, None)
    _c, _b, bobs = group(world, "web", "affinity", who="bob")
    assert bobs["id"] != web["id"] and bobs["policy"] == "affinity"
    # an admin reaches alice's group by its ID (a name is looked up in the admin's own project)
    assert group(world, web["id"], None, who="admin")[2]["id"] == web["id"]
    with pytest.raises(NotFound):
        group(world, "web", None, who="admin")
    # a reader may look, not create or delete
    with pytest.raises(AuthError, match="compute:server_groups:create"):
        group(world, "other", "affinity", who="rita")
    with pytest.raises(AuthError, match="compute:server_groups:delete"):
        _server_groups.ensure(db, auth["rita"], "web", None, None, "absent", False)
    assert counts(db)["server_groups"] == 2


def test_server_groups_quota(world):
    db, alice = world["db"], world["auth"]["alice"]
    _quota.set_limits(db, alice.project_id, {"server_groups": 2}, False)
    group(world, "g1", "affinity")
    group(world, "g2", "soft-affinity")
    with pytest.raises(QuotaExceeded, match="Quota exceeded for server_groups: Requested 1, but already used 2 of 2 "
                                            "server groups."):
        group(world, "g3", "anti-affinity")
    assert group(world, "g1", "affinity")[0] is False   # an existing group is no new one
    assert counts(db)["server_groups"] == 2
    with db.tx() as conn:
        assert _quota.usage(conn, alice.project_id)["server_groups"] == 2
        assert _quota.limits(conn, alice.project_id)["server_group_members"] == _quota.DEFAULTS["server_group_members"] == 10


# --- membership: nova-api's create, the delete --------------------------------------------------------

def test_an_instance_joins_its_group_in_the_create_transaction(world):
    db = world["db"]
    _c, _b, web = group(world, "web", "anti-affinity")
    before = counts(db)
    # refused before anything is written: an unknown group, another project's group
    with pytest.raises(NotFound, match="Server group nope could not be found."):
        boot(world, "vm1", "nope")
    with pytest.raises(NotFound, match="Server group %s could not be found." % web["id"]):
        boot(world, "vm1", web["id"], who="bob")
    assert counts(db) == before
    # check mode: validated, nothing written
    assert boot(world, "vm1", "web", check_mode=True) == (True, None)
    assert counts(db) == before
    changed, row = boot(world, "vm1", "web")
    assert changed
    with db.tx() as conn:
        assert _server_groups.membership(conn, row.uuid).id == web["id"]
        members = _server_groups.group_dict(conn, _server_groups.get_group(conn, "web"))["members"]
    assert members == [{"instance_uuid": row.uuid, "name": "vm1", "vm_state": "building", "host": None}]
    # idempotent with the same group; another group (or none) for the same name is a conflict
    assert boot(world, "vm1", web["id"]) == (False, row)
    group(world, "db", "affinity")
    for other in ("db", None):
        with pytest.raises(Conflict, match="different flavor/image/networks/volume/root volume/server group"):
            boot(world, "vm1", other)
    assert counts(db)["server_group_members"] == 1


def test_server_group_members_quota(world):
    db, alice = world["db"], world["auth"]["alice"]
    _quota.set_limits(db, alice.project_id, {"server_group_members": 2}, False)
    group(world, "web", "anti-affinity")
    group(world, "other", "anti-affinity")
    uuids = [boot(world, "vm%d" % i, "web")[1].uuid for i in range(2)]
    before = counts(db)
    with pytest.raises(QuotaExceeded, match="Quota exceeded for server_group_members: Requested 1, but already used 2 "
                                            "of 2 members of the server group."):
        boot(world, "vm2", "web")
    assert counts(db) == before     # no instance, no membership
    # the limit is per group: another group of the project has room; a deleted member frees its place
    assert boot(world, "vm2", "other")[0]
    with db.tx() as conn:
        assert _quota.usage(conn, alice.project_id)["server_group_members"] == 2   # the fullest group
        instances.soft_delete(conn, uuids[0])
    assert boot(world, "vm3", "web")[0]


def test_delete_removes_the_membership_and_error_without_host_is_on_no_host(world):
    db = world["db"]
    _c, _b, web = group(world, "web", "anti-affinity", {"max_server_per_host": 2})
    a, b, c, d = (boot(world, n, "web")[1].uuid for n in ("a", "b", "c", "d"))
    spec = spec_of(db, a)
    assert _placement.claim(db, a, spec, ["sg1"])[0] == "sg1"       # claimed, host not written yet: on sg1
    with db.tx() as conn:
        instances.move_state(conn, b, "building", "scheduling", host="sg2")   # a host without a claim counts too
        instances.set_fault(conn, c, "No valid host was found.", "schedule", None)   # ERROR, no host: on no host
        hosts = {m["name"]: m["host"] for m in _server_groups.members(conn, web["id"])}
        assert hosts == {"a": "sg1", "b": "sg2", "c": None, "d": None}
        assert sorted(_server_groups.member_hosts(conn, web["id"], exclude=d)) == ["sg1", "sg2"]
        assert _server_groups.group_dict(conn, _server_groups.get_group(conn, web["id"]))["hosts"] == ["sg1", "sg2"]
    # the scheduler's view for d: the other members' hosts and the rule
    spec = spec_of(db, d)
    assert (spec.group_policy, sorted(spec.group_hosts), spec.max_server_per_host) == ("anti-affinity", ["sg1", "sg2"], 2)
    # delete (what instance state=absent does last): the membership goes with the record
    _placement.release(db, a)
    with db.tx() as conn:
        instances.soft_delete(conn, a)
        instances.soft_delete(conn, c)
        assert [m["name"] for m in _server_groups.members(conn, web["id"])] == ["b", "d"]
        assert _server_groups.membership(conn, a) is None
    assert counts(db)["server_group_members"] == 2


def test_deleting_a_group_with_members_lets_them_leave(world):
    db, alice = world["db"], world["auth"]["alice"]
    group(world, "web", "anti-affinity")
    a, b = (boot(world, n, "web")[1].uuid for n in ("a", "b"))
    assert _placement.claim(db, a, spec_of(db, a), ["sg1"])[0] == "sg1"
    changed, before, after = _server_groups.ensure(db, alice, "web", None, None, "absent", True)   # check mode
    assert changed and after is None and [m["name"] for m in before["members"]] == ["a", "b"]
    assert counts(db)["server_groups"] == 1
    changed, before, after = _server_groups.ensure(db, alice, "web", None, None, "absent", False)
    assert changed and before["hosts"] == ["sg1"] and after is None
    assert counts(db)["server_groups"] == 0 and counts(db)["server_group_members"] == 0
    assert _server_groups.ensure(db, alice, "web", None, None, "absent", False) == (False, None, None)
    # the instances stay, free of the policy: b may now join a on sg1
    assert spec_of(db, b).group_policy is None
    assert _placement.claim(db, b, spec_of(db, b), ["sg1"])[0] == "sg1"
    assert counts(db)["instances"] == 2


# --- the claim re-checks the hard policies -----------------------------------------------------------

def test_the_claim_skips_a_host_that_breaks_anti_affinity_and_says_why(world):
    db = world["db"]
    group(world, "web", "anti-affinity")
    a, b = (boot(world, n, "web")[1].uuid for n in ("a", "b"))
    stale = spec_of(db, b)                      # b's snapshot: nobody placed yet, every host passes
    assert _scheduler.select_hosts(_host_states(db), stale, _cfg()).host == "sg1"
    assert _placement.claim(db, a, spec_of(db, a), ["sg1"])[0] == "sg1"
    host, alternates, tried = _placement.claim(db, b, stale, ["sg1", "sg2", "sg3"])
    assert (host, alternates) == ("sg2", ["sg3"])
    assert tried == {"sg1": "server group web: anti-affinity: 1 group member(s) already on the host, "
                            "max_server_per_host 1 (re-checked at claim time)"}
    # nowhere left: No valid host, naming the policy for each host
    c = boot(world, "c", "web")[1].uuid
    assert _placement.claim(db, c, stale, ["sg3"])[0] == "sg3"
    d = boot(world, "d", "web")[1].uuid
    with pytest.raises(NoValidHostError) as err:
        _placement.claim(db, d, stale, HOSTS)
    failures = err.value.details["claim_failures"]
    assert sorted(failures) == HOSTS and all("anti-affinity: 1 group member(s) already on the host" in r
                                             for r in failures.values())
    assert str(err.value).startswith("No valid host was found. Claims failed: sg1: server group web: anti-affinity")
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, d) is None


def test_the_claim_keeps_affinity_and_soft_policies_are_not_rechecked(world):
    db = world["db"]
    group(world, "db", "affinity")
    group(world, "soft", "soft-anti-affinity")
    a, b = (boot(world, n, "db")[1].uuid for n in ("a", "b"))
    assert _placement.claim(db, a, spec_of(db, a), ["sg2"])[0] == "sg2"
    host, _alts, tried = _placement.claim(db, b, spec_of(db, b), ["sg1", "sg3", "sg2"])
    assert host == "sg2" and tried == {h: "server group db: affinity: group members are on sg2 (re-checked at claim "
                                          "time)" for h in ("sg1", "sg3")}
    # a soft group only weighs: two members on one host are fine at claim time
    s1, s2 = (boot(world, n, "soft")[1].uuid for n in ("s1", "s2"))
    assert _placement.claim(db, s1, spec_of(db, s1), ["sg1"])[0] == "sg1"
    assert _placement.claim(db, s2, spec_of(db, s2), ["sg1"]) == ("sg1", [], {})


def test_reschedule_claims_only_an_alternate_that_keeps_the_policy(world):
    db, auth = world["db"], world["auth"]["alice"]
    group(world, "web", "anti-affinity")
    a, b = (boot(world, n, "web")[1].uuid for n in ("a", "b"))
    assert _placement.claim(db, a, spec_of(db, a), ["sg1"])[0] == "sg1"
    assert _placement.claim(db, b, spec_of(db, b), ["sg2"])[0] == "sg2"
    with db.tx() as conn:
        instances.move_state(conn, b, "building", "spawning", host="sg2")
    failure = _faults.Failure("cannot start: Hook script execution failed", "error",
                              "28 | nova-compute -> libvirt: define and start the domain", "domain", "sg2")
    # the scheduler's alternates were sg1 (taken by a since) and sg3 (kept with b's request: a member may not
    # name them); the re-check's ServerGroupAntiAffinityFilter skips sg1 before any claim
    with db.tx() as conn:
        instances.update_request(conn, b, alternates=["sg1", "sg3"])
    out = _reschedule.failed_build(db, auth, b, "sg2", failure)
    assert out["rescheduled"] and out["host"] == "sg3"
    assert out["claim_failures"] == {"sg1": "ServerGroupAntiAffinityFilter: anti-affinity: 1 group member(s) already "
                                            "on the host, max_server_per_host 1"}
    # with only sg1 left: ERROR, and the reason names the policy
    with db.tx() as conn:
        instances.move_state(conn, b, "building", "spawning", host="sg3")
        instances.update_request(conn, b, alternates=["sg1"])
    failure = _faults.Failure("cannot start again", "error", "28 | domain", "domain", "sg3")
    out = _reschedule.failed_build(db, auth, b, "sg3", failure)
    assert not out["rescheduled"] and "anti-affinity" in out["reason"] and "sg1" in out["claim_failures"]
    with db.tx() as conn:
        assert _placement.existing_allocation(conn, b) is None and instances.get_instance(conn, b).vm_state == "error"


# --- the existing doubt: a re-run after a crash mid-reschedule must not retry a failed host -------------

def test_a_rerun_after_a_crash_in_the_reschedule_excludes_the_hosts_already_tried(world):
    """boot.yml killed inside the conductor's reschedule, after the claim on the failed host was released and
    the retry record saved, before the alternate was claimed: the instance is building/scheduling without a
    claim. The re-run's schedule must leave out the host the build failed on (Nova's RetryFilter)."""
    db = world["db"]
    uuid = boot(world, "vm1")[1].uuid
    assert _placement.claim(db, uuid, spec_of(db, uuid), ["sg1"])[0] == "sg1"
    failure = _faults.Failure("cannot start: Hook script execution failed", "error", "28 | domain", "domain", "sg1")
    with db.tx() as conn:
        row = instances.get_instance(conn, uuid)
    retry = _faults.add_failure(_faults.retry_of(row.request),
                                _faults.attempt_record(failure, _faults.classify(failure), instances.now_iso()))
    # what _reschedule._reclaim does before its claim - then the crash
    _reschedule.release(db, uuid)
    with db.tx() as conn:
        conductor.save_retry(conn, uuid, _faults.next_attempt(retry))
        instances.move_state(conn, uuid, "building", "scheduling", host=None)
    # the re-run: what the schedule step does (sg1 would win on weight: it is the emptiest and first)
    spec = spec_of(db, uuid)
    assert spec.tried_hosts == ["sg1"]
    sel = _scheduler.select_hosts(_host_states(db), spec, _cfg())
    assert sel.rejected == {"sg1": "RetryFilter: already tried: a build of this instance failed on this host"}
    assert "sg1" not in [h[0] for h in sel.hosts] and sel.host == "sg2"
    assert _placement.claim(db, uuid, spec, [h[0] for h in sel.hosts])[0] == "sg2"
    # without a retry record nothing is excluded
    assert spec_of(db, boot(world, "vm2")[1].uuid).tried_hosts == []


def _cfg(**kw):
    return _scheduler.SchedulerConfig(service_down_time=10 ** 9, **kw)


def _host_states(db):
    with db.tx() as conn:
        return [s for s in _placement.host_states(conn) if s.name in HOSTS]


# --- the race ----------------------------------------------------------------------------------------

def _racer(url, state_dir, uuid, hosts, subset, seed, barrier, queue, placement_url=None):
    """One boot's scheduler in its own process: snapshot + filters + weighers, then - once every racer has
    decided on the same snapshot - the claim. Puts (uuid, host or None, claim failures, first choice)."""
    db = _db.open_db(url, state_dir=state_dir)
    try:
        spec = spec_of(db, uuid)
        with db.tx() as conn:
            states = [s for s in _placement.host_states(conn) if s.name in hosts]
        sel = _scheduler.select_hosts(states, spec, _cfg(host_subset_size=subset), rng=random.Random(seed))
        barrier.wait(60)
        kwargs = {} if placement_url is None else {"placement": _placement.connect(placement_url)}
        try:
            host, _alts, tried = _placement.claim(db, uuid, spec, [h[0] for h in sel.hosts], **kwargs)
            queue.put((uuid, host, tried, sel.host, None))
        except NoValidHostError as exc:
            queue.put((uuid, None, exc.details["claim_failures"], sel.host, str(exc)))
    except Exception as exc:  # pylint: disable=broad-except  # reported to the parent
        queue.put((uuid, "error", {}, None, "%s: %s" % (type(exc).__name__, exc)))
    finally:
        db.dispose()


def run_race(db, state_dir, uuids, hosts, subset=1, placement_url=None):
    """Start one racer per instance at once; returns {uuid: (host, claim failures, first choice, message)}."""
    barrier, queue = CTX.Barrier(len(uuids)), CTX.Queue()
    procs = [CTX.Process(target=_racer, args=(db.url, state_dir, u, hosts, subset, i, barrier, queue, placement_url))
             for i, u in enumerate(uuids)]
    for p in procs:
        p.start()
    got = [queue.get(timeout=180) for _p in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    errors = [g for g in got if g[1] == "error"]
    assert not errors, errors
    return {u: (host, tried, first, msg) for u, host, tried, first, msg in got}


def members_boot(world, group_name, n, who="alice"):
    return [boot(world, "%s-%d" % (group_name, i), group_name, who=who)[1].uuid for i in range(n)]


def check_anti_affinity_race(db, got, hosts):
    """At most one member per host (max_server_per_host 1), every host used, the others No valid host with the
    anti-affinity reason for each host they tried; the DB holds exactly the claims that said yes."""
    assert len({first for _h, _t, first, _m in got.values()}) == 1, "not a race: the racers chose differently"
    placed = {u: host for u, (host, _t, _f, _m) in got.items() if host}
    assert sorted(placed.values()) == sorted(hosts), got          # never two on a host, and each host once
    for uuid, (host, tried, _first, msg) in got.items():
        if host is None:
            assert "No valid host was found" in msg and "anti-affinity" in msg, msg
            assert sorted(tried) == sorted(hosts) and all("anti-affinity: 1 group member(s) already on the host"
                                                          in why for why in tried.values()), tried
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    with db.tx() as conn:
        rows = conn.execute(_db.sa.select(alloc.c.consumer_id, nodes.c.hostname)
                            .join(nodes, nodes.c.id == alloc.c.compute_node_id)
                            .where(alloc.c.consumer_id.in_(list(got)))).fetchall()
    assert {r.consumer_id: r.hostname for r in rows} == placed
    return placed


def check_affinity_race(db, got):
    """Every member on one host (room for all), though the racers' snapshots pointed them at different hosts."""
    assert len({first for _h, _t, first, _m in got.values()}) > 1, "not a race: every racer chose the same host"
    placed = {u: host for u, (host, _t, _f, _m) in got.items()}
    assert None not in placed.values() and len(set(placed.values())) == 1, got
    for host, tried, first, _msg in got.values():
        if first != host:   # moved: its first choice was refused for the group
            assert "affinity: group members are on %s" % host in tried[first], tried
    with db.tx() as conn:
        assert {_placement.existing_allocation(conn, u).hostname for u in got} == set(placed.values())
    return placed


def test_racing_anti_affinity_members_never_share_a_host(world):
    db = world["db"]
    group(world, "web", "anti-affinity")
    uuids = members_boot(world, "web", RACERS)
    t0 = time.monotonic()
    got = run_race(db, world["state_dir"], uuids, HOSTS)
    placed = check_anti_affinity_race(db, got, HOSTS)
    print("anti-affinity race (%s): %d claims in %.2f s, placed %s, %d No valid host"
          % (db.backend, RACERS, time.monotonic() - t0, sorted(placed.values()), RACERS - len(placed)))


def test_racing_first_members_of_an_affinity_group_end_on_one_host(world):
    db = world["db"]
    group(world, "db", "affinity")
    uuids = members_boot(world, "db", RACERS)
    got = run_race(db, world["state_dir"], uuids, HOSTS, subset=3)   # host_subset_size 3: the racers spread
    placed = check_affinity_race(db, got)
    print("affinity race (%s): first choices %s, all placed on %s"
          % (db.backend, sorted(f for _h, _t, f, _m in got.values()), set(placed.values())))
