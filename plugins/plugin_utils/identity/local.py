# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Embedded identity (Keystone's role in the flow, seed steps 1-2 and every validation).

PRIVATE to the collection: may change at any time. Controller side only.

Tokens are Fernet tokens (AES-CBC + HMAC, from ``cryptography``) over a msgpack payload with the
UUIDs packed as bytes (Keystone's trick to stay under 255 characters);
nothing is stored per token: validating is decrypt + expiry check, as with Keystone's Fernet
provider. The key repository follows Keystone's layout: file ``0`` is the staged key, the highest
number is the primary (encrypts), the others only decrypt.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import secrets
import time
import traceback
import uuid

try:
    import msgpack
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DEFAULT_TOKEN_TTL, ROLES
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)

TOKEN_VERSION = 1
UNAUTHENTICATED = "The request you have made requires authentication."

# scrypt parameters (RFC 7914 interactive-login strength); stored with each hash.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 14, 8, 1


def hash_password(password):
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
    encoded = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return "scrypt$%d$%d$%d$%s$%s" % ((_SCRYPT_N, _SCRYPT_R, _SCRYPT_P) + encoded)


def verify_password(password, stored):
    try:
        algo, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "scrypt":
        return False
    got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    return hmac.compare_digest(got, base64.b64decode(digest))


class KeyRepository:
    """Keystone-style Fernet key repository (created 0700/0600 on first use)."""

    def __init__(self, path):
        self.path = path

    def _key_files(self):
        if not os.path.isdir(self.path):
            return {}
        keys = {}
        for name in os.listdir(self.path):
            if name.isdigit():
                with open(os.path.join(self.path, name), "rb") as f:
                    keys[int(name)] = f.read().strip()
        return keys

    def _write_key(self, index):
        tmp = os.path.join(self.path, ".%d.tmp" % index)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(Fernet.generate_key())
        os.rename(tmp, os.path.join(self.path, str(index)))

    def ensure(self):
        """Create the repository with a staged key 0 and a primary key 1 when empty."""
        if not HAS_CRYPTOGRAPHY:
            raise AuthError("the cryptography package is required on the controller: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        keys = self._key_files()
        if 0 not in keys:
            self._write_key(0)
        if not [k for k in keys if k > 0]:
            self._write_key(1)

    def rotate(self, max_active_keys=3):
        """Keystone's rotation: staged 0 becomes the new primary, a new staged 0 is made, and the
        oldest secondaries beyond ``max_active_keys`` (staged + primary + secondaries) are removed.
        Tokens made with a key stay valid as long as that key is in the repository."""
        if max_active_keys < 2:
            raise InvalidRequest("max_active_keys must be at least 2 (a staged and a primary key), got %d." % max_active_keys)
        self.ensure()
        keys = sorted(self._key_files())
        new_primary = keys[-1] + 1
        os.rename(os.path.join(self.path, "0"), os.path.join(self.path, str(new_primary)))
        self._write_key(0)
        active = sorted(self._key_files())
        removed = []
        while len(active) > max_active_keys:
            oldest = next(i for i in active if i != 0)
            os.unlink(os.path.join(self.path, str(oldest)))
            active.remove(oldest)
            removed.append(oldest)
        return {"primary": new_primary, "keys": active, "removed": removed}

    def state(self):
        keys = sorted(self._key_files())
        return {"primary": keys[-1] if keys else None, "keys": keys}

    def fernet(self):
        self.ensure()
        keys = self._key_files()
        # primary (highest index) first: MultiFernet encrypts with the first key
        ordered = [keys[i] for i in sorted(keys, reverse=True)]
        return MultiFernet([Fernet(k) for k in ordered])


@dataclasses.dataclass(frozen=True)
class AuthContext:
    """What a validated token says about the caller."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: tuple
    expires_at: float
    audit_id: str
    # the local backend's domains (the keystone backend leaves them None)
    user_domain_id: str = None
    project_domain_id: str = None

    def as_dict(self):
        out = {
            "user_id": self.user_id, "user": self.user_name, "project_id": self.project_id,
            "project": self.project_name, "roles": list(self.roles),
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at)),
            "audit_id": self.audit_id,
        }
        if self.user_domain_id is not None:
            out.update(user_domain_id=self.user_domain_id, project_domain_id=self.project_domain_id)
        return out


def key_repository(state_dir):
    return KeyRepository(os.path.join(_db.resolve_state_dir(state_dir), "fernet-keys"))


def issue_token(db, keys, username, password, project=None, ttl=DEFAULT_TOKEN_TTL, user_domain=None, project_domain=None):
    """Authenticate with a password and return (token, AuthContext) scoped to a project.

    The user name is looked up in ``user_domain``, the project name in ``project_domain`` (names
    or IDs, both ``Default`` when None, as Keystone's clients do); both domains must be enabled."""
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    with db.tx() as conn:
        udom = find_domain(conn, user_domain or _db.DEFAULT_DOMAIN_NAME)
        if udom is None or not udom.enabled:
            raise AuthError(UNAUTHENTICATED + " (unknown or disabled domain %r)" % (user_domain or _db.DEFAULT_DOMAIN_NAME,))
        user = conn.execute(users.select().where(users.c.name == username, users.c.domain_id == udom.id)).first()
        if user is None or not user.enabled or not verify_password(password or "", user.password_hash):
            raise AuthError(UNAUTHENTICATED + " (wrong user name or password)")
        if project:
            pdom = find_domain(conn, project_domain or _db.DEFAULT_DOMAIN_NAME)
            if pdom is None or not pdom.enabled:
                raise AuthError(UNAUTHENTICATED + " (unknown or disabled domain %r)"
                                % (project_domain or _db.DEFAULT_DOMAIN_NAME,))
            proj = conn.execute(projects.select().where(projects.c.name == project, projects.c.domain_id == pdom.id)).first()
        else:
            proj = conn.execute(projects.select().where(projects.c.id == user.default_project_id)).first()
            pdom = find_domain(conn, proj.domain_id) if proj is not None else None
            if pdom is not None and not pdom.enabled:
                raise AuthError(UNAUTHENTICATED + " (the default project's domain %s is disabled)" % pdom.name)
        if proj is None or not proj.enabled:
            raise AuthError(UNAUTHENTICATED + " (unknown or disabled project %r)" % (project,))
        roles = tuple(sorted(r.role for r in conn.execute(
            assignments.select().where(assignments.c.user_id == user.id, assignments.c.project_id == proj.id))))
    if not roles:
        raise AuthError("User %s has no role on project %s." % (username, proj.name))
    audit = uuid.uuid4()
    ctx = AuthContext(user.id, user.name, proj.id, proj.name, roles, round(time.time() + ttl, 3), audit.hex,
                      user.domain_id, proj.domain_id)
    payload = msgpack.packb([TOKEN_VERSION, uuid.UUID(user.id).bytes, uuid.UUID(proj.id).bytes, list(roles),
                             ctx.expires_at, audit.bytes])
    token = keys.fernet().encrypt(payload).decode().rstrip("=")
    return token, ctx


def validate_token(keys, token, now=None):
    """Return the AuthContext of a valid token or raise AuthError saying why it is refused."""
    if not token:
        raise AuthError(UNAUTHENTICATED + " (no auth_token given: issue one with bootflow.cloud.token)")
    padded = token + "=" * (-len(token) % 4)
    try:
        raw = keys.fernet().decrypt(padded.encode())
        version, user_id, project_id, roles, expires_at, audit = msgpack.unpackb(raw)
        if version != TOKEN_VERSION:
            raise ValueError("unsupported token version %r" % (version,))
        user_id, project_id, audit = str(uuid.UUID(bytes=user_id)), str(uuid.UUID(bytes=project_id)), audit.hex()
    except (InvalidToken, ValueError, TypeError) as exc:
        raise AuthError(UNAUTHENTICATED + " (the token is not valid: malformed, tampered with or signed by an unknown key)") from exc
    if (now or time.time()) >= expires_at:
        raise AuthError(UNAUTHENTICATED + " (the token expired at %s)" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)))
    # names are not in the token (size); messages fall back to the IDs
    return AuthContext(user_id, None, project_id, None, tuple(roles), expires_at, audit)


def authenticate(db, keys, token, now=None):
    """Validate a token like Keystone does: crypto + expiry, then the DB: not revoked, user and
    project still exist and are enabled, and the roles the user has *now* on the project."""
    ctx = validate_token(keys, token, now)
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    revoked = _db.table("revocation_events")
    with db.tx() as conn:
        if conn.execute(revoked.select().where(revoked.c.audit_id == ctx.audit_id)).first() is not None:
            raise AuthError(UNAUTHENTICATED + " (the token has been revoked)")
        user = conn.execute(users.select().where(users.c.id == ctx.user_id)).first()
        proj = conn.execute(projects.select().where(projects.c.id == ctx.project_id)).first()
        if user is None or not user.enabled:
            raise AuthError(UNAUTHENTICATED + " (the token's user is disabled or gone)")
        if proj is None or not proj.enabled:
            raise AuthError(UNAUTHENTICATED + " (the token's project is disabled or gone)")
        domains = _db.table("domains")
        enabled = {d.id: d.enabled for d in conn.execute(
            domains.select().where(domains.c.id.in_([user.domain_id, proj.domain_id])))}
        if not enabled.get(user.domain_id):
            raise AuthError(UNAUTHENTICATED + " (the token's user's domain is disabled or gone)")
        if not enabled.get(proj.domain_id):
            raise AuthError(UNAUTHENTICATED + " (the token's project's domain is disabled or gone)")
        roles = tuple(sorted(r.role for r in conn.execute(assignments.select().where(
            assignments.c.user_id == user.id, assignments.c.project_id == proj.id))))
    if not roles:
        raise AuthError(UNAUTHENTICATED + " (user %s no longer has a role on project %s)" % (user.name, proj.name))
    return AuthContext(user.id, user.name, proj.id, proj.name, roles, ctx.expires_at, ctx.audit_id,
                       user.domain_id, proj.domain_id)


def revoke(db, ctx):
    """Revoke a token by its audit id (Keystone's revocation event). Returns changed."""
    revoked = _db.table("revocation_events")
    with db.tx() as conn:
        if conn.execute(revoked.select().where(revoked.c.audit_id == ctx.audit_id)).first() is not None:
            return False
        expires = _db.datetime.datetime.fromtimestamp(ctx.expires_at, _db.datetime.timezone.utc).replace(tzinfo=None)
        conn.execute(revoked.insert().values(audit_id=ctx.audit_id, revoked_at=_db.now(), expires_at=expires))
        # expired tokens fail anyway: drop their events so the table stays small
        conn.execute(revoked.delete().where(revoked.c.expires_at < _db.now()))
    return True


def bootstrap(db, username, password, project, role="admin", check_mode=False):
    """Idempotent ``keystone-manage bootstrap``: project, user (password reset if it differs),
    role assignment. Returns changed."""
    if role not in ROLES:
        raise InvalidRequest("role must be one of %s" % ", ".join(ROLES))
    if not password:
        raise InvalidRequest("a password is required to bootstrap user %s" % username)
    changed, _project = ensure_project(db, project, None, True, "present", check_mode)
    if changed and check_mode:
        return True  # the rest depends on a project check mode did not create
    user_changed, _user = ensure_user(db, username, password, project, True, "always", "present", check_mode)
    if user_changed and check_mode:
        return True
    return ensure_role_assignment(db, username, project, role, "present", check_mode) or changed or user_changed


def admin_password_path(state_dir):
    return os.path.join(_db.resolve_state_dir(state_dir), "admin-password")


def read_or_create_admin_password(state_dir, create=True):
    """The embedded default's admin password: ``<state_dir>/admin-password`` (0600), generated once."""
    path = admin_password_path(state_dir)
    if os.path.exists(path):
        with open(path) as f:
            return f.read().strip()
    if not create:
        return None
    password = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    return password


# --- identity administration (keystone's projects, users, role assignments) ----------------------

def find_domain(conn, ref):
    """A domain by ID or name (``default`` and ``Default`` both name Keystone's default domain)."""
    domains = _db.table("domains")
    return conn.execute(domains.select().where(_db.sa.or_(domains.c.id == ref, domains.c.name == ref))
                        .order_by((domains.c.id == ref).desc())).first()


def _domain_id(conn, domain):
    """The ID of the domain named (or with the ID) ``domain``, Default when None; NotFound otherwise."""
    row = find_domain(conn, domain or _db.DEFAULT_DOMAIN_NAME)
    if row is None:
        raise NotFound("Domain %s could not be found." % domain)
    return row.id


def _find_in_domain(conn, table, ref, domain):
    """A project or user by ID, or by name within ``domain`` (Default when None)."""
    by_id = conn.execute(table.select().where(table.c.id == ref)).first()
    if by_id is not None:
        return by_id
    return conn.execute(table.select().where(table.c.name == ref, table.c.domain_id == _domain_id(conn, domain))).first()


def find_project(conn, ref, domain=None):
    """A project by ID, or by name within ``domain`` (name or ID; Default when None)."""
    return _find_in_domain(conn, _db.table("projects"), ref, domain)


def find_user(conn, ref, domain=None):
    """A user by ID, or by name within ``domain`` (name or ID; Default when None)."""
    return _find_in_domain(conn, _db.table("users"), ref, domain)


def _public(row, *hidden):
    return {k: v for k, v in _db.row_dict(row).items() if k not in hidden} if row is not None else None


def ensure_project(db, name, description, enabled, state, check_mode, domain=None):
    """A project, named uniquely within ``domain`` (Default when None)."""
    validate_name("project", name)
    projects = _db.table("projects")
    with db.tx() as conn:
        if state == "absent" and find_domain(conn, domain or _db.DEFAULT_DOMAIN_NAME) is None:
            return False, None
        domain_id = _domain_id(conn, domain)
        row = find_project(conn, name, domain_id)
        if state == "absent":
            if row is None:
                return False, None
            live = _db.live_instances(conn, project_id=row.id)
            if live:
                raise Conflict("Project %s still has %d instance(s); delete them first." % (name, live))
            vols = _db.count(conn, "volumes", _db.table("volumes").c.project_id == row.id, _db.table("volumes").c.status != "deleted")
            if vols:
                raise Conflict("Project %s still has %d volume(s); delete them first." % (name, vols))
            if not check_mode:
                conn.execute(_db.table("users").update().where(_db.table("users").c.default_project_id == row.id)
                             .values(default_project_id=None))
                conn.execute(_db.table("role_assignments").delete().where(_db.table("role_assignments").c.project_id == row.id))
                conn.execute(_db.table("quotas").delete().where(_db.table("quotas").c.project_id == row.id))
                conn.execute(projects.delete().where(projects.c.id == row.id))
            return True, None
        want = {k: v for k, v in (("description", description), ("enabled", enabled)) if v is not None}
        if row is None:
            want.setdefault("enabled", True)
            if not check_mode:
                conn.execute(projects.insert().values(id=_db.new_id(), name=name, created_at=_db.now(),
                                                      domain_id=domain_id, **want))
            return True, (_public(find_project(conn, name, domain_id)) if not check_mode
                          else dict(want, name=name, domain_id=domain_id))
        if {k: getattr(row, k) for k in want} == want:
            return False, _public(row)
        if not check_mode:
            conn.execute(projects.update().where(projects.c.id == row.id).values(**want))
        return True, _public(find_project(conn, row.id))


def ensure_user(db, name, password, default_project, enabled, update_password, state, check_mode, domain=None):
    """Users with scrypt-hashed passwords; the hash never leaves this module. Names are unique within
    ``domain`` (Default when None); ``default_project`` is a project ID or a name in that domain."""
    validate_name("user", name)
    users = _db.table("users")
    with db.tx() as conn:
        if state == "absent" and find_domain(conn, domain or _db.DEFAULT_DOMAIN_NAME) is None:
            return False, None
        domain_id = _domain_id(conn, domain)
        row = find_user(conn, name, domain_id)
        if state == "absent":
            if row is None:
                return False, None
            if not check_mode:
                conn.execute(_db.table("role_assignments").delete().where(_db.table("role_assignments").c.user_id == row.id))
                conn.execute(users.delete().where(users.c.id == row.id))
            return True, None
        proj = None
        if default_project:
            proj = find_project(conn, default_project, domain_id)
            if proj is None:
                raise NotFound("Project %s could not be found." % default_project)
        if row is None:
            if not password:
                raise InvalidRequest("password is required to create user %s." % name)
            if not check_mode:
                conn.execute(users.insert().values(id=_db.new_id(), name=name, password_hash=hash_password(password),
                                                   default_project_id=proj.id if proj else None,
                                                   enabled=True if enabled is None else enabled,
                                                   created_at=_db.now(), domain_id=domain_id))
            return True, (_public(find_user(conn, name, domain_id), "password_hash") if not check_mode
                          else {"name": name, "domain_id": domain_id})
        values = {}
        if enabled is not None and row.enabled != enabled:
            values["enabled"] = enabled
        if proj is not None and row.default_project_id != proj.id:
            values["default_project_id"] = proj.id
        if password and update_password == "always" and not verify_password(password, row.password_hash):
            values["password_hash"] = hash_password(password)
        if not values:
            return False, _public(row, "password_hash")
        if not check_mode:
            conn.execute(users.update().where(users.c.id == row.id).values(**values))
        return True, _public(find_user(conn, row.id), "password_hash")


def ensure_role_assignment(db, user, project, role, state, check_mode, user_domain=None, project_domain=None):
    """A role of a user (ID, or name in ``user_domain``) on a project (ID, or name in ``project_domain``)."""
    if role not in ROLES:
        raise InvalidRequest("role must be one of %s, got %r." % (", ".join(ROLES), role))
    assignments = _db.table("role_assignments")
    with db.tx() as conn:
        urow, prow = find_user(conn, user, user_domain), find_project(conn, project, project_domain)
        if urow is None:
            raise NotFound("User %s could not be found." % user)
        if prow is None:
            raise NotFound("Project %s could not be found." % project)
        key = (assignments.c.user_id == urow.id, assignments.c.project_id == prow.id, assignments.c.role == role)
        have = conn.execute(assignments.select().where(*key)).first() is not None
        if (state == "present") == have:
            return False
        if not check_mode:
            if state == "present":
                conn.execute(assignments.insert().values(user_id=urow.id, project_id=prow.id, role=role))
            else:
                conn.execute(assignments.delete().where(*key))
        return True


def ensure_domain(db, name, description, enabled, state, check_mode):
    """Keystone domains. The default domain can be neither disabled nor deleted (the admin is in it);
    as in Keystone, a domain must be disabled before it is deleted, and it must be empty."""
    validate_name("domain", name)
    domains = _db.table("domains")
    with db.tx() as conn:
        row = find_domain(conn, name)
        is_default = row is not None and row.id == _db.DEFAULT_DOMAIN_ID
        if state == "absent":
            if row is None:
                return False, None
            if is_default:
                raise InvalidRequest("The default domain (%s) cannot be deleted." % row.name)
            if row.enabled:
                raise Conflict("Domain %s is enabled; disable it first (enabled: false), as Keystone requires." % row.name)
            used = {t: _db.count(conn, t, _db.table(t).c.domain_id == row.id) for t in ("projects", "users")}
            if any(used.values()):
                raise Conflict("Domain %s still has %d project(s) and %d user(s); delete them first."
                               % (row.name, used["projects"], used["users"]))
            if not check_mode:
                conn.execute(domains.delete().where(domains.c.id == row.id))
            return True, None
        want = {k: v for k, v in (("description", description), ("enabled", enabled)) if v is not None}
        if is_default and want.get("enabled") is False:
            raise InvalidRequest("The default domain (%s) cannot be disabled." % row.name)
        if row is None:
            want.setdefault("enabled", True)
            if not check_mode:
                conn.execute(domains.insert().values(id=uuid.uuid4().hex, name=name, created_at=_db.now(), **want))
            return True, _public(find_domain(conn, name)) if not check_mode else dict(want, name=name)
        if {k: getattr(row, k) for k in want} == want:
            return False, _public(row)
        if not check_mode:
            conn.execute(domains.update().where(domains.c.id == row.id).values(**want))
            return True, _public(find_domain(conn, row.id))
        return True, _public(row)
