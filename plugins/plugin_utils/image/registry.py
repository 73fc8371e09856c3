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
foreign key; the scheduler and the conductor read it), refreshed from Glance at every lookup, with the
members of a shared image in ``image_members``.

Who sees an image is decided in one place, :func:`visible` (Glance's rule: public images for everyone,
community images for everyone by ID but by name only for their owner project, the owner's, a shared
image for its member projects, everything else for admin), used by :func:`find_image` for bootflow's
records and by the lookups of a noauth Glance; with a Keystone token Glance applies the same rule itself,
and ``Glance.images_named`` drops other projects' community images from a lookup by name.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import tempfile
from urllib.parse import urlsplit

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import (  # the API's vocabulary
    DISK_FORMATS,
    IMAGE_STATES,
    IMAGE_VISIBILITIES,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings
from ansible_collections.bootflow.cloud.plugins.module_utils.host.image_cache import inspect_format
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import intake as _intake
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce

BACKENDS = ("local", "glance")
DEFAULT_BACKEND = "local"
HASH_ALGO = "sha512"
CHUNK = 1024 * 1024
# Glance's four visibilities and the statuses of a member project (image API v2)
VISIBILITIES = IMAGE_VISIBILITIES
DEFAULT_VISIBILITY = "private"
# the image statuses deactivate/reactivate move between (Glance refuses them in any other status)
SWITCHABLE = {"deactivated": "active", "active": "deactivated"}


def store_dir(state_dir):
    path = _db.image_store_dir(state_dir)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def visible(auth, image, member_status=None, by_id=True, listed="accepted", as_user=False):
    """THE rule of who sees an image (Glance's ``is_image_visible`` and image list), for a record of the
    images table or of a noauth Glance alike:

    - another project's ``community`` image is found by ID only, never by name, by anybody (admins
      included): Glance lists it only when asked (``visibility=community``), so a name lookup (which is
      Glance's default list) does not see it. A community image can thus neither capture a name other
      projects boot by nor block a public image of its name;
    - an admin sees every other image (by name, with ``as_user``, only what its own project would:
      Glance's ``admin_as_user``, used where an admin works on its own project's images by name);
    - ``public`` images are every project's, and so are ``community`` ones by ID;
    - the owner project sees its images;
    - a ``shared`` image is seen by its member projects: by ID whatever the member status (Glance: a
      pending or rejected member can still use an image whose ID it knows), by name only when the status
      is ``listed`` (``accepted``, as Glance's default list; ``all`` for any status).

    ``image``: a row or a Glance record (``visibility``, ``owner``); ``member_status``: the caller's
    project's membership of it (None: not a member)."""
    get = image.get if isinstance(image, dict) else lambda key: getattr(image, key)
    mine = get("owner") is not None and get("owner") == auth.project_id
    if get("visibility") == "community" and not by_id and not mine:
        return False
    if "admin" in auth.roles and (by_id or not as_user):
        return True
    if get("visibility") in ("public", "community") or mine:
        return True
    if get("visibility") == "shared" and member_status is not None:
        return by_id or listed in ("all", member_status)
    return False


def member_statuses(conn, project_id, image_ids):
    """{image id: status} of a project's memberships of these images."""
    if not image_ids:
        return {}
    members = _db.table("image_members")
    rows = conn.execute(sa.select(members.c.image_id, members.c.status).where(
        members.c.member_id == project_id, members.c.image_id.in_(list(image_ids))))
    return {r.image_id: r.status for r in rows}


def visible_images(conn, auth, ref, ids=True, listed="accepted", as_user=False):
    """The images (not deleted) whose ID (with ``ids``) or name is ``ref`` and the caller sees (``visible``),
    the one matching by ID first. ``auth`` None: every one (the controller's own lookups)."""
    images = _db.table("images")
    match = sa.or_(images.c.id == ref, images.c.name == ref) if ids else images.c.name == ref
    rows = conn.execute(images.select().where(match, images.c.status != "deleted").order_by(images.c.created_at)).fetchall()
    if auth is not None:
        statuses = member_statuses(conn, auth.project_id, [r.id for r in rows if r.visibility == "shared"])
        rows = [r for r in rows if visible(auth, r, statuses.get(r.id), by_id=ids and r.id == ref, listed=listed,
                                           as_user=as_user)]
    return sorted(rows, key=lambda r: r.id != ref)


def find_image(conn, ref, auth=None, listed="accepted"):
    """Image by id or name, visible to the caller (``visible``): the lookup of nova-api's create, image_fetch
    and the image modules. An image whose ID is ``ref`` wins; several of that name are a Conflict."""
    rows = visible_images(conn, auth, ref, listed=listed)
    if not rows:
        raise NotFound("Image %s could not be found." % ref)
    if rows[0].id == ref:
        return rows[0]
    if len(rows) > 1:
        raise Conflict("Multiple images are named %s; use the image ID (%s)." % (ref, ", ".join(r.id for r in rows)))
    return rows[0]


def image_record(conn, image_id):
    """The registry's row of an image by ID, whoever may see it now (what an instance was booted from), or None."""
    images = _db.table("images")
    return conn.execute(images.select().where(images.c.id == image_id)).first()


def check_bootable(image, flavor=None):
    """nova-api's checks of an image for a boot: active, and (with the flavor) its min_disk, min_ram and
    virtual size fit the flavor. Raises InvalidRequest."""
    if image.status == "deactivated":
        raise InvalidRequest("Image %s is not active (status deactivated): its owner or an admin deactivated it and "
                             "can reactivate it (bootflow.cloud.image, state present)." % image.name)
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
    return _intake.shown(urlsplit(url or ""))


def _too_big(limit, why):
    def message(nbytes):
        return "The image is larger than %s (%d bytes): %s%d bytes; nothing was registered." % (
            why, limit, "more than " if nbytes > limit else "", nbytes)
    return message


def size_limit(conn, project_id, backend_local=True):
    """(bytes an upload of the project may have, why): the operator's image_size_cap, and with the local
    store the project's image_size_total quota left (Glance's unified limits)."""
    cap = _intake.size_cap()
    left = _quota.image_bytes_left(conn, project_id) if backend_local and project_id else None
    if left is not None and left < cap:
        return max(left, 0), "what is left of project %s's image_size_total quota" % project_id
    return cap, "the image size cap (image.image_size_cap)"


def download_url(url, state_dir, timeout=60, validate_certs=True, max_bytes=None, why=None):
    """Stream an http(s) URL into a private (0600) staging file in the image store on the controller
    and return its path; the caller uploads it like a local file and removes it. The operator's rules
    (``intake.check_url``: schemes, ports, hosts, no private addresses) are checked for the URL and each
    redirect hop before it is connected to, and the download stops past ``max_bytes`` (default the image
    size cap). A failed or refused download leaves no file behind."""
    if max_bytes is None:
        max_bytes, why = _intake.size_cap(), "the image size cap (image.image_size_cap)"
    fd, path = tempfile.mkstemp(prefix=".download-", dir=store_dir(state_dir))
    try:
        with os.fdopen(fd, "wb") as out:
            _intake.download(url, out, timeout, validate_certs, max_bytes, _too_big(max_bytes, why))
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


def _check_size(filename):
    """The file's size once the operator's image_size_cap allows it (InvalidRequest otherwise)."""
    size, cap = os.path.getsize(filename), _intake.size_cap()
    if size > cap:
        raise InvalidRequest("Image file %s is larger than the image size cap (image.image_size_cap, %d bytes): %d "
                             "bytes." % (filename, cap, size))
    return size


def open_checked(path, checked=None):
    """``open(path, "rb")``; with ``checked`` (the real path ``intake.check_filename`` allowed), the file opened
    must be that very path (the kernel's name of the open file): a directory swapped for a symlink after the
    check is refused (AuthError), not read."""
    f = open(path, "rb")  # pylint: disable=consider-using-with  # returned to the caller's with
    if checked is not None:
        opened = os.path.realpath("/proc/self/fd/%d" % f.fileno())
        if opened != checked:
            f.close()
            raise AuthError("filename %s changed after it was checked (it now opens %s): the upload is stopped "
                            "(the image, if already created, is killed and holds no data)." % (checked, opened))
    return f


def _copy_hashing(src, dest, max_bytes=None, checked=None):
    """Copy ``src`` to ``dest`` (0600) and return its (md5, sha512, bytes); InvalidRequest when it has more
    than ``max_bytes`` bytes (a file that grew after its size was checked). ``checked``: see open_checked."""
    fin = open_checked(src, checked)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with fin, os.fdopen(fd, "wb") as fout:
        reader = HashingReader(fin, os.path.getsize(src))
        for chunk in iter(lambda: reader.read(CHUNK), b""):
            if max_bytes is not None and reader.nbytes > max_bytes:
                raise InvalidRequest("Image file %s grew past the %d bytes it had when it was checked; upload a file "
                                     "that does not change." % (src, max_bytes))
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return reader.digests()


def resolve_backend(value=None):
    """``image_backend`` option, else E(BOOTFLOW_IMAGE_BACKEND), else ``local``."""
    return settings.backend("image_backend", value, "BOOTFLOW_IMAGE_BACKEND", BACKENDS, DEFAULT_BACKEND)


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


def glance_members(glance, auth, image):
    """Glance's members of a shared image as the caller sees them: (members, complete). Its owner, an admin
    and anyone on a noauth Glance see every member (complete); a member project sees only its own
    membership. (None, False) when the image is not shared (Glance has no members list for it then)."""
    if image.get("visibility") != "shared":
        return None, False
    complete = glance.token is None or "admin" in auth.roles or image.get("owner") == auth.project_id
    return glance.members(image["id"]), complete


def _status_of(members, project_id):
    return next((m["status"] for m in members[0] or () if m["member_id"] == project_id), None)


def _glance_visible(glance, auth, seen, listed="accepted", as_user=False):
    """``visible`` for Glance records, as ``check(image, by_id)``. A noauth Glance shows everything, so
    bootflow decides (with the members read from Glance); with a Keystone token Glance has decided already
    (only ``as_user`` narrows what an admin sees). Members read are kept in ``seen`` (id -> members)."""
    def check(image, by_id):
        if glance.token is not None and not as_user:
            return True
        if image["id"] not in seen:
            seen[image["id"]] = glance_members(glance, auth, image)
        return visible(auth, image, _status_of(seen[image["id"]], auth.project_id), by_id, listed, as_user)
    return check


def _timestamp(value):
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return _db.now()


def mirror(conn, image, url, members=None):
    """Create or refresh the bootflow record of a Glance image (same id) and, given its ``members``
    ((list, complete) as glance_members reads them), its image_members rows; returns the row."""
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
    if members is not None and members[0] is not None:
        _mirror_members(conn, image["id"], *members)
    return conn.execute(images.select().where(images.c.id == image["id"])).first()


def _mirror_members(conn, image_id, members, complete):
    """image_members rows = Glance's members of the image (only the ones seen, unless ``complete``)."""
    table = _db.table("image_members")
    have = {r.member_id: r for r in conn.execute(table.select().where(table.c.image_id == image_id))}
    for member in members:
        row = have.get(member["member_id"])
        values = dict(status=member["status"], updated_at=_timestamp(member.get("updated_at")))
        if row is None:
            conn.execute(table.insert().values(image_id=image_id, member_id=member["member_id"],
                                               created_at=_timestamp(member.get("created_at")), **values))
        elif row.status != member["status"]:
            conn.execute(table.update().where(table.c.image_id == image_id,
                                              table.c.member_id == member["member_id"]).values(**values))
    gone = set(have) - {m["member_id"] for m in members} if complete else ()
    if gone:
        conn.execute(table.delete().where(table.c.image_id == image_id, table.c.member_id.in_(sorted(gone))))


def forget_members(conn, image_id, member_id=None):
    """Drop the membership rows of an image (one project's, with ``member_id``)."""
    table = _db.table("image_members")
    where = [table.c.image_id == image_id] + ([table.c.member_id == member_id] if member_id else [])
    conn.execute(table.delete().where(*where))


def mark_gone(db, image_id):
    """The Glance image behind a record is gone (deleted in Glance): the record says so too."""
    images = _db.table("images")
    with db.tx() as conn:
        conn.execute(images.update().where(images.c.id == image_id, images.c.status != "deleted").values(
            status="deleted", updated_at=_db.now()))
        forget_members(conn, image_id)


def boot_image_ref(ctx, ref, listed="accepted"):
    """nova-api's image lookup for a create: with the glance backend, find ``ref`` (id or name) in Glance
    as the caller, refresh its record (and members) here and return its id; with the local backend,
    ``ref`` itself. ``listed``: which member statuses a lookup by name finds (``visible``)."""
    if resolve_backend(ctx.args.get("image_backend")) == "local" or not ref:
        return ref
    glance = glance_for(ctx)
    seen = {}
    image = glance.find(ref, _glance_visible(glance, ctx.auth, seen, listed), listed, ctx.auth.project_id)
    members = seen.get(image["id"]) or glance_members(glance, ctx.auth, image)
    with ctx.db.tx() as conn:
        mirror(conn, image, glance.url, members)
    return image["id"]


def refresh(ctx, row):
    """A record that came from Glance, refreshed from Glance as the caller (image_fetch: the image URI and
    metadata of seed step 21). Returns (glance client, Glance's record, refreshed row); (None, None, row) for
    an image of the local store."""
    where = _glance.parse_location(row.location)
    if where is None:
        return None, None, row
    glance = glance_for(ctx, fallback_url=where[0])
    seen = {}
    image = glance.image(row.id)
    if image is None or not _glance_visible(glance, ctx.auth, seen)(image, True):
        if image is None and glance.token is None:
            mark_gone(ctx.db, row.id)
        elif image is None:
            # with a token, a 404 may only mean "not yours": the record stays, the caller's membership goes
            with ctx.db.tx() as conn:
                forget_members(conn, row.id, ctx.auth.project_id)
        elif seen.get(row.id, (None,))[0] is not None:
            # a noauth Glance's whole members list says the caller is no member (any more): the copy follows
            with ctx.db.tx() as conn:
                _mirror_members(conn, row.id, *seen[row.id])
        raise NotFound("Image %s (%s) could not be found in Glance at %s." % (row.name, row.id, glance.url))
    members = seen.get(row.id) or glance_members(glance, ctx.auth, image)
    with ctx.db.tx() as conn:
        row = mirror(conn, image, glance.url, members)
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


STATES = IMAGE_STATES


def image_request(db, auth, state_dir, req, check_mode, glance=None, progress=None):
    """bootflow.cloud.image's request (``req``: its validated options): the policy rules of the state and
    visibility asked for, a download of ``url`` into a staging file first (``progress(msg)`` says so),
    then ``apply_image``. ``glance``: the Glance client, or a function returning it (called once the
    policy allowed the request). Returns (changed, image, diff)."""
    enforce(auth, {"absent": "image:delete", "deactivated": "image:deactivate"}.get(req["state"], "image:upload"))
    if req["visibility"] == "public" and req["state"] == "present":
        enforce(auth, "image:publicize")
    if req["state"] == "deactivated" and (req["filename"] or req["url"]):
        raise InvalidRequest("filename and url are not used with state deactivated (it works on the registered "
                             "image); leave them out.")
    filename = req["filename"]
    if filename and req["state"] == "present":
        # the operator's upload directory, never bootflow's own state: checked before the file is opened,
        # and the upload reads the real path checked here
        filename = _intake.check_filename(auth, filename, state_dir, getattr(db, "url", None))
    if callable(glance):
        glance = glance()
    staged = False
    if req["url"] and req["state"] == "present":
        if req["url_timeout"] <= 0:
            raise InvalidRequest("url_timeout must be a positive number of seconds, got %d." % req["url_timeout"])
        validate_name("image", req["name"])  # before the download, not after it
        _intake.check_url(req["url"])         # the operator's URL rules, before any connection
        max_bytes, why = _intake.size_cap(), "the image size cap (image.image_size_cap)"
        if glance is None:
            with db.tx() as conn:
                if not visible_images(conn, auth, req["name"], ids=False, as_user=True):
                    # a new image: the project's image quota, before the download (an existing one is compared)
                    _quota.check_image(conn, auth.project_id, 0)
                    max_bytes, why = size_limit(conn, auth.project_id)
        if progress is not None:
            progress("downloading image %s" % req["name"])
        filename = download_url(req["url"], state_dir, req["url_timeout"], req["validate_certs"], max_bytes, why)
        staged = True
    try:
        return apply_image(db, auth, state_dir, req["name"], filename, req["disk_format"], req["container_format"],
                           req["visibility"], req["min_disk"], req["min_ram"], req["properties"], req["state"],
                           check_mode, glance=glance, checked=None if staged else filename)
    except InvalidRequest as exc:
        if not staged:
            raise
        # the staging file's name means nothing to the caller: say where the bytes came from
        raise InvalidRequest("%s (the image downloaded from %s)" % (exc, redact_url(req["url"]))) from exc
    finally:
        if staged:
            os.unlink(filename)   # the staging copy of the download


def apply_image(db, auth, state_dir, name, filename, disk_format, container_format, visibility,
                min_disk, min_ram, properties, state, check_mode, glance=None, checked=None):
    """Register (upload), update, deactivate or delete an image idempotently; returns (changed, image,
    diff) with ``diff`` = {before, after} for --diff. With ``glance`` (a ``_glance.Glance``), in that Glance.

    - ``present`` with a file: same name + same content = the image (reactivated if deactivated, its
      ``visibility`` set when given); a new name = a new image (``visibility`` default private).
    - ``present`` without a file: an existing image (by name or ID) gets ``visibility`` and is reactivated.
    - ``deactivated``: an existing image (by name or ID) is deactivated (Glance's actions/deactivate).
    - ``absent``: every image of that name the caller's project sees is deleted (a member's: its own).
    Names are looked up as :func:`visible` says for the caller's project (an admin's too: as_user)."""
    if visibility is not None and visibility not in VISIBILITIES:
        raise InvalidRequest("visibility must be one of %s, got %r." % (", ".join(VISIBILITIES), visibility))
    if state not in STATES:
        raise InvalidRequest("state must be one of %s, got %r." % (", ".join(STATES), state))
    if glance is not None:
        return _apply_glance_image(db, auth, glance, name, filename, disk_format, container_format, visibility,
                                   min_disk, min_ram, properties, state, check_mode, checked)
    validate_name("image", name)
    images = _db.table("images")
    by_ref = state == "deactivated" or (state == "present" and not filename)
    real = validate_upload(name, filename, disk_format, properties) if state == "present" and not by_ref else None
    with db.tx() as conn:
        existing = visible_images(conn, auth, name, ids=by_ref, as_user=True)
    if state == "absent":
        if "admin" not in auth.roles:
            existing = [r for r in existing if r.owner == auth.project_id]  # a member removes only its own
        if not existing:
            return False, None, {"before": {}, "after": {}}
        if not check_mode:
            with db.tx() as conn:
                for row in existing:
                    in_use = _db.live_instances(conn, image_id=row.id)
                    if in_use:
                        raise Conflict("Image %s is used by %d instance(s)." % (name, in_use))
                    conn.execute(images.update().where(images.c.id == row.id).values(status="deleted", updated_at=_db.now()))
                    forget_members(conn, row.id)
                    if row.location and os.path.exists(row.location):
                        os.unlink(row.location)
        return True, None, {"before": _summaries(existing), "after": {}}

    row = _one(existing, name, by_ref)
    if by_ref:
        _require_existing(row, name, state)
        return _update_local(db, auth, row, visibility, "deactivated" if state == "deactivated" else "active", check_mode)
    if row is not None:
        if row.os_hash_value == hash_file(filename)[1] and row.status in SWITCHABLE:
            return _update_local(db, auth, row, visibility, "active", check_mode)
        raise Conflict("Image %s already exists (%s) with different content; images are immutable, "
                       "register the new file under a new name." % (name, row.id))
    visibility = visibility or DEFAULT_VISIBILITY
    size = _check_size(filename)
    if check_mode:
        with db.tx() as conn:
            _quota.check_image(conn, auth.project_id, size)
        checksum, _os_hash, size = hash_file(filename)
        predicted = {"name": name, "disk_format": disk_format, "checksum": checksum, "size": size}
        return True, predicted, {"before": {}, "after": {"name": name, "visibility": visibility, "status": "active"}}

    image_id = _db.new_id()
    final = os.path.join(store_dir(state_dir), image_id)
    part = final + ".part"
    with db.tx() as conn:
        _db.lock(conn, "image-quota:%s" % auth.project_id)
        _quota.check_image(conn, auth.project_id, size)   # in the transaction that adds the image
        conn.execute(images.insert().values(
            id=image_id, name=name, owner=auth.project_id, visibility=visibility, status="saving",
            disk_format=disk_format, container_format=container_format, min_disk=min_disk or 0,
            min_ram=min_ram or 0, properties=properties or {}, size=size, created_at=_db.now()))
    try:
        checksum, os_hash, size = _copy_hashing(filename, part, max_bytes=size, checked=checked)
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
        row = conn.execute(images.select().where(images.c.id == image_id)).first()
    return True, image_dict(row), {"before": {}, "after": _summary(row)}


def images_named(db, auth, name, glance=None):
    """The images named ``name`` that the caller's project sees, looked up as ``apply_image`` does (in Glance
    with ``glance``)."""
    if glance is not None:
        return _glance_existing(glance, auth, name, False)[0]
    with db.tx() as conn:
        return visible_images(conn, auth, name, ids=False, as_user=True)


# the states of an upload that did not finish: a snapshot left in one of them by a dead controller is made again
UNFINISHED = ("queued", "saving", "killed")


def discard_failed_snapshot(db, state_dir, project_id, name, instance_uuid):
    """After a snapshot's upload failed: its record (killed, or saving when the upload died before Glance's
    "killed") is deleted, as Nova deletes the image of a failed snapshot; a re-run may then use the name again.
    Returns how many records were deleted. (A real Glance's failed upload is deleted by the upload itself.)"""
    images = _db.table("images")
    with db.tx() as conn:
        rows = conn.execute(images.select().where(images.c.name == name, images.c.owner == project_id,
                                                  images.c.status.in_(UNFINISHED))).fetchall()
    rows = unfinished_snapshots(rows, instance_uuid)
    discard_unfinished(db, state_dir, rows)
    return len(rows)


def unfinished_snapshots(images, instance_uuid):
    """Among ``images`` (rows or Glance records), the snapshots of ``instance_uuid`` whose upload never finished."""
    return [i for i in images if image_property(i, "instance_uuid") == instance_uuid
            and field_getter(i)("status") in UNFINISHED]


def discard_unfinished(db, state_dir, images, glance=None):
    """Delete snapshot images whose upload never finished (``unfinished_snapshots``): in Glance with ``glance``
    (its mirror row too), else the local records and the partial file a dead upload left in the store. Nova
    deletes the image of a failed snapshot the same way."""
    for image in images:
        image_id = field_getter(image)("id")
        part = os.path.join(store_dir(state_dir), image_id + ".part")
        if glance is not None:
            glance.delete(image_id)
        elif os.path.exists(part):
            os.unlink(part)
        mark_gone(db, image_id)


def image_property(image, key):
    """An image's own property (a row keeps them in ``properties``; a Glance record among its fields)."""
    if isinstance(image, dict):
        return image.get(key)
    return (getattr(image, "properties", None) or {}).get(key)


def field_getter(image):
    """Attribute access for a row and a Glance record alike."""
    return image.get if isinstance(image, dict) else lambda key: getattr(image, key, None)


def _summary(image):
    """What --diff shows of an image: what identifies it and what a task can change."""
    get = field_getter(image)
    return {k: get(k) for k in ("id", "name", "owner", "visibility", "status")}


def _summaries(images):
    return {"images": [_summary(i) for i in images]}


def _one(existing, ref, by_ref):
    """The one image of ``existing`` (None when empty); several of a name are a Conflict."""
    if not existing:
        return None
    if len(existing) > 1 and field_getter(existing[0])("id") != ref:
        ids = ", ".join(field_getter(i)("id") for i in existing)
        if by_ref:
            raise Conflict("Multiple images are named %s; use the image ID (%s)." % (ref, ids))
        raise Conflict("Multiple images are named %s; remove the duplicates first (%s)." % (ref, ids))
    return existing[0]


def _require_existing(image, ref, state):
    if image is not None:
        return
    if state == "deactivated":
        raise NotFound("Image %s could not be found." % ref)
    raise InvalidRequest("Image %s does not exist: filename or url is required to register it." % ref)


def _changes(auth, image, visibility, status):
    """What an existing image needs to get ``visibility`` and ``status`` (None: keep), all checked before
    anything is written (Glance's rules): only its owner or an admin may change it, ``public`` needs an
    admin, and only an active image can be deactivated and only a deactivated one reactivated."""
    get = field_getter(image)
    changes = {}
    if visibility is not None and visibility != get("visibility"):
        changes["visibility"] = visibility
    if status is not None and status != get("status"):
        if SWITCHABLE.get(get("status")) != status:
            raise Conflict("Image %s is %s: only an active image can be deactivated, and only a deactivated one "
                           "reactivated." % (get("name"), get("status")))
        changes["status"] = status
    if not changes:
        return changes
    if "admin" not in auth.roles and get("owner") != auth.project_id:
        what = " and ".join(w for w in (
            "change its visibility" if "visibility" in changes else None,
            ("deactivate" if status == "deactivated" else "reactivate") + " it" if "status" in changes else None) if w)
        raise AuthError("Image %s (%s) belongs to another project: only its owner or an admin can %s."
                        % (get("name"), get("id"), what))
    if "visibility" in changes:
        enforce(auth, "image:modify")
        if visibility == "public":
            enforce(auth, "image:publicize")
    if "status" in changes:
        enforce(auth, "image:deactivate" if status == "deactivated" else "image:reactivate")
    return changes


def _update_local(db, auth, row, visibility, status, check_mode):
    changes = _changes(auth, row, visibility, status)
    before = _summary(row)
    if not changes:
        return False, image_dict(row), {"before": before, "after": before}
    if check_mode:
        return True, dict(image_dict(row), **changes), {"before": before, "after": dict(before, **changes)}
    images = _db.table("images")
    with db.tx() as conn:
        _db.lock(conn, "image:%s" % row.id)
        done = conn.execute(images.update().where(images.c.id == row.id, images.c.status == row.status).values(
            updated_at=_db.now(), **changes)).rowcount
        if not done:
            raise Conflict("Image %s changed while this task ran; run it again." % row.name)
        row = conn.execute(images.select().where(images.c.id == row.id)).first()
    return True, image_dict(row), {"before": before, "after": _summary(row)}


def _glance_existing(glance, auth, ref, ids):
    """The images of Glance named ``ref`` (or with that ID, with ``ids``) the caller's project sees
    (``visible``, an admin as its project), with the members read: (images, seen)."""
    seen = {}
    check = _glance_visible(glance, auth, seen, as_user=True)
    if ids and _glance.is_uuid(ref):
        image = glance.image(ref)
        if image is not None and check(image, True):
            return [image], seen
    found = [i for i in glance.images_named(ref, project_id=auth.project_id)
             if i.get("status") not in ("deleted", "pending_delete")]
    return [i for i in found if check(i, False)], seen


def _apply_glance_image(db, auth, glance, name, filename, disk_format, container_format, visibility,
                        min_disk, min_ram, properties, state, check_mode, checked=None):
    """``apply_image`` against a real Glance: the same checks, the same idempotency, Glance's ids."""
    validate_name("image", name)
    by_ref = state == "deactivated" or (state == "present" and not filename)
    if state == "present" and not by_ref:
        validate_upload(name, filename, disk_format, properties)
    existing, seen = _glance_existing(glance, auth, name, by_ref)
    if state == "absent":
        if "admin" not in auth.roles:
            existing = [i for i in existing if i.get("owner") == auth.project_id]
        if not existing:
            return False, None, {"before": {}, "after": {}}
        if check_mode:
            return True, None, {"before": _summaries(existing), "after": {}}
        with db.tx() as conn:
            for image in existing:
                in_use = _db.live_instances(conn, image_id=image["id"])
                if in_use:
                    raise Conflict("Image %s is used by %d instance(s)." % (name, in_use))
        for image in existing:
            glance.delete(image["id"])
            mark_gone(db, image["id"])
        return True, None, {"before": _summaries(existing), "after": {}}

    if len(existing) > 1 and existing[0]["id"] != name:
        raise Conflict("Multiple images are named %s in Glance; %s (%s)." % (
            name, "use the image ID" if by_ref else "remove the duplicates first", ", ".join(i["id"] for i in existing)))
    image = existing[0] if existing else None
    if by_ref:
        _require_existing(image, name, state)
        return _update_glance(db, auth, glance, image, seen, visibility,
                              "deactivated" if state == "deactivated" else "active", check_mode)
    if image is not None:
        if image.get("os_hash_value") == hash_file(filename)[1] and image.get("status") in SWITCHABLE:
            return _update_glance(db, auth, glance, image, seen, visibility, "active", check_mode)
        raise Conflict("Image %s already exists in Glance (%s, status %s) with different content; images are "
                       "immutable, register the new file under a new name." % (name, image["id"], image.get("status")))
    visibility = visibility or DEFAULT_VISIBILITY
    _check_size(filename)   # Glance's own image_size_cap and quotas apply in Glance
    if check_mode:
        checksum, _os_hash, size = hash_file(filename)
        predicted = {"name": name, "disk_format": disk_format, "checksum": checksum, "size": size}
        return True, predicted, {"before": {}, "after": {"name": name, "visibility": visibility, "status": "active"}}

    fields = dict({k: str(v) for k, v in (properties or {}).items()},
                  name=name, disk_format=disk_format, container_format=container_format, visibility=visibility,
                  min_disk=min_disk or 0, min_ram=min_ram or 0)
    if glance.token is None:
        fields["owner"] = auth.project_id  # a noauth Glance has no caller project: bootflow's is the owner
    image = glance.create(fields)
    try:
        with open_checked(filename, checked) as f:
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
        row = mirror(conn, image, glance.url)
    return True, image_dict(row), {"before": {}, "after": _summary(row)}


def _update_glance(db, auth, glance, image, seen, visibility, status, check_mode):
    """Visibility and status of an existing Glance image (PATCH, actions/deactivate|reactivate); the copy
    here follows Glance's record (refreshed also when nothing changes, as every lookup does)."""
    changes = _changes(auth, image, visibility, status)
    before = _summary(image)
    if not changes or check_mode:
        with db.tx() as conn:
            row = mirror(conn, image, glance.url, seen.get(image["id"]) or glance_members(glance, auth, image))
        if not changes:
            return False, image_dict(row), {"before": before, "after": before}
        return True, dict(image_dict(row), **changes), {"before": before, "after": dict(before, **changes)}
    try:
        if "status" in changes:
            (glance.deactivate if status == "deactivated" else glance.reactivate)(image["id"])
        if "visibility" in changes:
            glance.set_visibility(image["id"], visibility)
    finally:
        # whatever Glance did (a refusal of the second call included), the copy says what Glance has
        image = glance.image(image["id"]) or image
        with db.tx() as conn:
            row = mirror(conn, image, glance.url, glance_members(glance, auth, image))
    return True, image_dict(row), {"before": before, "after": _summary(row)}


def image_dict(row):
    out = _db.row_dict(row)
    return out
