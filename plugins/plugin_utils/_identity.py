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

from ansible_collections.bootflow.cloud.plugins.plugin_utils import _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils._errors import AuthError, InvalidRequest

DEFAULT_TTL = 3600
TOKEN_VERSION = 1
ROLES = ("admin", "member", "reader")
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

    def as_dict(self):
        return {
            "user_id": self.user_id, "user": self.user_name, "project_id": self.project_id,
            "project": self.project_name, "roles": list(self.roles),
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expires_at)),
            "audit_id": self.audit_id,
        }


def key_repository(state_dir):
    return KeyRepository(os.path.join(_db.resolve_state_dir(state_dir), "fernet-keys"))


def issue_token(db, keys, username, password, project=None, ttl=DEFAULT_TTL):
    """Authenticate with a password and return (token, AuthContext) scoped to a project."""
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    with db.tx() as conn:
        user = conn.execute(users.select().where(users.c.name == username)).first()
        if user is None or not user.enabled or not verify_password(password or "", user.password_hash):
            raise AuthError(UNAUTHENTICATED + " (wrong user name or password)")
        if project:
            proj = conn.execute(projects.select().where(projects.c.name == project)).first()
        else:
            proj = conn.execute(projects.select().where(projects.c.id == user.default_project_id)).first()
        if proj is None:
            raise AuthError(UNAUTHENTICATED + " (unknown project %r)" % (project,))
        roles = tuple(sorted(r.role for r in conn.execute(
            assignments.select().where(assignments.c.user_id == user.id, assignments.c.project_id == proj.id))))
    if not roles:
        raise AuthError("User %s has no role on project %s." % (username, proj.name))
    audit = uuid.uuid4()
    ctx = AuthContext(user.id, user.name, proj.id, proj.name, roles, round(time.time() + ttl, 3), audit.hex)
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


def bootstrap(db, username, password, project, role="admin", check_mode=False):
    """Idempotent ``keystone-manage bootstrap``: project, user, role assignment. Returns changed."""
    if role not in ROLES:
        raise InvalidRequest("role must be one of %s" % ", ".join(ROLES))
    if not password:
        raise InvalidRequest("a password is required to bootstrap user %s" % username)
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    changed = False
    with db.tx() as conn:
        proj = conn.execute(projects.select().where(projects.c.name == project)).first()
        if proj is None:
            changed = True
            if check_mode:
                return True
            conn.execute(projects.insert().values(id=_db.new_id(), name=project, created_at=_db.now()))
            proj = conn.execute(projects.select().where(projects.c.name == project)).first()
        user = conn.execute(users.select().where(users.c.name == username)).first()
        if user is None:
            changed = True
            if check_mode:
                return True
            conn.execute(users.insert().values(id=_db.new_id(), name=username, password_hash=hash_password(password),
                                               default_project_id=proj.id, enabled=True, created_at=_db.now()))
            user = conn.execute(users.select().where(users.c.name == username)).first()
        elif not verify_password(password, user.password_hash):
            changed = True
            if check_mode:
                return True
            conn.execute(users.update().where(users.c.id == user.id).values(password_hash=hash_password(password)))
        have = conn.execute(assignments.select().where(
            assignments.c.user_id == user.id, assignments.c.project_id == proj.id, assignments.c.role == role)).first()
        if have is None:
            changed = True
            if not check_mode:
                conn.execute(assignments.insert().values(user_id=user.id, project_id=proj.id, role=role))
    return changed


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
