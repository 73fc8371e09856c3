# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Glance registry: image records and the image store on the controller, local or in a real Glance.

PRIVATE to the collection: may change at any time. Controller side only.

``local`` backend: an upload streams the file into ``<state_dir>/images/<id>.part`` while computing
md5 (Glance's ``checksum``) and sha512 (``os_hash_value``), then renames it into place and only then
marks the image ``active``: a half-written image is never active.

``glance`` backend (``_glance``): the file is checked the same way, then uploaded to a real Glance,
which computes the hashes again (they must match ours). The images table keeps a copy of each Glance
record under Glance's id with ``location`` ``glance+<url>/v2/images/<id>`` (instances refer to it by
foreign key; the scheduler and the conductor read it), refreshed from Glance at every lookup.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import tempfile

from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.six.moves.urllib.parse import urlsplit, urlunsplit
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.bootflow.cloud.plugins.module_utils._image import inspect_format
from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db, _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils._db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils._compute_api import validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import Conflict, InvalidRequest, NotFound

BACKENDS = ("local", "glance")
DEFAULT_BACKEND = "local"
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
        query = query.where(sa.or_(images.c.visibility.in_(("public", "community")), images.c.owner == auth.project_id))
    rows = conn.execute(query).fetchall()
    if not rows:
        raise NotFound("Image %s could not be found." % ref)
    if len(rows) > 1:
        raise Conflict("Multiple images are named %s; use the image ID (%s)." % (ref, ", ".join(r.id for r in rows)))
    return rows[0]


def check_bootable(image, flavor=None):
    """nova-api's checks of an image for a boot: active, and (with the flavor) its min_disk, min_ram and
    virtual size fit the flavor. Raises InvalidRequest."""
    if image.status != "active":
        raise InvalidRequest("Image %s is not active (status %s)." % (image.name, image.status))
    if flavor is None:
        return
    if flavor.disk_gb and image.min_disk and flavor.disk_gb < image.min_disk:
        raise InvalidRequest("Flavor %s's disk (%d GB) is smaller than the image's min_disk (%d GB)."
                             % (flavor.name, flavor.disk_gb, image.min_disk))
    if image.min_ram and flavor.ram_mb < image.min_ram:
        raise InvalidRequest("Flavor %s's memory (%d MB) is smaller than the image's min_ram (%d MB)."
                             % (flavor.name, flavor.ram_mb, image.min_ram))
    if flavor.disk_gb and image.virtual_size and flavor.disk_gb * 1024 ** 3 < image.virtual_size:
        raise InvalidRequest("Flavor %s's disk (%d GB) is smaller than the image (%d bytes)."
                             % (flavor.name, flavor.disk_gb, image.virtual_size))


class HashingReader:
    """A binary file read through md5 (Glance's legacy ``checksum``) and sha512 (``os_hash_value``): one
    pass, and what was hashed is exactly what went out. ``len()`` is the file's size, so an HTTP client
    sends it with a Content-Length, streamed."""

    def __init__(self, f, size):
        self.f, self.size, self.nbytes = f, size, 0
        self.md5, self.sha = hashlib.md5(), hashlib.new(HASH_ALGO)  # md5: Glance's checksum, not security

    def read(self, n=-1):
        block = self.f.read(n if n is not None and n >= 0 else CHUNK)
        self.md5.update(block)
        self.sha.update(block)
        self.nbytes += len(block)
        return block

    def __len__(self):
        return self.size

    def digests(self):
        """(md5 hex, sha512 hex, bytes read)."""
        return self.md5.hexdigest(), self.sha.hexdigest(), self.nbytes


URL_SCHEMES = ("http", "https")


def redact_url(url):
    """The URL without user:password@ (never echoed into a task result or a log)."""
    return _url_for_messages(urlsplit(url or ""))


def _url_for_messages(parts):
    host = parts.hostname or ""
    if parts.port:
        host += ":%d" % parts.port
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def download_url(url, state_dir, timeout=60, validate_certs=True):
    """Stream an http(s) URL into a private (0600) staging file in the image store on the controller
    and return its path; the caller uploads it like a local file and removes it. Only http and https
    are accepted (no file://, ftp:// or a bare path: a URL never reads the controller's own files), and
    a redirect may only lead to another http(s) URL. A failed download leaves no file behind."""
    parts = urlsplit(url or "")
    if parts.scheme not in URL_SCHEMES or not parts.hostname:
        raise InvalidRequest("url must be an http:// or https:// URL with a host, got %r." % _url_for_messages(parts))
    shown = _url_for_messages(parts)
    fd, path = tempfile.mkstemp(prefix=".download-", dir=store_dir(state_dir))
    try:
        with os.fdopen(fd, "wb") as out:
            resp = open_url(url, timeout=timeout, validate_certs=validate_certs, follow_redirects="safe")
            try:
                final = urlsplit(resp.geturl())
                if final.scheme not in URL_SCHEMES:
                    raise InvalidRequest("Downloading %s was redirected to a %s URL; only http(s) is followed."
                                         % (shown, final.scheme))
                shutil.copyfileobj(resp, out, CHUNK)
            finally:
                resp.close()
    except HTTPError as exc:
        os.unlink(path)
        raise InvalidRequest("Downloading the image from %s failed: HTTP %s %s." % (shown, exc.code, exc.reason)) from exc
    except (URLError, SSLValidationError, OSError, ValueError) as exc:
        os.unlink(path)
        raise InvalidRequest("Downloading the image from %s failed: %s." % (shown, getattr(exc, "reason", exc))) from exc
    except BaseException:
        os.unlink(path)
        raise
    return path


def hash_file(path):
    with open(path, "rb") as f:
        reader = HashingReader(f, os.path.getsize(path))
        while reader.read(CHUNK):
            pass
    return reader.digests()


def _copy_hashing(src, dest):
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(src, "rb") as fin, os.fdopen(fd, "wb") as fout:
        reader = HashingReader(fin, os.path.getsize(src))
        for chunk in iter(lambda: reader.read(CHUNK), b""):
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return reader.digests()


def resolve_backend(value=None):
    """``image_backend`` option, else E(BOOTFLOW_IMAGE_BACKEND), else ``local``."""
    backend = value or os.environ.get("BOOTFLOW_IMAGE_BACKEND") or DEFAULT_BACKEND
    if backend not in BACKENDS:
        where = "" if value else " (from the BOOTFLOW_IMAGE_BACKEND environment variable)"
        raise InvalidRequest("image_backend must be one of %s, got %r%s." % (", ".join(BACKENDS), backend, where))
    return backend


def glance_url(ctx, fallback=None):
    """Glance's URL for this step: the glance_url option, else E(BOOTFLOW_GLANCE_URL), else (keystone
    identity) the public ``image`` endpoint of Keystone's catalog, else ``fallback`` (the Glance an
    image record came from)."""
    url = ctx.args.get("glance_url") or os.environ.get("BOOTFLOW_GLANCE_URL")
    if url:
        return _glance.normalize_url(url)
    if ctx.auth_backend == "keystone":
        url = _catalog_image_endpoint(ctx)
        if url:
            return _glance.normalize_url(url)
    if fallback:
        return fallback
    raise InvalidRequest("image_backend=glance needs Glance's URL: set glance_url (e.g. with module_defaults) or "
                         "BOOTFLOW_GLANCE_URL on the controller%s." % (
                             ", or register an image endpoint in Keystone's catalog"
                             if ctx.auth_backend == "keystone" else ""))


def _catalog_image_endpoint(ctx):
    """The public endpoint of service type ``image`` in the caller's catalog (GET /v3/auth/catalog)."""
    keystone = ctx.keystone()
    try:
        resp = keystone.session.get(keystone.auth_url + "/auth/catalog", headers={"X-Auth-Token": ctx.args["auth_token"]},
                                    authenticated=False, connect_retries=0)
        catalog = resp.json().get("catalog") or []
    except Exception:  # pylint: disable=broad-except  # no catalog is "not configured", said by the caller
        return None
    region = os.environ.get("OS_REGION_NAME")
    for service in catalog:
        if service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints") or []:
            if endpoint.get("interface") == "public" and (not region or endpoint.get("region_id") == region):
                return endpoint.get("url")
    return None


def glance_for(ctx, fallback_url=None):
    """A Glance client for this step's caller: the caller's Keystone token with auth_backend=keystone,
    no token (a noauth Glance) with the local identity."""
    token = ctx.args.get("auth_token") if ctx.auth_backend == "keystone" else None
    return _glance.Glance(glance_url(ctx, fallback_url), token)


def _visible(auth, image):
    """Local scoping of a Glance record (a noauth Glance shows everything): public and community images,
    the caller's project's own, any for admin."""
    return ("admin" in auth.roles or image.get("visibility") in ("public", "community")
            or (image.get("owner") and image.get("owner") == auth.project_id))


def _timestamp(value):
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return _db.now()


def mirror(conn, image, url):
    """Create or refresh the bootflow record of a Glance image (same id); returns the row."""
    images = _db.table("images")
    _db.lock(conn, "image:%s" % image["id"])
    values = dict(
        name=image.get("name") or "", owner=image.get("owner"), visibility=image.get("visibility") or "private",
        status=image.get("status") or "queued", disk_format=image.get("disk_format") or "",
        container_format=image.get("container_format") or "bare", size=image.get("size"),
        virtual_size=image.get("virtual_size"), checksum=image.get("checksum"),
        os_hash_algo=image.get("os_hash_algo"), os_hash_value=image.get("os_hash_value"),
        location=_glance.location(url, image["id"]), properties=_glance.properties_of(image),
        min_disk=image.get("min_disk") or 0, min_ram=image.get("min_ram") or 0,
        updated_at=_timestamp(image.get("updated_at")))
    row = conn.execute(images.select().where(images.c.id == image["id"])).first()
    if row is None:
        conn.execute(images.insert().values(id=image["id"], created_at=_timestamp(image.get("created_at")), **values))
    elif any(getattr(row, k) != v for k, v in values.items()):
        conn.execute(images.update().where(images.c.id == image["id"]).values(**values))
    return conn.execute(images.select().where(images.c.id == image["id"])).first()


def mark_gone(db, image_id):
    """The Glance image behind a record is gone (deleted in Glance): the record says so too."""
    images = _db.table("images")
    with db.tx() as conn:
        conn.execute(images.update().where(images.c.id == image_id, images.c.status != "deleted").values(
            status="deleted", updated_at=_db.now()))


def boot_image_ref(ctx, ref):
    """nova-api's image lookup for a create: with the glance backend, find ``ref`` (id or name) in Glance
    as the caller, refresh its record here and return its id; with the local backend, ``ref`` itself."""
    if resolve_backend(ctx.args.get("image_backend")) == "local" or not ref:
        return ref
    glance = glance_for(ctx)
    image = glance.find(ref)
    if glance.token is None and not _visible(ctx.auth, image):
        raise NotFound("Image %s could not be found." % ref)
    with ctx.db.tx() as conn:
        mirror(conn, image, glance.url)
    return image["id"]


def refresh(ctx, row):
    """A record that came from Glance, refreshed from Glance as the caller (image_fetch: the image URI and
    metadata of seed step 21). Returns (glance client, Glance's record, refreshed row); (None, None, row) for
    an image of the local store."""
    where = _glance.parse_location(row.location)
    if where is None:
        return None, None, row
    glance = glance_for(ctx, fallback_url=where[0])
    image = glance.image(row.id)
    if image is None or (glance.token is None and not _visible(ctx.auth, image)):
        if image is None and glance.token is None:
            mark_gone(ctx.db, row.id)  # (with a token, a 404 may only mean "not yours": leave the record)
        raise NotFound("Image %s (%s) could not be found in Glance at %s." % (row.name, row.id, glance.url))
    with ctx.db.tx() as conn:
        row = mirror(conn, image, glance.url)
    return glance, image, row


def validate_upload(name, filename, disk_format, properties):
    """Everything about an upload that can be checked before anything is written: returns the file's
    format inspection. (Its hashes are computed while it is copied or sent: one pass over the file.)"""
    validate_name("image", name)
    if disk_format not in DISK_FORMATS:
        raise InvalidRequest("disk_format must be one of %s, got %r." % (", ".join(DISK_FORMATS), disk_format))
    reserved = sorted(set(properties or {}) & _glance.CORE)
    if reserved:
        raise InvalidRequest("properties must not set Glance's own image attributes (%s); use the module's options."
                             % ", ".join(reserved))
    if not filename or not os.path.isfile(filename):
        raise InvalidRequest("Image file %s does not exist on the controller." % filename)
    real = inspect_format(filename)
    if real["format"] != disk_format:
        raise InvalidRequest("Image file %s is %s but disk_format says %s." % (filename, real["format"], disk_format))
    if real.get("backing_file"):
        raise InvalidRequest("Image file %s is a qcow2 with a backing file (%s); upload a self-contained image."
                             % (filename, real["backing_file"]))
    if real.get("data_file"):
        raise InvalidRequest("Image file %s is a qcow2 with an external data file (%s); upload a self-contained image."
                             % (filename, real["data_file"]))
    return real


def ensure_image(db, auth, state_dir, name, filename, disk_format, container_format, visibility,
                 min_disk, min_ram, properties, state, check_mode, glance=None):
    """Register (upload) an image idempotently: same name + same content = no change. With ``glance``
    (a ``_glance.Glance``), in that Glance."""
    if glance is not None:
        return _ensure_glance_image(db, auth, glance, name, filename, disk_format, container_format, visibility,
                                    min_disk, min_ram, properties, state, check_mode)
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

    real = validate_upload(name, filename, disk_format, properties)
    if len(existing) > 1:
        raise Conflict("Multiple images are named %s; remove the duplicates first." % name)
    if existing:
        row = existing[0]
        if row.os_hash_value == hash_file(filename)[1] and row.status == "active":
            return False, image_dict(row)
        raise Conflict("Image %s already exists (%s) with different content; images are immutable, "
                       "register the new file under a new name." % (name, row.id))
    if check_mode:
        checksum, _os_hash, size = hash_file(filename)
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
        checksum, os_hash, size = _copy_hashing(filename, part)
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


def _ensure_glance_image(db, auth, glance, name, filename, disk_format, container_format, visibility,
                         min_disk, min_ram, properties, state, check_mode):
    """``ensure_image`` against a real Glance: the same checks, the same idempotency, Glance's ids."""
    validate_name("image", name)
    if state != "absent":
        validate_upload(name, filename, disk_format, properties)
    # what the caller sees in Glance of that name, scoped like the local registry (own project or public)
    existing = [i for i in glance.images_named(name)
                if i.get("status") not in ("deleted", "pending_delete")
                and (i.get("owner") == auth.project_id or i.get("visibility") == "public")]
    if state == "absent":
        if "admin" not in auth.roles:
            existing = [i for i in existing if i.get("owner") == auth.project_id]
        if not existing:
            return False, None
        if check_mode:
            return True, None
        with db.tx() as conn:
            for image in existing:
                in_use = _db.live_instances(conn, image_id=image["id"])
                if in_use:
                    raise Conflict("Image %s is used by %d instance(s)." % (name, in_use))
        for image in existing:
            glance.delete(image["id"])
            mark_gone(db, image["id"])
        return True, None

    if len(existing) > 1:
        raise Conflict("Multiple images are named %s in Glance; remove the duplicates first (%s)."
                       % (name, ", ".join(i["id"] for i in existing)))
    if existing:
        image = existing[0]
        if image.get("os_hash_value") == hash_file(filename)[1] and image.get("status") == "active":
            with db.tx() as conn:
                return False, image_dict(mirror(conn, image, glance.url))
        raise Conflict("Image %s already exists in Glance (%s, status %s) with different content; images are "
                       "immutable, register the new file under a new name." % (name, image["id"], image.get("status")))
    if check_mode:
        checksum, _os_hash, size = hash_file(filename)
        return True, {"name": name, "disk_format": disk_format, "checksum": checksum, "size": size}

    fields = dict({k: str(v) for k, v in (properties or {}).items()},
                  name=name, disk_format=disk_format, container_format=container_format, visibility=visibility,
                  min_disk=min_disk or 0, min_ram=min_ram or 0)
    if glance.token is None:
        fields["owner"] = auth.project_id  # a noauth Glance has no caller project: bootflow's is the owner
    image = glance.create(fields)
    try:
        with open(filename, "rb") as f:
            reader = HashingReader(f, os.path.getsize(filename))
            glance.upload(image["id"], reader)
        checksum, os_hash, size = reader.digests()
        image = glance.image(image["id"]) or {}
        if image.get("status") != "active":
            raise InvalidRequest("Glance left image %s %s after the upload." % (name, image.get("status") or "missing"))
        if (image.get("checksum"), image.get("os_hash_value"), image.get("size")) != (checksum, os_hash, size):
            raise InvalidRequest("Glance stored different content for image %s than the file %s (checksum %s, "
                                 "os_hash_value %s..., %s bytes; the file has %s, %s..., %d bytes): the file changed "
                                 "while it was uploaded or the upload was corrupted; try again."
                                 % (name, filename, image.get("checksum"), (image.get("os_hash_value") or "")[:16],
                                    image.get("size"), checksum, os_hash[:16], size))
    except BaseException:
        glance.delete(image["id"])  # nothing half-made: Glance keeps no queued or killed image of ours
        raise
    with db.tx() as conn:
        return True, image_dict(mirror(conn, image, glance.url))


def image_dict(row):
    out = _db.row_dict(row)
    return out
