# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``keystone`` identity backend: tokens issued, validated and revoked by a real Keystone v3.

PRIVATE to the collection: may change at any time. Controller side only.

``auth_backend=keystone`` (or E(BOOTFLOW_AUTH_BACKEND)=keystone) replaces the embedded identity:

- issue: password authentication (``POST /v3/auth/tokens``) through keystoneauth1, scoped to a
  project (user and project domains default to ``Default``);
- validate: ``GET /v3/auth/tokens`` with the token as both X-Auth-Token and X-Subject-Token
  (Keystone lets a token validate itself), giving Keystone's user/project ids and names and the
  token's role names (implied roles included) as an ``AuthContext``;
- revoke: ``DELETE /v3/auth/tokens`` the same way.

Validations are cached in ``<state_dir>/keystone-tokens/<sha256(token)>`` (directory 0700, files
0600, no token inside) for ``CACHE_TTL`` seconds and never past the token's expiry, so one boot
(~20 steps, each in its own worker process) asks Keystone only a few times. Like keystonemiddleware's
token cache, a token revoked elsewhere, or a role removed in Keystone, is seen here within that TTL;
a revocation through this module is seen at once (the entry is dropped).

The local database keeps holding instances, ports, volumes...: their ``project_id``/``user_id``
are then Keystone's ids, and the policy table and project scoping work on them unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - ansible-core depends on PyYAML
    HAS_YAML = False

from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings
from ansible_collections.bootflow.cloud.plugins.plugin_utils.lazy_import import LazyModule
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.local import UNAUTHENTICATED, AuthContext

# keystoneauth1 is imported when a Keystone is first used (plugin_utils/lazy_import.py)
ks_access = LazyModule("keystoneauth1.access")
ks_exc = LazyModule("keystoneauth1.exceptions")
ks_session = LazyModule("keystoneauth1.session")
ks_v3 = LazyModule("keystoneauth1.identity.v3")

BACKENDS = ("local", "keystone")
DEFAULT_BACKEND = "local"
DEFAULT_DOMAIN = "Default"
CACHE_TTL = 30          # seconds a validation is reused (never past the token's expiry)
TIMEOUT = 10            # seconds per request to Keystone
CACHE_DIR = "keystone-tokens"


def resolve_backend(value=None):
    """``auth_backend`` option, else E(BOOTFLOW_AUTH_BACKEND), else ``local``."""
    return settings.backend("auth_backend", value, "BOOTFLOW_AUTH_BACKEND", BACKENDS, DEFAULT_BACKEND)


# --- clouds.yaml -----------------------------------------------------------------------------------

def _config_dirs():
    return (os.getcwd(), os.path.expanduser("~/.config/openstack"), "/etc/openstack")


def _first_file(env, names):
    if os.environ.get(env):
        return os.environ[env]
    for d in _config_dirs():
        for name in names:
            path = os.path.join(d, name)
            if os.path.isfile(path):
                return path
    return None


def _merge(base, over):
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_cloud(name):
    """The ``clouds.<name>`` entry of clouds.yaml (merged with secure.yaml), found like the
    OpenStack clients do: E(OS_CLIENT_CONFIG_FILE), else ./, ~/.config/openstack/, /etc/openstack/."""
    if not HAS_YAML:  # pragma: no cover
        raise InvalidRequest("reading clouds.yaml needs PyYAML on the controller.")
    path = _first_file("OS_CLIENT_CONFIG_FILE", ("clouds.yaml", "clouds.yml"))
    if path is None:
        raise InvalidRequest("cloud %r: no clouds.yaml found (looked at OS_CLIENT_CONFIG_FILE, ./, "
                             "~/.config/openstack/, /etc/openstack/)." % name)
    try:
        with open(path) as f:
            clouds = (yaml.safe_load(f) or {}).get("clouds") or {}
        secure_path = _first_file("OS_CLIENT_SECURE_FILE", ("secure.yaml", "secure.yml"))
        if secure_path:
            with open(secure_path) as f:
                secure = (yaml.safe_load(f) or {}).get("clouds") or {}
            clouds = {k: _merge(v, secure.get(k)) for k, v in clouds.items()}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise InvalidRequest("cannot read %s: %s" % (path, exc)) from exc
    if name not in clouds:
        raise InvalidRequest("cloud %r is not in %s (clouds: %s)." % (name, path, ", ".join(sorted(clouds)) or "none"))
    cloud = clouds[name] or {}
    auth = dict(cloud.get("auth") or {})
    if cloud.get("auth_type") not in (None, "password", "v3password"):
        raise InvalidRequest("cloud %r uses auth_type %r; only password authentication is supported." % (name, cloud["auth_type"]))
    for key in ("cacert", "verify"):
        if key in cloud:
            auth["_" + key] = cloud[key]
    return auth


# --- the backend ---------------------------------------------------------------------------------

def normalize_auth_url(url):
    """Keystone's v3 URL: ``http://host:5000`` and ``http://host:5000/v3/`` both give ``.../v3``."""
    url = url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest("auth_url must be an http:// or https:// URL of Keystone, got %r." % url)
    return url if url.endswith("/v3") else url + "/v3"


def environment_cloud():
    """(the OS_CLOUD cloud's settings or {}, Keystone's URL from the environment or None). With both OS_AUTH_URL
    and OS_CLOUD set, the cloud's credentials are still used; its auth_url must then be OS_AUTH_URL (or
    missing), else InvalidRequest names the conflict rather than sending the cloud's password elsewhere."""
    name, env_url = os.environ.get("OS_CLOUD"), os.environ.get("OS_AUTH_URL")
    cloud = load_cloud(name) if name else {}
    cloud_url = cloud.get("auth_url")
    if env_url and cloud_url and normalize_auth_url(env_url) != normalize_auth_url(cloud_url):
        raise InvalidRequest("OS_AUTH_URL (%s) and the auth_url of the OS_CLOUD cloud %r (%s) differ: unset one of "
                             "them, or make them the same Keystone." % (env_url, name, cloud_url))
    url = env_url or cloud_url
    return cloud, normalize_auth_url(url) if url else None


def operator_auth_url():
    """The operator's Keystone: OS_AUTH_URL, else the auth_url of the OS_CLOUD cloud (normalized), else None."""
    return environment_cloud()[1]


def _iso(ts):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class Keystone:
    """A Keystone v3 endpoint plus this controller's validation cache."""

    def __init__(self, auth_url=None, state_dir=None, cloud=None, cache_ttl=CACHE_TTL, timeout=TIMEOUT):
        missing = ks_session.import_error()
        if missing:
            raise AuthError("auth_backend=keystone needs the keystoneauth1 Python package on the controller "
                            "(pip install keystoneauth1): %s" % missing)
        # auth_url option > the cloud option's auth_url > OS_AUTH_URL / the OS_CLOUD cloud's auth_url; the
        # credentials come from the cloud option's cloud, else from the OS_CLOUD cloud (also beside OS_AUTH_URL)
        if cloud:
            self.cloud = load_cloud(cloud)
            url = auth_url or self.cloud.get("auth_url") or os.environ.get("OS_AUTH_URL")
        else:
            self.cloud, env_url = environment_cloud()
            url = auth_url or env_url
        if not url:
            raise InvalidRequest("auth_backend=keystone needs Keystone's URL: set auth_url (for every step, e.g. with "
                                 "module_defaults), or OS_AUTH_URL or OS_CLOUD on the controller.")
        self.auth_url = normalize_auth_url(url)
        verify = self.cloud.get("_cacert") or os.environ.get("OS_CACERT") or True
        if self.cloud.get("_verify") is False:
            verify = False
        self.session = ks_session.Session(timeout=timeout, verify=verify, app_name="bootflow.cloud")
        self.cache_dir = os.path.join(_db.resolve_state_dir(state_dir), CACHE_DIR)
        self.cache_ttl = cache_ttl
        self.requests = 0  # HTTP requests this object sent to Keystone

    # --- HTTP ------------------------------------------------------------------------------------

    def _refused(self, what):
        return AuthError(UNAUTHENTICATED + " (Keystone at %s refused %s)" % (self.auth_url, what))

    def _http(self, call, refused):
        """Run one request; Keystone's and the network's failures become AuthError."""
        self.requests += 1
        try:
            return call()
        except ks_exc.Unauthorized as exc:
            raise self._refused(refused) from exc
        except ks_exc.NotFound as exc:
            # a token validating itself is 401 when bad: a 404 means there is no Keystone API there
            raise AuthError("no Keystone identity v3 API at %s (404 Not Found): check auth_url" % self.auth_url) from exc
        except ks_exc.Forbidden as exc:
            raise AuthError("Keystone at %s forbids this: %s" % (self.auth_url, _detail(exc))) from exc
        except ks_exc.ConnectionError as exc:
            raise AuthError("cannot reach Keystone at %s (%s)" % (self.auth_url, _unreachable(exc))) from exc
        except ks_exc.HttpError as exc:
            raise AuthError("Keystone at %s answered %s: %s" % (self.auth_url, exc.http_status, _detail(exc))) from exc
        except ks_exc.ClientException as exc:
            raise AuthError("Keystone at %s: %s" % (self.auth_url, _detail(exc))) from exc

    def _token_request(self, method, token, refused):
        headers = {"X-Auth-Token": token, "X-Subject-Token": token}
        return self._http(lambda: self.session.request(self.auth_url + "/auth/tokens", method, headers=headers,
                                                       authenticated=False, connect_retries=0), refused)

    def _context(self, access, now=None):
        if not access.project_scoped or not access.project_id:
            raise AuthError(UNAUTHENTICATED + " (the token is not scoped to a project: give a project, or give the "
                            "user a default project in Keystone)")
        expires = access.expires.timestamp() if access.expires else 0
        if (now or time.time()) >= expires:
            raise AuthError(UNAUTHENTICATED + " (the token expired at %s)" % _iso(expires))
        roles = tuple(sorted(access.role_names or ()))
        if not roles:
            raise AuthError(UNAUTHENTICATED + " (user %s has no role on project %s in Keystone)"
                            % (access.username, access.project_name))
        return AuthContext(access.user_id, access.username, access.project_id, access.project_name, roles,
                           round(expires, 3), access.audit_id or "")

    # --- the cache -------------------------------------------------------------------------------

    def _cache_path(self, token):
        return os.path.join(self.cache_dir, hashlib.sha256(token.encode()).hexdigest())

    def _cache_get(self, token, now):
        path = self._cache_path(token)
        try:
            with open(path) as f:
                entry = json.load(f)
            ctx = AuthContext(**dict(entry["auth"], roles=tuple(entry["auth"]["roles"])))
            cached_at = float(entry["cached_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if entry.get("auth_url") != self.auth_url or not cached_at <= now < cached_at + self.cache_ttl:
            return None
        if now >= ctx.expires_at:
            self._cache_drop(token)
            raise AuthError(UNAUTHENTICATED + " (the token expired at %s)" % _iso(ctx.expires_at))
        return ctx

    def _cache_put(self, token, ctx, now):
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        path = self._cache_path(token)
        tmp = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"auth_url": self.auth_url, "cached_at": now, "auth": dict(vars(ctx), roles=list(ctx.roles))}, f)
        os.replace(tmp, path)
        # drop stale entries so the directory stays small (entries live CACHE_TTL seconds)
        for name in os.listdir(self.cache_dir):
            other = os.path.join(self.cache_dir, name)
            try:
                if os.stat(other).st_mtime < now - self.cache_ttl - 60:
                    os.unlink(other)
            except OSError:
                pass

    def _cache_drop(self, token):
        try:
            os.unlink(self._cache_path(token))
        except FileNotFoundError:
            pass

    # --- the three operations --------------------------------------------------------------------

    def credentials(self, username=None, password=None, project=None, user_domain=None, project_domain=None):
        """Password-auth arguments for keystoneauth1: each given option, else the clouds.yaml cloud's
        value, else the openrc variable (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_*_DOMAIN_NAME),
        else admin / none / the user's default project / Default."""
        cfg, env = self.cloud, os.environ
        creds = {"username": username or cfg.get("username") or env.get("OS_USERNAME") or "admin",
                 "password": password or cfg.get("password") or env.get("OS_PASSWORD")}
        if user_domain or not cfg.get("user_domain_id"):
            creds["user_domain_name"] = (user_domain or cfg.get("user_domain_name") or cfg.get("domain_name")
                                         or env.get("OS_USER_DOMAIN_NAME") or DEFAULT_DOMAIN)
        else:
            creds["user_domain_id"] = cfg["user_domain_id"]
        project = project or cfg.get("project_name") or env.get("OS_PROJECT_NAME")
        if project:
            creds["project_name"] = project
            if project_domain or not cfg.get("project_domain_id"):
                creds["project_domain_name"] = (project_domain or cfg.get("project_domain_name") or cfg.get("domain_name")
                                                or env.get("OS_PROJECT_DOMAIN_NAME") or DEFAULT_DOMAIN)
            else:
                creds["project_domain_id"] = cfg["project_domain_id"]
        elif cfg.get("project_id"):
            creds["project_id"] = cfg["project_id"]
        return creds

    def issue(self, username=None, password=None, project=None, user_domain=None, project_domain=None):
        """Password authentication scoped to a project (see ``credentials``); returns (token, AuthContext)."""
        creds = self.credentials(username, password, project, user_domain, project_domain)
        if not creds["password"]:
            raise AuthError(UNAUTHENTICATED + " (no password for user %s: give password, a clouds.yaml cloud with "
                            "one, or set OS_PASSWORD)" % creds["username"])
        plugin = ks_v3.Password(auth_url=self.auth_url, include_catalog=False, **creds)
        scope = creds.get("project_name") or creds.get("project_id")
        what = "the credentials: wrong user name or password%s" % (
            ", or user %s has no role on project %s" % (creds["username"], scope) if scope else "")
        access = self._http(lambda: plugin.get_access(self.session), what)
        now = time.time()
        ctx = self._context(access, now)
        self._cache_put(access.auth_token, ctx, now)
        return access.auth_token, ctx

    def validate(self, token, use_cache=True, now=None):
        """Return the AuthContext of a valid token, from the cache when it is fresh enough."""
        if not token:
            raise AuthError(UNAUTHENTICATED + " (no auth_token given: issue one with bootflow.cloud.token)")
        if any(ord(c) < 33 or ord(c) > 126 for c in token):
            raise AuthError(UNAUTHENTICATED + " (the token is not valid: it contains characters no Keystone token has)")
        now = now or time.time()
        if use_cache:
            ctx = self._cache_get(token, now)
            if ctx is not None:
                return ctx
        resp = self._token_request("GET", token, "the token: it is expired, revoked or not a valid token")
        try:
            access = ks_access.create(resp=resp, auth_token=token)
        except (ValueError, KeyError) as exc:
            raise AuthError("Keystone at %s sent an unexpected answer to a token validation: %s" % (self.auth_url, exc)) from exc
        ctx = self._context(access, now)
        self._cache_put(token, ctx, now)
        return ctx

    def find_project(self, token, ref, domain=None):
        """A project ({id, name, domain_id, ...}) by ID, else by name within ``domain`` (a name or ID; Default
        when None), asked with the caller's token: Keystone lets a member read its own project, an admin any.
        None when Keystone shows the caller no such project (404, or 403 for a member)."""
        headers = {"X-Auth-Token": token}

        def get(path, params=None):
            resp = self._http(lambda: self.session.get(self.auth_url + path, headers=headers, params=params,
                                                       authenticated=False, connect_retries=0, raise_exc=False),
                              "the token: it is expired, revoked or not a valid token")
            if resp.status_code == 401:
                raise self._refused("the token: it is expired, revoked or not a valid token")
            return resp.json() if resp.status_code == 200 else None

        found = get("/projects/%s" % urllib.parse.quote(ref, safe=""))
        if found:
            return found["project"]
        domain_id = _db.DEFAULT_DOMAIN_ID
        if domain and domain not in (_db.DEFAULT_DOMAIN_ID, _db.DEFAULT_DOMAIN_NAME):
            domains = (get("/domains", {"name": domain}) or {}).get("domains") or []
            domain_id = domains[0]["id"] if domains else domain
        projects = (get("/projects", {"name": ref, "domain_id": domain_id}) or {}).get("projects") or []
        return projects[0] if len(projects) == 1 else None

    def revoke(self, token):
        """Revoke the token in Keystone (``DELETE /v3/auth/tokens``); it is refused everywhere from then on."""
        self._cache_drop(token)
        self._token_request("DELETE", token, "the token: it is expired, already revoked or not a valid token")
        return True


_UNREACHABLE = (("Connection refused", "connection refused"), ("timed out", "timed out"),
                ("Name or service not known", "unknown host name"), ("No route to host", "no route to host"),
                ("Network is unreachable", "network unreachable"),
                ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted: set OS_CACERT"))


def _unreachable(exc):
    text = str(exc)
    for needle, why in _UNREACHABLE:
        if needle in text:
            return why
    return _detail(exc)


def _detail(exc):
    """The useful part of a keystoneauth1 exception (Keystone's error message, or the socket error)."""
    text = getattr(exc, "message", None) or str(exc)
    return " ".join(str(text).split())[:300]
