# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a failed build left on a host that could not undo it (libvirtd down, the host unreachable).

The conductor does not wait for such a host: it releases the claim and the ports and reschedules the
instance (reschedule.py). What the host may still hold - the domain, the instance directory, the DHCP
reservations, the pool volumes - is recorded here, and removed by the host when it is back
(playbooks/hypervisors.yml, the hypervisor role's cleanup), as Nova's compute removes at start-up what
it should no longer run (``_destroy_evacuated_instances``, ``_cleanup_running_deleted_instances``).

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes


def residue_of(conn, row):
    """What a build of instance ``row`` may have made on its host, from the controller's records: the
    domain, the instance directory, one DHCP reservation per port, the volumes in the host's pool."""
    console_log = (row.request or {}).get("console_log") or layout.console_log_path(layout.INSTANCES_PATH, row.uuid)
    return {
        "domain_name": layout.domain_name(row.uuid),
        "image_id": row.image_id,
        "instances_path": os.path.dirname(os.path.dirname(console_log)),
        "ports": [{k: p[k] for k in ("id", "network_id", "mac", "ip")}
                  for p in (_networking.port_spec(conn, r) for r in _networking.instance_ports(conn, row.uuid))],
        "volumes": [{"name": v.name, "pool": v.pool} for v in _volumes.instance_volumes(conn, row.uuid)
                    if v.status != "deleted"],
    }


def record(db, host, row, reason):
    """Record the residue of instance ``row``'s failed build on ``host`` (before the conductor releases the
    ports and volume records it is read from). Returns the record."""
    with db.tx() as conn:
        residue = residue_of(conn, row)
        rid = _db.new_id()
        conn.execute(_db.table("host_cleanups").insert().values(
            id=rid, host=host, instance_uuid=row.uuid, residue=residue, reason=reason, created_at=_db.now()))
    return {"id": rid, "host": host, "instance_uuid": row.uuid, "residue": residue, "reason": reason}


def open_for(conn, instance_uuid):
    """The residue of ``instance_uuid``'s failed builds that its hosts have not removed yet: [{host, residue,
    reason}], oldest first (what the end-of-run report tells the owner is left where)."""
    cleanups = _db.table("host_cleanups")
    rows = conn.execute(cleanups.select().where(cleanups.c.instance_uuid == instance_uuid, cleanups.c.done_at.is_(None))
                        .order_by(cleanups.c.created_at)).fetchall()
    return [{"host": r.host, "residue": dict(r.residue), "reason": r.reason} for r in rows]


def pending(db, auth, host):
    """The residue ``host`` has still to remove, oldest first. When the instance was built on ``host`` again
    since (a later reschedule came back), its domain, directory and volumes there are the new build's:
    only the DHCP reservations of ports it no longer has are residue (as Nova's
    ``_destroy_evacuated_instances`` spares an instance that is on this host)."""
    enforce(auth, "compute:report_node")
    cleanups = _db.table("host_cleanups")
    out = []
    with db.tx() as conn:
        rows = conn.execute(cleanups.select().where(cleanups.c.host == host, cleanups.c.done_at.is_(None))
                            .order_by(cleanups.c.created_at)).fetchall()
        for r in rows:
            residue = dict(r.residue)
            now = conn.execute(_db.table("instances").select().where(
                _db.table("instances").c.uuid == r.instance_uuid)).first()
            if now is not None and now.deleted == 0 and now.host == host:
                current = {p.mac for p in _networking.instance_ports(conn, now.uuid)}
                residue.update(domain_name=None, volumes=[],
                               ports=[p for p in residue.get("ports") or [] if p["mac"] not in current])
            out.append({"id": r.id, "host": r.host, "instance_uuid": r.instance_uuid, "residue": residue,
                        "reason": r.reason})
    return out


def done(db, auth, host, ids, check_mode=False):
    """Mark cleanups of ``host`` done (the host removed their residue). Returns the ids marked now."""
    enforce(auth, "compute:report_node")
    cleanups = _db.table("host_cleanups")
    with db.tx() as conn:
        open_ids = [r.id for r in conn.execute(
            cleanups.select().where(cleanups.c.host == host, cleanups.c.done_at.is_(None),
                                    cleanups.c.id.in_(list(ids))))]
        if open_ids and not check_mode:
            conn.execute(cleanups.update().where(cleanups.c.id.in_(open_ids)).values(done_at=_db.now()))
    return open_ids
