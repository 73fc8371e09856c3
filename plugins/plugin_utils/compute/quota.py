# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-project quotas (Nova: instances, cores, ram, server_groups, server_group_members; Cinder: volumes,
gigabytes; Glance's unified limits: image_count_total, image_size_total in MiB).

PRIVATE to the collection: may change at any time. Controller side only.

Checked by nova-api before anything is written, inside the same transaction that then writes
the instance, so two parallel requests cannot both take the last unit on SQLite (BEGIN
IMMEDIATE serialises them).

``server_group_members`` is Nova's per-group limit: the project's limit applies to each of its groups,
and the usage it is compared with is the number of live members of the group the instance joins.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, QuotaExceeded

# Nova's and Cinder's defaults. Glance's unified limits have no default (an unregistered limit is 0 there,
# nothing may be uploaded); bootflow gives every project 100 images and 1000 GiB of image data, the same
# 1000 GiB as Cinder's gigabytes default, so that the image store of the controller is bounded per project.
DEFAULTS = {"instances": 10, "cores": 20, "ram": 51200, "volumes": 10, "gigabytes": 1000,
            "server_groups": 10, "server_group_members": 10, "image_count_total": 100, "image_size_total": 1024000}
UNITS = {"instances": "instances", "cores": "cores", "ram": "MB of RAM", "volumes": "volumes", "gigabytes": "GB of volumes",
         "server_groups": "server groups", "server_group_members": "members of the server group",
         "image_count_total": "images", "image_size_total": "MiB of images"}
MIB = 1024 * 1024
# the image statuses that hold no data and no name (a killed upload, a deleted image): not counted
IMAGE_GONE = ("deleted", "killed")
UNLIMITED = -1
MAX_LIMIT = 2 ** 31 - 1   # Nova's and Cinder's quota limits are database integers


def limits(conn, project_id):
    quotas = _db.table("quotas")
    out = dict(DEFAULTS)
    for row in conn.execute(quotas.select().where(quotas.c.project_id == project_id)):
        out[row.resource] = row.hard_limit
    return out


def usage(conn, project_id):
    """What the project uses; ``server_group_members`` is the member count of its fullest group."""
    inst, flavors, vols = _db.table("instances"), _db.table("flavors"), _db.table("volumes")
    count, cores, ram = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(flavors.c.vcpus), 0),
                  sa.func.coalesce(sa.func.sum(flavors.c.ram_mb), 0))
        .select_from(inst.join(flavors, flavors.c.id == inst.c.flavor_id))
        .where(inst.c.project_id == project_id, inst.c.deleted == 0)).one()
    nvol, gigs = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(vols.c.size_gb), 0))
        .where(vols.c.project_id == project_id, vols.c.status != "deleted")).one()
    groups, members = _db.table("server_groups"), _db.table("server_group_members")
    ngroups = _db.count(conn, "server_groups", groups.c.project_id == project_id)
    per_group = (sa.select(sa.func.count().label("n"))
                 .select_from(members.join(groups, groups.c.id == members.c.group_id)
                              .join(inst, sa.and_(inst.c.uuid == members.c.instance_uuid, inst.c.deleted == 0)))
                 .where(groups.c.project_id == project_id).group_by(members.c.group_id).subquery())
    fullest = conn.execute(sa.select(sa.func.coalesce(sa.func.max(per_group.c.n), 0))).scalar()
    nimages, image_bytes = image_usage(conn, project_id)
    return {"instances": count, "cores": cores, "ram": ram, "volumes": nvol, "gigabytes": gigs,
            "server_groups": ngroups, "server_group_members": fullest,
            "image_count_total": nimages, "image_size_total": -(-image_bytes // MIB)}


def image_usage(conn, project_id):
    """(images, bytes) the project owns in the image registry, every status but deleted and killed (an
    upload in progress counts: Glance counts queued and saving images too)."""
    images = _db.table("images")
    return tuple(conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(images.c.size), 0))
        .where(images.c.owner == project_id, images.c.status.notin_(IMAGE_GONE))).one())


def image_bytes_left(conn, project_id):
    """Bytes the project may still add to its images (image_size_total), None when unlimited."""
    limit = limits(conn, project_id)["image_size_total"]
    if limit == UNLIMITED:
        return None
    return max(limit * MIB - image_usage(conn, project_id)[1], 0)


def check_image(conn, project_id, size):
    """Glance's unified limits for one more image of ``size`` bytes: image_count_total, and image_size_total
    (MiB) counting the new image. Raises QuotaExceeded."""
    lim = limits(conn, project_id)
    count, used = image_usage(conn, project_id)
    if lim["image_count_total"] != UNLIMITED and count + 1 > lim["image_count_total"]:
        raise QuotaExceeded("Quota exceeded for image_count_total: Requested 1, but already used %d of %d images."
                            % (count, lim["image_count_total"]),
                            quota={"resource": "image_count_total", "requested": 1, "used": count,
                                   "limit": lim["image_count_total"]})
    limit = lim["image_size_total"]
    if limit != UNLIMITED and used + size > limit * MIB:
        raise QuotaExceeded("Quota exceeded for image_size_total: Requested %d bytes, but already used %d bytes of "
                            "%d MiB of images." % (size, used, limit),
                            quota={"resource": "image_size_total", "requested": -(-size // MIB),
                                   "used": -(-used // MIB), "limit": limit})


def check(conn, project_id, requested, group_members=None):
    """Raise QuotaExceeded naming the first resource the request would push over its limit.

    ``group_members``: the live members of the server group an instance joins (the usage the
    ``server_group_members`` limit is compared with)."""
    lim, used = limits(conn, project_id), usage(conn, project_id)
    if group_members is not None:
        used["server_group_members"] = group_members
    for resource, amount in requested.items():
        if not amount or lim[resource] == UNLIMITED:
            continue
        if used[resource] + amount > lim[resource]:
            raise QuotaExceeded("Quota exceeded for %s: Requested %d, but already used %d of %d %s."
                                % (resource, amount, used[resource], lim[resource], UNITS[resource]),
                                quota={"resource": resource, "requested": amount, "used": used[resource],
                                       "limit": lim[resource]})


def set_limits(db, project_id, wanted, check_mode):
    """Set hard limits (None = leave as is). Returns (changed, limits)."""
    quotas = _db.table("quotas")
    unknown = set(wanted) - set(DEFAULTS)
    if unknown:
        raise InvalidRequest("Unknown quota resource(s) %s (known: %s)." % (", ".join(sorted(unknown)), ", ".join(DEFAULTS)))
    for resource, value in wanted.items():
        if value is not None and value < UNLIMITED:
            raise InvalidRequest("Quota %s must be -1 (unlimited) or more, got %d." % (resource, value))
        if value is not None and value > MAX_LIMIT:
            raise InvalidRequest("Quota %s must be at most %d (or -1 for unlimited), got %d." % (resource, MAX_LIMIT, value))
    with db.tx() as conn:
        have = limits(conn, project_id)
        changes = {r: v for r, v in wanted.items() if v is not None and have[r] != v}
        if changes and not check_mode:
            for resource, value in changes.items():
                conn.execute(quotas.delete().where(quotas.c.project_id == project_id, quotas.c.resource == resource))
                conn.execute(quotas.insert().values(project_id=project_id, resource=resource, hard_limit=value))
        have.update(changes)
        return bool(changes), have
