# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cinder-api (local backend): volume records and Cinder's status machine.

PRIVATE to the collection: may change at any time. Controller side only.

creating -> available -> attaching -> in-use -> (detaching -> available) -> deleting -> deleted
"""

from __future__ import annotations


from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import instance_of_domain
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import DEVICE_RE, next_device
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota

MAX_VOLUME_GB = 16384   # Cinder's largest volume (GB)

# which status may follow which (error states may be entered from anywhere)
TRANSITIONS = {
    "creating": {"available", "error"},
    "available": {"attaching", "deleting", "available"},
    "attaching": {"in-use", "available", "error_attaching"},
    "in-use": {"detaching", "in-use", "available"},
    "detaching": {"available", "error_detaching"},
    "deleting": {"deleted", "error_deleting"},
    "error": {"deleting"},
}


def get_volume(conn, ref, auth=None):
    vols = _db.table("volumes")
    query = vols.select().where(sa.or_(vols.c.id == ref, vols.c.name == ref), vols.c.status != "deleted")
    if auth is not None and "admin" not in auth.roles:
        query = query.where(vols.c.project_id == auth.project_id)
    row = conn.execute(query).first()
    if row is None:
        raise NotFound("Volume %s could not be found." % ref)
    return row


def set_status(conn, volume_id, status, **fields):
    vols = _db.table("volumes")
    row = conn.execute(vols.select().where(vols.c.id == volume_id)).first()
    if row.status != status and status not in TRANSITIONS.get(row.status, set()) | {"deleting", "deleted"}:
        raise InvalidRequest("Volume %s is %s; it cannot become %s." % (row.name, row.status, status))
    conn.execute(vols.update().where(vols.c.id == volume_id).values(status=status, updated_at=_db.now(), **fields))


def instance_volumes(conn, instance_uuid):
    vols = _db.table("volumes")
    return conn.execute(vols.select().where(vols.c.instance_uuid == instance_uuid, vols.c.status != "deleted")
                        .order_by(vols.c.device)).fetchall()


def check_resize(conn, vol, size_gb):
    """A new size for ``vol``, checked before the host is asked: a whole number in Cinder's range, no
    shrink, and the growth within the project's gigabytes quota. Returns the size as an int."""
    if not isinstance(size_gb, int) or isinstance(size_gb, bool):
        raise InvalidRequest("size_gb must be a whole number of GB, got %r." % (size_gb,))
    if not 1 <= size_gb <= MAX_VOLUME_GB:
        raise InvalidRequest("size_gb must be between 1 and %d, got %d." % (MAX_VOLUME_GB, size_gb))
    if size_gb < vol.size_gb:
        raise InvalidRequest("Volume %s is %d GB; shrinking it to %d GB is not supported." % (vol.name, vol.size_gb, size_gb))
    if size_gb > vol.size_gb:
        _quota.check(conn, vol.project_id, {"gigabytes": size_gb - vol.size_gb})
    return size_gb


def set_size(conn, volume_id, size_gb):
    vols = _db.table("volumes")
    conn.execute(vols.update().where(vols.c.id == volume_id).values(size_gb=size_gb, updated_at=_db.now()))


def attachment(conn, auth, volume_ref, domain=None, device=None):
    """What an attach or detach of ``volume_ref`` works on (cinder-api's attachment): the volume, the
    instance (the one it is attached to, else the one of libvirt ``domain``; no multiattach) and its
    device (``device``, else the one reserved for it, else the next free one on the instance).
    Returns (volume row, instance row, device)."""
    if device is not None and not DEVICE_RE.fullmatch(device):
        raise InvalidRequest("Invalid device name %r: vdX, sdX or hdX (for example vdb)." % (device,))
    vol = get_volume(conn, volume_ref, auth)
    instance = instances.find_instance(conn, vol.instance_uuid, auth) if vol.instance_uuid else None
    named = None
    if domain:
        named = instances.find_instance(conn, instance_of_domain(domain), auth)
        if named is None:
            raise NotFound("Instance of domain %s could not be found." % domain)
    if named is not None and instance is not None and named.uuid != instance.uuid:
        raise Conflict("Volume %s is attached to instance %s, not to %s (multiattach is not supported)."
                       % (vol.name, instance.name, named.name))
    instance = instance or named
    if instance is None:
        raise InvalidRequest("Volume %s is not attached to an instance; give the instance's domain." % vol.name)
    if vol.instance_uuid and vol.instance_uuid != instance.uuid:
        raise Conflict("Volume %s is attached to instance %s (multiattach is not supported)." % (vol.name, vol.instance_uuid))
    if device is None:
        taken = {v.device for v in instance_volumes(conn, instance.uuid) if v.id != vol.id and v.device}
        device = vol.device if vol.device and vol.device not in taken else next_device(taken)
    return vol, instance, device
