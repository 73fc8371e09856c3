# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``glance`` image backend: a real Glance (image API v2) through openstacksdk.

PRIVATE to the collection: may change at any time. Controller side only.

``Glance(url, token)`` talks to one Glance: with a Keystone token (``auth_backend=keystone``: Glance's
keystonemiddleware validates it, Glance's policy and visibility rules apply to the caller), or with
none (``auth_backend=local``: Glance runs with noauth, every request is an admin's, and bootflow's own
policy and project scoping decide; see docs/images.md).

Records are read as Glance's JSON (``GET /v2/images/<id>``: ``os_hash_value``, extra properties at the
top level) through the openstacksdk image proxy; the data goes through the SDK's streaming
``download_image`` and a streamed ``PUT /v2/images/<id>/file`` - neither holds an image in memory.
Image sharing (members: ``add_member``, ``remove_member``, ``update_member``, ``members``) and the
visibility (``update_image``) go through the SDK's proxy methods, deactivate/reactivate through its
``request`` (Glance's answer checked).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import re
import warnings

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    BootflowError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.keystone import _unreachable
from ansible_collections.bootflow.cloud.plugins.plugin_utils.lazy_import import LazyModule

TIMEOUT = 60            # seconds per request (a whole upload/download may take longer: it streams)
CHUNK = 1024 * 1024
LOCATION_PREFIX = "glance+"
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
# Glance's own image attributes (the image schema); every other key of an image is a property
CORE = frozenset((
    "id", "name", "status", "visibility", "protected", "os_hidden", "checksum", "os_hash_algo",
    "os_hash_value", "owner", "size", "virtual_size", "min_ram", "min_disk", "created_at", "updated_at",
    "tags", "self", "file", "schema", "disk_format", "container_format", "locations", "direct_url",
    "stores", "os_glance_import_task", "os_glance_failed_import", "os_glance_importing_to_stores"))

# imported when a Glance is first used (plugin_utils/lazy_import.py)
openstack = LazyModule("openstack")
openstack_connection = LazyModule("openstack.connection")
ks_exc = LazyModule("keystoneauth1.exceptions")
ks_noauth = LazyModule("keystoneauth1.noauth")
ks_session = LazyModule("keystoneauth1.session")
ks_token_endpoint = LazyModule("keystoneauth1.token_endpoint")


def normalize_url(url):
    """Glance's root URL: ``http://h:9292``, ``http://h:9292/`` and ``http://h:9292/v2`` give ``http://h:9292``."""
    url = (url or "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest("glance_url must be an http:// or https:// URL of Glance, got %r." % url)
    if url.endswith("/v2"):
        url = url[:-3]
    return url


def is_uuid(ref):
    """Whether ``ref`` looks like an image ID (a UUID, with or without dashes)."""
    return bool(_UUID.fullmatch(ref or ""))


def location(url, image_id):
    """The ``location`` of a Glance image in the bootflow registry (where the record came from)."""
    return "%s%s/v2/images/%s" % (LOCATION_PREFIX, url, image_id)


def parse_location(value):
    """(glance_url, image_id) of a ``glance+...`` location, or None for any other location."""
    if not value or not value.startswith(LOCATION_PREFIX):
        return None
    url, sep, image_id = value[len(LOCATION_PREFIX):].rpartition("/v2/images/")
    if not sep or not url or not image_id:
        return None
    return url, image_id


def properties_of(image):
    """The extra properties of a Glance image record (everything that is not a core attribute)."""
    return {k: v for k, v in image.items() if k not in CORE}


@contextlib.contextmanager
def _quiet():
    """openstacksdk 4.x warns about its own internal calls (proxy._extract_name, resource._compute_attributes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The (_compute_attributes method|'service_type' parameter) is")
        yield


def _message(resp):
    """Glance's error text (its bodies are small HTML pages or JSON) in one line."""
    try:
        text = resp.text
    except Exception:  # pragma: no cover - a body that cannot be decoded
        return "HTTP %s" % resp.status_code
    try:
        data = resp.json()
        text = (data.get("error") or {}).get("message") or data.get("message") or text
    except ValueError:
        pass
    text = html.unescape(re.sub(r"<[^>]+>", " ", str(text)))
    text = " ".join(text.split())
    # "404 Not Found 404 Not Found No image found with ID x" -> drop the repeated title
    text = re.sub(r"^(\d{3} [A-Za-z ]+?) \1 ", "", text)
    return text[:400]


class Glance:
    """One Glance image API v2, used with the caller's token (or none: noauth Glance)."""

    def __init__(self, url, token=None, timeout=TIMEOUT):
        missing = openstack_connection.import_error() or ks_token_endpoint.import_error()
        if missing:
            raise InvalidRequest("image_backend=glance needs the openstacksdk Python package on the controller "
                                 "(pip install openstacksdk): %s" % missing)
        self.url = normalize_url(url)
        self.token = token
        auth = ks_token_endpoint.Token(self.url, token) if token else ks_noauth.NoAuth()
        self._session = ks_session.Session(auth=auth, timeout=timeout, app_name="bootflow.cloud")
        self._conn = None
        self.requests = 0

    @property
    def conn(self):
        if self._conn is None:
            self._conn = openstack_connection.Connection(session=self._session, image_endpoint_override=self.url)
        return self._conn

    # --- HTTP --------------------------------------------------------------------------------------

    def _call(self, method, path, ok=(200,), **kwargs):
        self.requests += 1
        try:
            with _quiet():
                resp = self.conn.image.request(path, method, **kwargs)
        except (ks_exc.ClientException, openstack.exceptions.SDKException) as exc:
            raise self._failed(exc) from exc
        if resp.status_code not in ok:
            self._raise(resp, method, path)
        return resp

    def _failed(self, exc):
        """The error for a request that got no answer (the connection's, when one is in the chain)."""
        cause = exc
        while cause is not None and not isinstance(cause, ks_exc.ConnectionError):
            cause = cause.__cause__ or cause.__context__
        if cause is None and isinstance(exc, ks_exc.DiscoveryFailure):
            # the SDK's version discovery hides why: ask the root URL once more to find out
            try:
                self._session.get(self.url, authenticated=False, connect_retries=0, raise_exc=False)
            except ks_exc.ConnectionError as probe:
                cause = probe
        if cause is not None:
            return InvalidRequest("cannot reach Glance at %s (%s)" % (self.url, _unreachable(cause)))
        return InvalidRequest("Glance at %s: %s" % (self.url, " ".join(str(exc).split())[:400]))

    def _raise(self, resp, method, path):
        msg = _message(resp)
        code = resp.status_code
        where = "Glance at %s (%s %s)" % (self.url, method, path)
        if code == 401:
            hint = ("" if self.token else ": this Glance wants a Keystone token; with auth_backend=local, run Glance "
                    "without authentication (noauth) or use auth_backend=keystone")
            raise AuthError("%s refused the request (401 Unauthorized)%s" % (where, hint))
        if code == 403:
            raise AuthError("%s forbids this (403): %s" % (where, msg))
        if code == 404:
            raise NotFound("%s: %s" % (where, msg))
        if code == 409:
            raise Conflict("%s: %s" % (where, msg))
        if code in (400, 413, 415):
            # 415 is what Glance answers for image data it refuses (format mismatch, failed safety check)
            raise InvalidRequest("%s refused it (%d): %s" % (where, code, msg))
        raise BootflowError("%s answered %d: %s" % (where, code, msg))

    # --- records -----------------------------------------------------------------------------------

    def image(self, image_id):
        """The image record, or None when Glance has no such image (or hides it from the caller)."""
        try:
            return self._call("GET", "/images/%s" % image_id).json()
        except NotFound:
            return None

    def images_named(self, name, member_status="accepted", project_id=None):
        """Every image of that name the caller finds by name. Glance's default list holds the public images,
        the caller's own and the ones shared with it that it accepted (every image for an admin) but no
        other project's community images: those are found by ID only, so that a community image can neither
        capture a name other projects boot by nor block a public image of that name. Shared images whose
        membership is not accepted are asked for too with ``member_status`` ``pending``, ``rejected`` or
        ``all``. ``project_id``: the caller's project, whose own community images are found by name (any
        other project's are dropped here, also from what a noauth Glance lists; they are asked for with
        ``visibility=community`` and kept when they are the caller's). One query each, pages
        followed (Glance pages at 25 by default), each image once."""
        queries = [{}, {"visibility": "community"}] if project_id is not None else [{}]
        if member_status != "accepted":
            queries.append({"visibility": "shared", "member_status": member_status})
        out = {}
        for extra in queries:
            for image in self._list_images(dict(extra, name=name, limit=100)):
                if image.get("visibility") == "community" and (project_id is None or image.get("owner") != project_id):
                    continue
                out.setdefault(image["id"], image)
        return list(out.values())

    def _list_images(self, params):
        out, path = [], "/images"
        while True:
            data = self._call("GET", path, params=params).json()
            out.extend(data.get("images") or [])
            nxt = data.get("next")
            if not nxt or not data.get("images"):
                return out
            # "next" is "/v2/images?marker=...": relative to the versioned endpoint
            path, params = nxt[len("/v2"):] if nxt.startswith("/v2/") else nxt, None

    def find(self, ref, visible=None, member_status="accepted", project_id=None):
        """Image by id, else by name (exactly one); raises NotFound / Conflict. ``visible(image, by_id)``
        keeps only what the caller may see (bootflow's rule, for a noauth Glance, which shows everything);
        without it, what Glance shows the caller is what it may see. ``member_status``, ``project_id``:
        see images_named (another project's community image is found by ID only)."""
        if is_uuid(ref):
            image = self.image(ref)
            if image is not None and (visible is None or visible(image, True)):
                return image
        found = [i for i in self.images_named(ref, member_status, project_id) if visible is None or visible(i, False)]
        if not found:
            raise NotFound("Image %s could not be found in Glance at %s." % (ref, self.url))
        if len(found) > 1:
            raise Conflict("Multiple images are named %s in Glance; use the image ID (%s)."
                           % (ref, ", ".join(i["id"] for i in found)))
        return found[0]

    def create(self, fields):
        """POST /v2/images (status queued); returns the record."""
        return self._call("POST", "/images", ok=(201,), json=fields).json()

    def upload(self, image_id, data):
        """PUT /v2/images/<id>/file, streamed from ``data`` (a binary file object with ``len()``: requests sends
        it in blocks with a Content-Length)."""
        self._call("PUT", "/images/%s/file" % image_id, ok=(204,), data=data,
                   headers={"Content-Type": "application/octet-stream", "X-OpenStack-Image-Size": str(len(data))})

    def delete(self, image_id):
        """DELETE the image; an image that is gone already is fine."""
        try:
            self._call("DELETE", "/images/%s" % image_id, ok=(204,))
        except NotFound:
            pass

    # --- visibility, status and members (openstacksdk's image proxy) -------------------------------

    def _sdk(self, method, path, call):
        """One call of the SDK's image proxy; Glance's error answers become the errors _call gives."""
        self.requests += 1
        try:
            with _quiet():
                return call()
        except openstack.exceptions.HttpException as exc:
            if exc.response is not None and exc.response.status_code >= 400:
                self._raise(exc.response, method, path)
            raise self._failed(exc) from exc
        except (ks_exc.ClientException, openstack.exceptions.SDKException) as exc:
            raise self._failed(exc) from exc

    def set_visibility(self, image_id, visibility):
        """PATCH the image's visibility (``update_image``: a JSON patch). Glance checks the caller may:
        the owner or an admin, ``public`` needs an admin."""
        self._sdk("PATCH", "/images/%s" % image_id,
                  lambda: self.conn.image.update_image(image_id, visibility=visibility))

    def deactivate(self, image_id):
        """POST /v2/images/<id>/actions/deactivate (active -> deactivated; Glance refuses other statuses).
        Sent through the proxy's request(): the SDK's deactivate_image does not look at the answer."""
        self._call("POST", "/images/%s/actions/deactivate" % image_id, ok=(204,))

    def reactivate(self, image_id):
        """POST /v2/images/<id>/actions/reactivate (deactivated -> active)."""
        self._call("POST", "/images/%s/actions/reactivate" % image_id, ok=(204,))

    def members(self, image_id):
        """The members of a shared image, [{member_id, status, created_at, updated_at}]: all of them for its
        owner, an admin (and a noauth Glance), only its own membership for a member project."""
        path = "/images/%s/members" % image_id
        return [member_dict(m) for m in self._sdk("GET", path, lambda: list(self.conn.image.members(image_id)))]

    def add_member(self, image_id, member_id):
        """Share a ``shared`` image with a project (status pending); Glance answers 409 for a member twice."""
        path = "/images/%s/members" % image_id
        return member_dict(self._sdk("POST", path, lambda: self.conn.image.add_member(image_id, member_id=member_id)))

    def remove_member(self, image_id, member_id):
        """Remove a project from the image's members."""
        path = "/images/%s/members/%s" % (image_id, member_id)
        self._sdk("DELETE", path, lambda: self.conn.image.remove_member(member_id, image_id, ignore_missing=False))

    def update_member(self, image_id, member_id, status):
        """Set a member's status (pending, accepted, rejected): the member project itself (or an admin)."""
        path = "/images/%s/members/%s" % (image_id, member_id)
        return member_dict(self._sdk("PUT", path,
                                     lambda: self.conn.image.update_member(member_id, image_id, status=status)))

    # --- data --------------------------------------------------------------------------------------

    def download(self, image, out, expected, chunk=CHUNK):
        """Stream the image's data into the binary file ``out`` while hashing it; verify the size and
        every hash of ``expected`` ({algo: hex}); returns the number of bytes. Raises InvalidRequest on a
        mismatch (the caller removes ``out``)."""
        hashes = {algo: hashlib.new(algo) for algo in expected}
        self.requests += 1
        try:
            with _quiet():
                resp = self.conn.image.download_image(image["id"], stream=True, chunk_size=chunk)
        except openstack.exceptions.NotFoundException as exc:
            raise NotFound("Image %s has no data in Glance at %s: %s" % (image["id"], self.url, exc)) from exc
        except (ks_exc.ClientException, openstack.exceptions.SDKException) as exc:
            raise self._failed(exc) from exc
        try:
            if resp.status_code != 200:
                self._raise(resp, "GET", "/images/%s/file" % image["id"])
            nbytes = 0
            limit = image.get("size")
            for block in resp.iter_content(chunk_size=chunk):
                nbytes += len(block)
                if limit is not None and nbytes > limit:
                    raise InvalidRequest("download of image %s from Glance is larger than its size (%d bytes); refusing it"
                                         % (image["id"], limit))
                out.write(block)
                for h in hashes.values():
                    h.update(block)
        finally:
            resp.close()
        if limit is not None and nbytes != limit:
            raise InvalidRequest("download of image %s from Glance has %d bytes, Glance says %d; refusing it"
                                 % (image["id"], nbytes, limit))
        for algo, want in expected.items():
            have = hashes[algo].hexdigest()
            if have != want:
                raise InvalidRequest("checksum mismatch (%s) downloading image %s from Glance: expected %s got %s; "
                                     "refusing it" % (algo, image["id"], want, have),
                                     expected=want, actual=have, algorithm=algo)
        return nbytes


def member_dict(member):
    """An SDK image Member as plain data."""
    return {"member_id": member.member_id, "status": member.status, "created_at": member.created_at,
            "updated_at": member.updated_at}


def expected_hashes(image):
    """{algo: hex} to verify a download of a Glance record with: its multihash (os_hash_algo +
    os_hash_value), or its md5 checksum when it has none (as Nova does)."""
    algo = (image.get("os_hash_algo") or "").lower().replace("-", "_")
    if algo and image.get("os_hash_value"):
        if algo not in hashlib.algorithms_available:
            raise InvalidRequest("Glance image %s uses hash algorithm %r, which this controller does not have."
                                 % (image["id"], algo))
        return {algo: image["os_hash_value"].lower()}
    if image.get("checksum"):
        return {"md5": image["checksum"].lower()}
    raise InvalidRequest("Glance image %s has no os_hash_value and no checksum; refusing to use data that "
                         "cannot be verified." % image["id"])
