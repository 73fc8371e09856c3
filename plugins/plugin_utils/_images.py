# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glance registry (local backend): image records and the image store on the controller.

PRIVATE to the collection: may change at any time. Controller side only.

An upload streams the file into ``<state_dir>/images/<id>.part`` while computing md5 (Glance's
``checksum``) and sha512 (``os_hash_value``), then renames it into place and only then marks the
image ``active``: a half-written image is never active.
"""

from __future__ import annotations

import hashlib
import os


from ansible_collections.bootflow.cloud.plugins.module_utils._image import inspect_format
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils._db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils._compute_api import validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import Conflict, InvalidRequest, NotFound

DISK_FORMATS = ("raw", "qcow2")
CONTAINER_FORMATS = ("bare",)
HASH_ALGO = "sha512"
CHUNK = 1024 * 1024


def store_dir(state_dir):
    path = os.path.join(_db.resolve_state_dir(state_dir), "images")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def find_image(conn, ref, auth=None):
    """Image by id or name, visible to the caller (public, or owned by its project)."""
    images = _db.table("images")
    query = images.select().where(sa.or_(images.c.id == ref, images.c.name == ref), images.c.status != "deleted")
    if auth is not None and "admin" not in auth.roles:
        query = query.where(sa.or_(images.c.visibility == "public", images.c.owner == auth.project_id))
    rows = conn.execute(query).fetchall()
    if not rows:
        raise NotFound("Image %s could not be found." % ref)
    if len(rows) > 1:
        raise Conflict("Multiple images are named %s; use the image ID (%s)." % (ref, ", ".join(r.id for r in rows)))
    return rows[0]


def hash_file(path):
    md5, sha = hashlib.md5(), hashlib.new(HASH_ALGO)  # md5 is Glance's legacy checksum field, not a security hash
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
    return md5.hexdigest(), sha.hexdigest(), size


def _copy_hashing(src, dest):
    md5, sha = hashlib.md5(), hashlib.new(HASH_ALGO)
    size = 0
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
        for chunk in iter(lambda: fin.read(CHUNK), b""):
            md5.update(chunk)
            sha.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return md5.hexdigest(), sha.hexdigest(), size


def ensure_image(db, auth, state_dir, name, filename, disk_format, container_format, visibility,
                 min_disk, min_ram, properties, state, check_mode):
    """Register (upload) an image idempotently: same name + same content = no change."""
    validate_name("image", name)
    images = _db.table("images")
    with db.tx() as conn:
        existing = conn.execute(images.select().where(
            images.c.name == name, images.c.status != "deleted",
            sa.or_(images.c.owner == auth.project_id, images.c.visibility == "public"))).fetchall()
    if state == "absent":
        if "admin" not in auth.roles:
            existing = [r for r in existing if r.owner == auth.project_id]  # a member removes only its own
        if not existing:
            return False, None
        if not check_mode:
            with db.tx() as conn:
                for row in existing:
                    in_use = _db.live_instances(conn, image_id=row.id)
                    if in_use:
                        raise Conflict("Image %s is used by %d instance(s)." % (name, in_use))
                    conn.execute(images.update().where(images.c.id == row.id).values(status="deleted", updated_at=_db.now()))
                    if row.location and os.path.exists(row.location):
                        os.unlink(row.location)
        return True, None

    if disk_format not in DISK_FORMATS:
        raise InvalidRequest("disk_format must be one of %s, got %r." % (", ".join(DISK_FORMATS), disk_format))
    if not filename or not os.path.isfile(filename):
        raise InvalidRequest("Image file %s does not exist on the controller." % filename)
    real = inspect_format(filename)
    if real["format"] != disk_format:
        raise InvalidRequest("Image file %s is %s but disk_format says %s." % (filename, real["format"], disk_format))
    if real.get("backing_file"):
        raise InvalidRequest("Image file %s is a qcow2 with a backing file (%s); upload a self-contained image."
                             % (filename, real["backing_file"]))
    if len(existing) > 1:
        raise Conflict("Multiple images are named %s; remove the duplicates first." % name)

    checksum, os_hash, size = hash_file(filename)
    if existing:
        row = existing[0]
        if row.os_hash_value == os_hash and row.status == "active":
            return False, image_dict(row)
        raise Conflict("Image %s already exists (%s) with different content; images are immutable, "
                       "register the new file under a new name." % (name, row.id))
    if check_mode:
        return True, {"name": name, "disk_format": disk_format, "checksum": checksum, "size": size}

    image_id = _db.new_id()
    final = os.path.join(store_dir(state_dir), image_id)
    part = final + ".part"
    with db.tx() as conn:
        conn.execute(images.insert().values(
            id=image_id, name=name, owner=auth.project_id, visibility=visibility, status="saving",
            disk_format=disk_format, container_format=container_format, min_disk=min_disk or 0,
            min_ram=min_ram or 0, properties=properties or {}, created_at=_db.now()))
    try:
        got_md5, got_sha, got_size = _copy_hashing(filename, part)
        if (got_md5, got_sha, got_size) != (checksum, os_hash, size):
            raise InvalidRequest("Image file %s changed while it was uploaded; try again." % filename)
        os.rename(part, final)
    except Exception:
        if os.path.exists(part):
            os.unlink(part)
        with db.tx() as conn:
            conn.execute(images.update().where(images.c.id == image_id).values(status="killed", updated_at=_db.now()))
        raise
    with db.tx() as conn:
        conn.execute(images.update().where(images.c.id == image_id).values(
            status="active", size=size, virtual_size=real.get("virtual_size") or size, checksum=checksum,
            os_hash_algo=HASH_ALGO, os_hash_value=os_hash, location=final, updated_at=_db.now()))
        return True, image_dict(conn.execute(images.select().where(images.c.id == image_id)).first())


def image_dict(row):
    out = _db.row_dict(row)
    return out
