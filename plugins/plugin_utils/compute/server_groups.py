# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nova's server groups (``os-server-groups``): the records, the membership written by nova-api's
create, what the scheduler needs to know about a member, and the claim-time re-check of the policy.

PRIVATE to the collection: may change at any time. Controller side only.

Semantics (Nova, API microversion 2.64):

* a group has one policy - ``affinity``, ``anti-affinity``, ``soft-affinity`` or
  ``soft-anti-affinity`` - and ``rules``; the only rule is ``max_server_per_host`` (a positive
  integer), and only an ``anti-affinity`` group may have it. Policy and rules never change after
  the group is created (Nova has no update call): asking for another policy under an existing name
  is a Conflict;
* groups belong to a project: a name is looked up in the caller's project, an admin reaches another
  project's group by its ID, anyone else is told "not found";
* an instance joins a group at its creation (the scheduler hint ``group``) and leaves it when its
  record is deleted (``_compute_api.soft_delete``, like Nova's ``instance_destroy``); it is in at most
  one group;
* deleting a group that still has members is allowed, as in Nova: the members just leave it (the
  instances stay where they are, later claims of theirs are no longer bound by the policy);
* quotas: ``server_groups`` per project and ``server_group_members`` per group (Nova's defaults, 10).

The hard policies are enforced twice, like Nova does: by the scheduler's filters on its snapshot,
and again when the claim is made (Nova's late ``_validate_instance_group_policy`` on the compute
host). Here the second check runs inside the claim's transaction, serialised per group
(:func:`lock_for_claim`), on the member hosts read in that transaction, so two concurrent claims
for members of one group cannot both pass on a stale snapshot.
"""

from __future__ import annotations

import dataclasses

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import GROUP_POLICIES
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name

POLICIES = GROUP_POLICIES
HARD_POLICIES = ("affinity", "anti-affinity")
RULES = ("max_server_per_host",)
MAX_RULE_VALUE = 2 ** 31 - 1


def lock_name(group_id):
    """The name every transaction that reads-and-decides on a group's members locks (``_db.lock``)."""
    return "server_group:%s" % group_id


def validate(policy, rules):
    """The group's rules as stored ({} or {"max_server_per_host": n}); InvalidRequest for a bad policy or rule."""
    if policy not in POLICIES:
        raise InvalidRequest("Invalid server group policy %r: use one of %s." % (policy, ", ".join(POLICIES)))
    if rules is None:
        return {}
    if not isinstance(rules, dict):
        raise InvalidRequest("Server group rules must be a dictionary, got %r." % (rules,))
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        raise InvalidRequest("Unknown server group rule(s) %s (known: %s)." % (", ".join(map(str, unknown)), ", ".join(RULES)))
    if rules and policy != "anti-affinity":
        raise InvalidRequest("Only anti-affinity policy supports rules (policy %s was given rules %s)." % (policy, rules))
    out = {}
    for key, value in rules.items():
        text = str(value).strip()
        if isinstance(value, bool) or not text.isdigit() or not 1 <= int(text) <= MAX_RULE_VALUE:
            raise InvalidRequest("Server group rule %s must be an integer from 1 to %d, got %r." % (key, MAX_RULE_VALUE, value))
        out[key] = int(text)
    return out


def find_group(conn, ref, auth=None):
    """A group by ID or name: a name in the caller's project, an ID in the caller's project or, for an
    admin, in any project. None when there is none the caller may see."""
    groups = _db.table("server_groups")
    query = groups.select().where(sa.or_(groups.c.id == ref, groups.c.name == ref))
    if auth is not None and "admin" in auth.roles:
        query = query.where(sa.or_(groups.c.id == ref, groups.c.project_id == auth.project_id))
    elif auth is not None:
        query = query.where(groups.c.project_id == auth.project_id)
    rows = conn.execute(query).fetchall()
    if len(rows) > 1:
        # a name that is also another group's ID: the ID wins, as for instances' UUIDs
        rows = [r for r in rows if r.id == ref] or rows
    if len(rows) > 1:
        raise Conflict("Multiple server groups match %s; use the ID." % ref)
    return rows[0] if rows else None


def get_group(conn, ref, auth=None):
    row = find_group(conn, ref, auth)
    if row is None:
        raise NotFound("Server group %s could not be found." % ref)
    return row


def membership(conn, instance_uuid):
    """The group the instance is a member of (a server_groups row), or None."""
    groups, members = _db.table("server_groups"), _db.table("server_group_members")
    return conn.execute(groups.select().join(members, members.c.group_id == groups.c.id)
                        .where(members.c.instance_uuid == instance_uuid)).first()


def members(conn, group_id):
    """The group's live members, oldest first: ``{instance_uuid, name, vm_state, host}``.

    A member's host is where it holds its claim (the allocation: a concurrent claim counts as soon as it
    commits, before the scheduler writes the instance's host), else the instance's host; an instance
    with neither (ERROR after its build was undone, not scheduled yet) is on no host.
    """
    sgm, inst = _db.table("server_group_members"), _db.table("instances")
    alloc, nodes = _db.table("allocations"), _db.table("compute_nodes")
    query = (sa.select(sgm.c.instance_uuid, inst.c.name, inst.c.vm_state, inst.c.host, nodes.c.hostname)
             .select_from(sgm.join(inst, sa.and_(inst.c.uuid == sgm.c.instance_uuid, inst.c.deleted == 0))
                          .outerjoin(alloc, alloc.c.consumer_id == sgm.c.instance_uuid)
                          .outerjoin(nodes, nodes.c.id == alloc.c.compute_node_id))
             .where(sgm.c.group_id == group_id).order_by(sgm.c.created_at, sgm.c.instance_uuid))
    return [{"instance_uuid": uuid, "name": name, "vm_state": vm_state, "host": claimed or host}
            for uuid, name, vm_state, host, claimed in conn.execute(query)]


def member_hosts(conn, group_id, exclude=None):
    """The hosts of the group's live members other than ``exclude``, one entry per member on a host
    (Nova's ``InstanceGroup.get_hosts`` with the count kept for ``max_server_per_host``)."""
    return [m["host"] for m in members(conn, group_id) if m["host"] and m["instance_uuid"] != exclude]


def count_members(conn, group_id):
    """Live members of the group (what the server_group_members quota counts)."""
    return len(members(conn, group_id))


def max_server_per_host(group):
    return int((group.rules or {}).get("max_server_per_host") or 1)


def scheduling_info(conn, instance_uuid):
    """What the scheduler's RequestSpec needs about the instance's group (None without one):
    ``{id, name, policy, max_server_per_host, hosts}`` with the hosts of the *other* members."""
    group = membership(conn, instance_uuid)
    if group is None:
        return None
    return {"id": group.id, "name": group.name, "policy": group.policy,
            "max_server_per_host": max_server_per_host(group),
            "hosts": member_hosts(conn, group.id, exclude=instance_uuid)}


def group_dict(conn, row):
    """The group as the module returns it: the record, its members and the hosts they are on."""
    out = _db.row_dict(row)
    out["rules"] = dict(row.rules or {})
    out["members"] = members(conn, row.id)
    out["hosts"] = sorted({m["host"] for m in out["members"] if m["host"]})
    return out


# --- nova-api: os-server-groups create / show / delete ----------------------------------------------

def ensure(db, auth, ref, policy, rules, state, check_mode):
    """Create, look up or delete a group. Returns (changed, before, after); before/after are group
    dicts (with members) or None. ``policy`` None with ``state=present`` only looks the group up."""
    if state == "absent":
        return _delete(db, auth, ref, check_mode)
    if policy is None:
        enforce(auth, "compute:server_groups:show")
        if rules:
            raise InvalidRequest("Server group rules need a policy (rules are only valid with policy anti-affinity).")
        with db.tx() as conn:
            row = find_group(conn, ref, auth)
            if row is None:
                raise NotFound("Server group %s could not be found (give a policy to create it)." % ref)
            group = group_dict(conn, row)
        return False, group, group
    enforce(auth, "compute:server_groups:create")
    validate_name("server group", ref)
    want_rules = validate(policy, rules)
    groups = _db.table("server_groups")
    with db.tx() as conn:
        # one create per project at a time: the name check and the server_groups quota hold until commit
        _db.lock(conn, "project:%s" % auth.project_id)
        row = find_group(conn, ref, auth)
        if row is not None:
            if row.policy != policy or dict(row.rules or {}) != want_rules:
                raise Conflict("Server group %s already exists (%s) with policy %s and rules %s; a server group's "
                               "policy and rules cannot be changed (as in Nova): delete the group and create it "
                               "again, or pick another name." % (row.name, row.id, row.policy, dict(row.rules or {})))
            group = group_dict(conn, row)
            return False, group, group
        _quota.check(conn, auth.project_id, {"server_groups": 1})
        after = {"id": None, "name": ref, "project_id": auth.project_id, "user_id": auth.user_id, "policy": policy,
                 "rules": want_rules, "created_at": None, "members": [], "hosts": []}
        if check_mode:
            return True, None, after
        gid = _db.new_id()
        conn.execute(groups.insert().values(id=gid, name=ref, project_id=auth.project_id, user_id=auth.user_id,
                                            policy=policy, rules=want_rules, created_at=_db.now()))
        return True, None, group_dict(conn, conn.execute(groups.select().where(groups.c.id == gid)).first())


def _delete(db, auth, ref, check_mode):
    """Nova deletes a group with members: they leave it, the instances stay."""
    enforce(auth, "compute:server_groups:delete")
    groups, sgm = _db.table("server_groups"), _db.table("server_group_members")
    with db.tx() as conn:
        row = find_group(conn, ref, auth)
        if row is None:
            return False, None, None
        # no claim or create of a member decides on this group while it goes
        _db.lock(conn, lock_name(row.id))
        before = group_dict(conn, row)
        if not check_mode:
            conn.execute(sgm.delete().where(sgm.c.group_id == row.id))
            conn.execute(groups.delete().where(groups.c.id == row.id))
        return True, before, None


# --- nova-api's create: the scheduler hint ``group`` ----------------------------------------------

def group_for_create(conn, ref, auth):
    """The group an instance being created joins (the ``group`` scheduler hint), locked for the rest of
    the transaction; NotFound for an unknown group or another project's (unless admin, by ID).
    Call after the project lock (the order every create takes them in)."""
    row = get_group(conn, ref, auth)
    _db.lock(conn, lock_name(row.id))
    # read again under the lock: a delete that committed meanwhile is seen (READ COMMITTED)
    return get_group(conn, row.id, auth)


def join(conn, group, instance_uuid):
    """Make the new instance a member (same transaction as the instance row)."""
    conn.execute(_db.table("server_group_members").insert().values(
        instance_uuid=instance_uuid, group_id=group.id, created_at=_db.now()))


# --- the claim: Nova's late _validate_instance_group_policy, made atomic -----------------------------

def hard_group(conn, consumer_id):
    """The consumer's group when its policy is affinity or anti-affinity (the claim re-checks those), else None."""
    group = membership(conn, consumer_id)
    return group if group is not None and group.policy in HARD_POLICIES else None


def lock_for_claim(conn, consumer_id):
    """First thing in a claim's transaction: the consumer's group when its policy is hard (affinity,
    anti-affinity), with the group's lock taken; None otherwise (no lock, nothing to re-check).

    On PostgreSQL the lock is a transaction-scoped advisory lock, so the claims of one group run one
    after the other and each sees the members' claims committed before it; on SQLite every
    transaction is already serialised (BEGIN IMMEDIATE).
    """
    group = hard_group(conn, consumer_id)
    if group is not None:
        _db.lock(conn, lock_name(group.id))
    return group


def claim_violation(conn, group, consumer_id, hostname, spec):
    """Why the claim of ``consumer_id`` on ``hostname`` would break its group's policy, from the member
    hosts read now (inside the claim's transaction, after :func:`lock_for_claim`); None when it holds."""
    if group is None:
        return None
    fresh = dataclasses.replace(spec, group_policy=group.policy, max_server_per_host=max_server_per_host(group),
                                group_hosts=member_hosts(conn, group.id, exclude=consumer_id))
    reason = _scheduler.server_group_violation(hostname, fresh)
    if reason is None:
        return None
    return "server group %s: %s (re-checked at claim time)" % (group.name, reason)
