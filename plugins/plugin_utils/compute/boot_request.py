# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api's boot request for a list of instances (a fleet): Nova's multi-create, one item per
``nova boot``, each with ``count`` (max_count) and ``min_count``.

``expand`` is pure: the items (with the request-wide defaults under them) become one entry per
instance, named ``NAME-1`` .. ``NAME-N`` for ``count > 1`` (Nova's multi_instance_display_name_template
``%(name)s-%(count)d``). ``record`` validates and records every instance of the list in ONE
transaction: bad input anywhere (item 7) rolls the whole list back before the first instance is
scheduled or built. ``lookup`` finds what a list names (delete.yml, ``state: absent`` items).

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import ipaddress
import secrets

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import check_text, validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import cleanups as _cleanups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor as _conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking

# what an item may say, with the value when neither the item nor the request's defaults say it
ITEM_DEFAULTS = {
    "flavor": None, "image": None, "networks": None, "volume_size_gb": 0, "volume_delete_on_termination": True,
    "boot_from_volume": False, "root_volume_size_gb": None, "root_volume_delete_on_termination": True,
    "availability_zone": None, "server_group": None, "user_data": None, "key_name": None, "metadata": {},
    "count": 1, "min_count": None, "state": "present",
}
MAX_COUNT = 100            # instances of one item (a typo of 1000 is refused, not scheduled)
MAX_METADATA_ITEMS = 128   # Nova's metadata_items quota default
MAX_METADATA_LENGTH = 255  # Nova's limit for a metadata key and value


class _Rollback(Exception):
    """Check mode: every instance was recorded to validate the whole list; undo it all."""


def _networks(where, value):
    """An item's ``networks``: names/IDs, or dicts ``{network, fixed_ip}``. Returns (refs, {ref: ip})."""
    if not isinstance(value, list):
        raise InvalidRequest("%s: networks must be a list of network names or {network, fixed_ip}, got %r." % (where, value))
    if not value:
        raise InvalidRequest("%s: At least one network is required." % where)
    refs, fixed = [], {}
    for i, net in enumerate(value):
        if isinstance(net, str) and net:
            refs.append(net)
            continue
        if not isinstance(net, dict) or not isinstance(net.get("network"), str) or not net["network"] \
                or set(net) - {"network", "fixed_ip"}:
            raise InvalidRequest("%s: networks[%d] must be a network name or {network: NAME, fixed_ip: IP}, got %r."
                                 % (where, i, net))
        refs.append(net["network"])
        if net.get("fixed_ip"):
            try:
                fixed[net["network"]] = str(ipaddress.IPv4Address(net["fixed_ip"]))
            except ValueError:
                raise InvalidRequest("%s: networks[%d].fixed_ip %r is not an IPv4 address."
                                     % (where, i, net["fixed_ip"])) from None
    return refs, fixed


def _metadata(where, value):
    if not isinstance(value, dict):
        raise InvalidRequest("%s: metadata must be a mapping of strings, got %r." % (where, value))
    if len(value) > MAX_METADATA_ITEMS:
        raise InvalidRequest("%s: at most %d metadata items, got %d." % (where, MAX_METADATA_ITEMS, len(value)))
    out = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_METADATA_LENGTH \
                or not isinstance(val, (str, int, float, bool)) or len(str(val)) > MAX_METADATA_LENGTH:
            raise InvalidRequest("%s: metadata %r: keys and values are strings of 1-%d characters."
                                 % (where, key, MAX_METADATA_LENGTH))
        check_text("%s: metadata key" % where, key)
        out[key] = str(val)
    return out


def _int(where, key, value, low):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value), 10)
        except ValueError:
            raise InvalidRequest("%s: %s must be an integer, got %r." % (where, key, value)) from None
    if value < low:
        raise InvalidRequest("%s: %s must be at least %d, got %d." % (where, key, low, value))
    return value


def expand(items, defaults=None, names_only=False):
    """The list's items, each over ``defaults`` (what the request says for every item) over
    ``ITEM_DEFAULTS``, as one entry per instance, in order: dicts with the item's options plus ``item``
    (its index), ``launch_index`` (0-based within the item), ``fixed_ips`` ({network: IP}) and
    ``networks`` as a list of names/IDs. ``names_only``: only the names matter (a lookup): what a boot
    needs besides them is not required. Raises InvalidRequest naming the item."""
    defaults = {k: v for k, v in (defaults or {}).items() if v is not None}
    unknown = set(defaults) - set(ITEM_DEFAULTS) - {"name"}
    if unknown:
        raise InvalidRequest("Unknown default(s) of the boot request: %s." % ", ".join(sorted(unknown)))
    if not isinstance(items, list):
        raise InvalidRequest("The boot request must be a list of instances.")
    out, seen = [], {}
    fixed_seen = {}
    for index, raw in enumerate(items):
        if not isinstance(raw, dict):
            raise InvalidRequest("instances[%d] must be a mapping with at least a name, got %r." % (index, raw))
        unknown = set(raw) - set(ITEM_DEFAULTS) - {"name"}
        if unknown:
            raise InvalidRequest("instances[%d]: unknown option(s) %s." % (index, ", ".join(sorted(unknown))))
        item = dict(ITEM_DEFAULTS, **defaults)
        item.update({k: v for k, v in raw.items() if v is not None})
        name = item.get("name")
        where = "instances[%d] (%s)" % (index, name)
        try:
            validate_name("instance", name)
        except InvalidRequest as exc:
            raise InvalidRequest("instances[%d]: %s" % (index, exc)) from None
        if item["state"] not in ("present", "absent"):
            raise InvalidRequest("%s: state must be present or absent, got %r." % (where, item["state"]))
        count = _int(where, "count", item["count"], 1)
        if count > MAX_COUNT:
            raise InvalidRequest("%s: count must be at most %d, got %d." % (where, MAX_COUNT, count))
        min_count = None if item["min_count"] is None else _int(where, "min_count", item["min_count"], 1)
        if min_count is not None and min_count > count:
            raise InvalidRequest("%s: min_count %d is more than count %d." % (where, min_count, count))
        if item["state"] == "present" and not names_only:
            for key in ("flavor", "image"):
                if not item[key]:
                    raise InvalidRequest("%s: %s is required." % (where, key))
            refs, fixed = _networks(where, item["networks"])
            if fixed and count > 1:
                # as Nova: one fixed IP cannot be given to several instances of a multi-create
                raise InvalidRequest("%s: a fixed_ip cannot be used with count %d." % (where, count))
            for net, ip in fixed.items():
                if (net, ip) in fixed_seen:
                    raise InvalidRequest("%s: fixed_ip %s on %s is also asked for by %s."
                                         % (where, ip, net, fixed_seen[(net, ip)]))
                fixed_seen[(net, ip)] = name
            item.update(networks=refs, fixed_ips=fixed, metadata=_metadata(where, item["metadata"]))
        else:
            item.update(fixed_ips={})
        item.update(count=count, min_count=min_count)
        names = [name] if count == 1 else ["%s-%d" % (name, n) for n in range(1, count + 1)]
        for launch_index, instance_name in enumerate(names):
            validate_name("instance", instance_name)
            if instance_name in seen:
                raise InvalidRequest("%s: instance name %s is also given by instances[%d]; names in one request "
                                     "must be unique." % (where, instance_name, seen[instance_name]))
            seen[instance_name] = index
            out.append(dict(item, name=instance_name, item=index, launch_index=launch_index))
    return out


def _entry(row, entry, created):
    return {"name": row.name, "uuid": row.uuid, "status": instances.api_status(row.vm_state, row.task_state),
            "host": row.host, "item": entry["item"], "created": created}


def record(db, auth, entries, check_mode=False):
    """nova-api for the whole list (``expand``'s entries): every ``present`` instance is validated and
    recorded (or found unchanged) in one transaction, so nothing is recorded unless all of them pass.
    Returns (changed, present: [{name, uuid, status, host, item, created}], absent: the live instances the
    ``absent`` entries name). In check mode everything is validated the same way and rolled back."""
    enforce(auth, "compute:create")
    if any(entry.get("fixed_ips") for entry in entries if entry["state"] == "present"):
        # Neutron's create_port:fixed_ips:ip_address: the whole list is refused before anything is recorded
        enforce(auth, _networking.FIXED_IP_RULE)
    present, absent = [], []
    # one reservation per item (Nova's reservation_id of a multi-create): the scheduler keeps min_count by it
    reservations = {}
    try:
        with db.tx() as conn:
            for entry in entries:
                if entry["state"] == "absent":
                    row = instances.find_instance(conn, entry["name"], auth)
                    if row is not None:
                        absent.append(_entry(row, entry, False))
                    continue
                rid = reservations.setdefault(entry["item"], "r-" + secrets.token_hex(4))
                extra = {"reservation_id": rid, "launch_index": entry["launch_index"], "metadata": entry["metadata"]}
                if entry["min_count"] is not None:
                    extra["min_count"] = entry["min_count"]
                created, row = _compute_api.create_in(
                    conn, auth, entry["name"], entry["flavor"], entry["image"], entry["networks"],
                    entry["volume_size_gb"], entry["user_data"], False,
                    volume_delete_on_termination=entry["volume_delete_on_termination"],
                    availability_zone=entry["availability_zone"], boot_from_volume=entry["boot_from_volume"],
                    root_volume_size_gb=entry["root_volume_size_gb"],
                    root_volume_delete_on_termination=entry["root_volume_delete_on_termination"],
                    server_group=entry["server_group"], key_name=entry["key_name"], fixed_ips=entry["fixed_ips"],
                    request_extra=extra)
                present.append(_entry(row, entry, created))
            if check_mode:
                raise _Rollback()
    except _Rollback:
        for out in present:
            if out["created"]:
                out.update(uuid=None, status="BUILD", host=None)
    changed = any(out["created"] for out in present)
    return changed, present, absent


def lookup(db, auth, entries):
    """The live instances ``entries`` name (delete.yml), each with the conductor's spec: what its delete
    must undo on its host and release on the controller."""
    return [spec for spec in _specs(db, auth, entries) if spec is not None]


def missing(db, auth, entries):
    """What delete.yml says of each entry the caller's project has no live instance of: ``[{name, message}]``,
    ``warn`` true unless the instance was deleted already (a second delete of the same list is quiet). Only an
    admin, who may see every project, is told of another project's live instance of that name (with its UUID)."""
    enforce(auth, "compute:get")
    inst = _db.table("instances")
    project = auth.project_name or auth.project_id
    out = []
    with db.tx() as conn:
        for entry in entries:
            ref = entry["name"]
            if instances.find_instance(conn, ref, auth) is not None:
                continue
            gone = conn.execute(inst.select().where(
                sa.or_(inst.c.uuid == ref, inst.c.name == ref), inst.c.deleted != 0,
                inst.c.project_id == auth.project_id).order_by(inst.c.deleted_at.desc())).first()
            if gone is not None:
                out.append({"name": ref, "warn": False, "message": "Instance %s (%s) in project %s was deleted at %s: "
                            "nothing to delete." % (ref, gone.uuid, project, gone.deleted_at.strftime("%Y-%m-%d %H:%M:%S UTC")
                                                    if gone.deleted_at else "an earlier run")})
                continue
            message = "No instance %s in project %s: nothing deleted (a mistyped name, or another project's instance)." \
                % (ref, project)
            if "admin" in auth.roles:
                others = conn.execute(inst.select().where(inst.c.name == ref, inst.c.deleted == 0,
                                                          inst.c.project_id != auth.project_id)).fetchall()
                if others:
                    message = ("No instance %s in project %s; %s: delete it by its UUID (-e bootflow_instance_name=UUID), "
                               "or as a user of that project." % (ref, project, "; ".join(
                                   "project %s has one (%s)" % (_project_name(conn, r.project_id), r.uuid) for r in others)))
            out.append({"name": ref, "warn": True, "message": message})
    return out


def _project_name(conn, project_id):
    projects = _db.table("projects")
    row = conn.execute(sa.select(projects.c.name).where(projects.c.id == project_id)).first()
    return row.name if row is not None else project_id


def query(db, auth, entries):
    """Every ``present`` instance of the list as it is now (the conductor's spec: status, host, ports,
    fault, step log), or ``{name, status: ABSENT}`` for one that does not exist (a withdrawn min_count
    item, check mode): the end-of-run report of playbooks/boot.yml."""
    present = [e for e in entries if e["state"] == "present"]
    out = [spec or {"name": e["name"], "status": "ABSENT"} for e, spec in zip(present, _specs(db, auth, present))]
    with db.tx() as conn:
        for spec in out:
            if spec.get("uuid") and spec.get("status") != "ACTIVE":
                spec["left_on_hosts"] = _cleanups.open_for(conn, spec["uuid"])
    return out


def _specs(db, auth, entries):
    """The conductor's spec of the caller's instance each entry names, or None where there is none."""
    enforce(auth, "compute:get")
    with db.tx() as conn:
        rows = [instances.find_instance(conn, entry["name"], auth) for entry in entries]
        return [None if row is None else _conductor.spec(conn, row) for row in rows]
