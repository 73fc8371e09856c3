# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What an image upload may read and fetch: glance-api.conf's ``image_size_cap``, the operator's upload
directory and Glance's ``[import_filtering_opts]`` for ``web-download``.

PRIVATE to the collection: may change at any time. Controller side only.

Every rule comes from the operator's configuration (plugin_utils/settings.py, section ``image``), never
from a task:

- ``image_size_cap`` (bytes, default 1 TiB as Glance's): no image is larger; a download is stopped as soon
  as it passes the cap (a missing or lying Content-Length changes nothing), a file larger than it is refused.
- ``upload_dir``: the only directory whose files a non-admin may register with ``filename`` (the real path,
  after every symlink and ``..``, must be inside it); without it, only an admin may use ``filename``. For
  everybody, admins included, the file must not be in the state dir (the database, the Fernet and
  credential keys, the admin password, the image store), the database file or the operator's
  configuration, nor a hard link of a file there.
- ``url_allowed_schemes`` (default http, https), ``url_allowed_ports`` (default 80, 443),
  ``url_allowed_hosts`` (default: any host; when set, only these names, addresses or networks, which may
  then be private) and ``url_allow_private`` (default false: no loopback, private, link-local, multicast,
  reserved or unspecified address): checked for the URL and every redirect hop before connecting; the
  host name is resolved once, every address it resolves to is checked, and the connection goes to a
  checked address (no second lookup a DNS rebinding could answer differently).
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import os
import socket
import ssl
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings

DEFAULT_SIZE_CAP = 1099511627776          # glance-api.conf image_size_cap: 1 TiB
DEFAULT_SCHEMES = ("http", "https")       # [import_filtering_opts] allowed_schemes
DEFAULT_PORTS = (80, 443)                 # [import_filtering_opts] allowed_ports
DEFAULT_PORT = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
CHUNK = 1024 * 1024


# --- settings --------------------------------------------------------------------------------------------

def _setting_error(key, value, what):
    return InvalidRequest("the operator configuration %s: image.%s must be %s, got %r."
                          % (settings.config_path(), key, what, value))


def size_cap():
    """image.image_size_cap in bytes."""
    value = settings.get("image", "image_size_cap", DEFAULT_SIZE_CAP)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _setting_error("image_size_cap", value, "a positive number of bytes")
    return value


def _list_setting(key, default, kind):
    value = settings.get("image", key, default)
    if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, kind) for v in value):
        raise _setting_error(key, value, "a list of %s" % ("port numbers" if kind is int else "strings"))
    return list(value)


def url_rules():
    """(schemes, ports, hosts, allow_private) from the operator's configuration."""
    schemes = [s.lower() for s in _list_setting("url_allowed_schemes", DEFAULT_SCHEMES, str)]
    unknown = sorted(set(schemes) - set(DEFAULT_SCHEMES))
    if unknown:
        raise _setting_error("url_allowed_schemes", schemes, "a list of http and https (the only schemes downloaded)")
    ports = _list_setting("url_allowed_ports", DEFAULT_PORTS, int)
    hosts = _list_setting("url_allowed_hosts", [], str)
    allow_private = settings.get("image", "url_allow_private", False)
    if not isinstance(allow_private, bool):
        raise _setting_error("url_allow_private", allow_private, "true or false")
    return schemes, ports, hosts, allow_private


# --- filename ----------------------------------------------------------------------------------------------

def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def protected_paths(state_dir, db_url=None):
    """The real paths no upload may read: the state dirs (the task's and the environment's), the image store
    (BOOTFLOW_IMAGE_STORE, when outside them), the SQLite database file and the operator's configuration file."""
    paths = {os.path.realpath(_db.resolve_state_dir(state_dir)), os.path.realpath(_db.default_state_dir())}
    if _db.operator_image_store():
        paths.add(os.path.realpath(_db.operator_image_store()))
    url = _db.resolve_db_url(db_url, state_dir)
    if url.startswith("sqlite:///"):
        paths.add(os.path.realpath(url[len("sqlite:///"):]))
    paths.add(os.path.realpath(settings.config_path()))
    return paths


def _protected_inodes(paths):
    """(dev, ino) of every file under the protected paths but the image store's (a hard link of one of them
    elsewhere is the same file)."""
    out = set()
    store = _db.operator_image_store()
    for root in paths:
        if store and root == os.path.realpath(store):
            continue                       # the image store elsewhere (BOOTFLOW_IMAGE_STORE): images are images
        if os.path.isfile(root):
            st = os.stat(root)
            out.add((st.st_dev, st.st_ino))
            continue
        for top, dirs, files in os.walk(root):
            if top == root and "images" in dirs:
                dirs.remove("images")      # the image store: the staging files are ours, the images are images
            for name in files:
                try:
                    st = os.lstat(os.path.join(top, name))
                except OSError:
                    continue
                out.add((st.st_dev, st.st_ino))
    return out


def check_filename(auth, filename, state_dir, db_url=None):
    """The real path of ``filename`` once the rules allow the caller to register it (AuthError otherwise,
    before anything is read); the upload then reads that path, not the one given."""
    real = os.path.realpath(filename)
    for path in sorted(protected_paths(state_dir, db_url)):
        if _inside(real, path):
            raise AuthError("filename %s is in bootflow's state (%s): its database, keys, passwords and image store are "
                            "never image data, for any user." % (filename, path))
    upload_dir = settings.get("image", "upload_dir")
    if "admin" not in auth.roles:
        if not upload_dir:
            raise AuthError("filename is for admins only: the operator has set no upload directory (image.upload_dir "
                            "in %s) for other users' image files; use url, or ask an admin." % settings.config_path())
        root = os.path.realpath(os.path.expanduser(upload_dir))
        if not _inside(real, root) or real == root:
            raise AuthError("filename %s is not in the upload directory %s (image.upload_dir, after following symlinks "
                            "and '..': %s): only an admin may register other files of the controller."
                            % (filename, upload_dir, real))
    try:
        st = os.stat(real)
    except OSError:
        return real   # validate_upload says it does not exist
    if (st.st_dev, st.st_ino) in _protected_inodes(protected_paths(state_dir, db_url)):
        raise AuthError("filename %s is a hard link of a file in bootflow's state: never image data." % filename)
    return real


# --- url ---------------------------------------------------------------------------------------------------

def shown(parts):
    """A URL for messages: no user:password@."""
    host = parts.hostname or ""
    if ":" in host:
        host = "[%s]" % host
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host += ":%d" % port
    return urlunsplit((parts.scheme, host, parts.path, parts.query, ""))


def _address_kind(ip):
    ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, "is_" + kind):
            return kind.replace("_", "-")
    if isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10"):
        return "shared (carrier-grade NAT)"
    return None


def _listed(host, addresses, allowed):
    for entry in allowed:
        if entry.lower() == host.lower():
            return True
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if addresses and all(ipaddress.ip_address(a) in net for a in addresses):
            return True
    return False


def check_url(url):
    """(parts, port, addresses) of a URL the operator's rules allow; InvalidRequest otherwise. The host is
    resolved here and every address it resolves to must be allowed; connect only to these."""
    schemes, ports, hosts, allow_private = url_rules()
    parts = urlsplit(url or "")
    if parts.scheme.lower() not in schemes or not parts.hostname:
        raise InvalidRequest("url must be an http:// or https:// URL with a host%s, got %r." % (
            "" if tuple(schemes) == DEFAULT_SCHEMES else " (the operator allows %s only)" % ", ".join(schemes),
            shown(parts)))
    try:
        port = parts.port or DEFAULT_PORT[parts.scheme.lower()]
    except ValueError:
        raise InvalidRequest("url %r has an invalid port." % shown(parts)) from None
    if port not in ports:
        raise InvalidRequest("url %s: port %d is not allowed (the operator allows %s: image.url_allowed_ports)."
                             % (shown(parts), port, ", ".join(map(str, ports)) or "none"))
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidRequest("Downloading the image from %s failed: cannot resolve %s: %s."
                             % (shown(parts), host, getattr(exc, "strerror", None) or exc)) from None
    addresses = list(dict.fromkeys(info[4][0].split("%")[0] for info in infos))
    listed = _listed(host, addresses, hosts)
    if hosts and not listed:
        raise InvalidRequest("url %s: host %s is not one the operator allows downloads from (image.url_allowed_hosts)."
                             % (shown(parts), host))
    if not allow_private and not listed:
        for address in addresses:
            kind = _address_kind(ipaddress.ip_address(address))
            if kind:
                raise InvalidRequest("url %s: host %s resolves to %s, a %s address; downloads from loopback, private "
                                     "and link-local addresses are refused unless the operator allows them "
                                     "(image.url_allow_private or image.url_allowed_hosts)."
                                     % (shown(parts), host, address, kind))
    return parts, port, addresses


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address checked beforehand (Host: is still the URL's host)."""

    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """The same over TLS: the certificate is checked for the URL's host name (SNI too)."""

    def __init__(self, host, port, address, timeout, context):
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _open(parts, port, addresses, timeout, validate_certs, authorization):
    host = "[%s]" % parts.hostname if ":" in parts.hostname else parts.hostname
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    headers = {"User-Agent": "bootflow.cloud image download", "Accept-Encoding": "identity"}
    if authorization:
        headers["Authorization"] = authorization
    last = None
    for address in addresses:
        if parts.scheme.lower() == "https":
            context = ssl.create_default_context()
            if not validate_certs:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            conn = _PinnedHTTPS(host, port, address, timeout, context)
        else:
            conn = _PinnedHTTP(host, port, address, timeout)
        try:
            conn.request("GET", path, headers=headers)
            return conn, conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            last = exc
            if isinstance(exc, (ssl.SSLError, http.client.HTTPException)):
                break
    raise last


def _basic_auth(parts):
    if parts.username is None:
        return None
    pair = "%s:%s" % (unquote(parts.username), unquote(parts.password or ""))
    return "Basic " + base64.b64encode(pair.encode()).decode()


def download(url, out, timeout, validate_certs, max_bytes, too_big):
    """Stream ``url`` into the binary file ``out``, every hop checked (``check_url``) before it is
    connected to; InvalidRequest on a refusal, an HTTP error or more than ``max_bytes`` bytes
    (``too_big(n)`` says why not; raised before reading when the Content-Length already says so)."""
    first = urlsplit(url or "")
    origin = (first.scheme, first.hostname, first.port)
    authorization = _basic_auth(first)
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        parts, port, addresses = check_url(current)
        where = shown(parts)
        try:
            conn, resp = _open(parts, port, addresses, timeout, validate_certs,
                               authorization if (parts.scheme, parts.hostname, parts.port) == origin else None)
        except (OSError, http.client.HTTPException) as exc:
            raise InvalidRequest("Downloading the image from %s failed: %s." % (where, exc)) from None
        try:
            if resp.status in (301, 302, 303, 307, 308):
                location = resp.getheader("Location")
                if not location:
                    raise InvalidRequest("Downloading the image from %s failed: HTTP %d without a Location."
                                         % (where, resp.status))
                current = urljoin(current, location)
                target = urlsplit(current)
                if target.scheme.lower() not in DEFAULT_SCHEMES:
                    raise InvalidRequest("Downloading the image from %s was redirected to a %s URL; only http(s) is "
                                         "followed." % (where, target.scheme or "relative"))
                continue
            if resp.status != 200:
                raise InvalidRequest("Downloading the image from %s failed: HTTP %d %s." % (where, resp.status, resp.reason))
            length = resp.getheader("Content-Length")
            length = int(length) if length and length.strip().isdigit() else None
            if length is not None and length > max_bytes:
                raise InvalidRequest(too_big(length))
            nbytes = 0
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                nbytes += len(block)
                if nbytes > max_bytes:
                    raise InvalidRequest(too_big(nbytes))
                out.write(block)
            if length is not None and nbytes != length:
                raise InvalidRequest("Downloading the image from %s failed: the server sent %d of the %d bytes it "
                                     "announced." % (where, nbytes, length))
            return nbytes
        except (OSError, http.client.HTTPException) as exc:
            raise InvalidRequest("Downloading the image from %s failed: %s." % (where, exc)) from None
        finally:
            conn.close()
    raise InvalidRequest("Downloading the image from %s failed: more than %d redirects." % (shown(first), MAX_REDIRECTS))
