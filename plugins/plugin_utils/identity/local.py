# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Embedded identity (Keystone's role in the flow, seed steps 1-2 and every validation).

PRIVATE to the collection: may change at any time. Controller side only.

Tokens are Fernet tokens (AES-CBC + HMAC, from ``cryptography``) over a msgpack payload with the
UUIDs packed as bytes (Keystone's trick to stay under 255 characters);
nothing is stored per token: validating is decrypt + expiry check, as with Keystone's Fernet
provider. The key repository follows Keystone's layout: file ``0`` is the staged key, the highest
number is the primary (encrypts), the others only decrypt. Validation only reads the repository
(under a shared ``flock`` of its ``.lock`` file); creation and rotation hold the exclusive lock and
write each key with mkstemp + rename (0600).

Revocation is Keystone's ``revocation_event`` table: an event names an audit ID, a user and/or a
project and an ``issued_before`` time; a token all of whose named fields match and that was issued
at or before that time is revoked. A password change, a disabled or deleted user and a removed role
assignment write such an event (as Keystone's identity and assignment managers do). The token
carries its issue time in microseconds, taken inside the same serialised DB transaction that read
the password, so the comparison is exact. No token lives longer than the operator's
``identity.max_token_expiration``: older ones are refused whatever their expiry says, which is also
why events older than that are pruned safely.

Passwords are hashed with scrypt (``scrypt$N$r$p$salt$digest``: each hash carries its parameters);
a login with a hash of weaker parameters rehashes it. Every login attempt runs scrypt exactly once,
against a dummy hash when the user is unknown or disabled, so the time taken does not tell them apart.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import hmac
import mmap
import os
import secrets
import tempfile
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

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import ROLES
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils import settings
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import validate_name
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
)

# version 2: [2, user, project, roles, expires_at, audit, issued_at_us]; version 1 had no issue time
TOKEN_VERSION = 2
UNAUTHENTICATED = "The request you have made requires authentication."

# Keystone's keystone.conf [token] expiration (1 hour) and the operator's cap on any token's lifetime (1 day)
DEFAULT_TOKEN_EXPIRATION = 3600
DEFAULT_MAX_TOKEN_EXPIRATION = 86400

# scrypt parameters (OWASP's password storage minimum: N=2^17, r=8, p=1); stored with each hash, and a
# login with a hash of other parameters rehashes it with these.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2 ** 17, 8, 1
# the most a stored hash may ask for (N up to 2^20, r up to 16): a hash beyond it is refused, not computed
_SCRYPT_MAX_MEM = 128 * 16 * (2 ** 20 + 2) + 2 ** 20


def _scrypt(password, salt, n, r, p):
    """The one scrypt computation (every hash and every login attempt goes through here)."""
    # hashlib.scrypt refuses to use more than maxmem bytes (default 32 MiB): N=2^17, r=8 needs 128 MiB
    need = 128 * r * (n + p + 2) + 2 ** 20
    if need > _SCRYPT_MAX_MEM:
        raise ValueError("scrypt parameters too large")
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=need)


def _encode(n, r, p, salt, digest):
    return "scrypt$%d$%d$%d$%s$%s" % (n, r, p, base64.b64encode(salt).decode(), base64.b64encode(digest).decode())


def hash_password(password):
    salt = secrets.token_bytes(16)
    return _encode(_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, salt, _scrypt(password, salt, _SCRYPT_N, _SCRYPT_R, _SCRYPT_P))


# What a login of an unknown or disabled user is verified against: the current parameters, a random
# salt and digest (no password hashes to it; making it costs no scrypt run).
_DUMMY_HASH = _encode(_SCRYPT_N, _SCRYPT_R, _SCRYPT_P, secrets.token_bytes(16), secrets.token_bytes(32))


def _parse_hash(stored):
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return None
        return int(n), int(r), int(p), base64.b64decode(salt), base64.b64decode(digest)
    except (ValueError, AttributeError, TypeError):
        return None


def verify_password(password, stored):
    """True when ``password`` matches ``stored``. Runs scrypt exactly once, also for a stored hash that
    cannot be used (unparsable, or parameters beyond the limit: then against the dummy hash), so that every
    refusal costs about the same."""
    parsed = _parse_hash(stored)
    if parsed is None or 128 * parsed[1] * (parsed[0] + parsed[2] + 2) + 2 ** 20 > _SCRYPT_MAX_MEM:
        n, r, p, salt, _digest = _parse_hash(_DUMMY_HASH)
        _scrypt(password, salt, n, r, p)
        return False
    n, r, p, salt, digest = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


def needs_rehash(stored):
    """True when ``stored`` was made with other scrypt parameters than today's."""
    parsed = _parse_hash(stored)
    return parsed is None or parsed[:3] != (_SCRYPT_N, _SCRYPT_R, _SCRYPT_P)


def max_token_expiration():
    """The operator's cap on a token's lifetime in seconds (identity.max_token_expiration, 1 day by default)."""
    return _positive_setting("max_token_expiration", DEFAULT_MAX_TOKEN_EXPIRATION)


def token_expiration():
    """The operator's default token lifetime (identity.token_expiration, 1 hour), never above the cap."""
    ttl, cap = _positive_setting("token_expiration", DEFAULT_TOKEN_EXPIRATION), max_token_expiration()
    if ttl > cap:
        raise InvalidRequest("the operator configuration %s: identity.token_expiration (%d) exceeds "
                             "identity.max_token_expiration (%d)." % (settings.config_path(), ttl, cap))
    return ttl


def _positive_setting(key, default):
    value = settings.get("identity", key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("the operator configuration %s: identity.%s must be a positive number of seconds, got %r."
                             % (settings.config_path(), key, value))
    return value


def _now_us():
    """Now, in integer microseconds since the epoch (the token's issue time and revocation times)."""
    return time.time_ns() // 1000


def _us_to_dt(us):
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)


def _dt_to_us(dt):
    delta = dt - datetime.datetime(1970, 1, 1)
    return (delta.days * 86400 + delta.seconds) * 10 ** 6 + delta.microseconds


class _Keys:
    """What every Fernet key repository does with its keys (Keystone's layout: index 0 is the staged key, the
    highest the primary that encrypts, the others only decrypt). Subclasses keep the keys: ``_read()``,
    ``ensure()``, ``rotate()``."""

    @staticmethod
    def _require_crypto():
        if not HAS_CRYPTOGRAPHY:
            raise AuthError("the cryptography package is required on the controller: %s" % CRYPTOGRAPHY_IMPORT_ERROR)

    @staticmethod
    def _check_max(max_active_keys):
        if max_active_keys < 2:
            raise InvalidRequest("max_active_keys must be at least 2 (a staged and a primary key), got %d." % max_active_keys)

    def _read(self):
        raise NotImplementedError

    def ensure(self):
        raise NotImplementedError

    def state(self):
        keys = sorted(self._read())
        return {"primary": keys[-1] if keys else None, "keys": keys}

    @staticmethod
    def _multi(keys):
        # primary (highest index) first: MultiFernet encrypts with the first key
        return MultiFernet([Fernet(keys[i]) for i in sorted(keys, reverse=True)])

    def fernet(self):
        """For issuing: creates the repository when missing."""
        self.ensure()
        return self._multi(self._read())

    def fernet_readonly(self):
        """For validating: reads the keys there are, creates and changes nothing; None without keys."""
        self._require_crypto()
        keys = self._read()
        return self._multi(keys) if keys else None


class KeyRepository(_Keys):
    """Keystone-style Fernet key repository in a directory (created 0700/0600 on first use).

    Readers (validation) never write: they take a shared ``flock`` on ``.lock`` when it exists and
    tolerate a key vanishing between ``listdir`` and ``open``. Writers (creation, rotation) hold the
    exclusive lock and write each key to a mkstemp file (0600) renamed into place."""

    LOCK = ".lock"
    where = "files"

    def __init__(self, path):
        self.path = path

    @contextlib.contextmanager
    def _lock(self, exclusive):
        """The repository's lock: exclusive for writers (creates the directory and the lock file), shared
        for readers (only when the lock file exists: a reader creates nothing)."""
        lock_path = os.path.join(self.path, self.LOCK)
        if exclusive:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        else:
            try:
                fd = os.open(lock_path, os.O_RDONLY)
            except FileNotFoundError:
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _key_files(self):
        """{index: key} of the keys present now; a key removed between listdir and open is skipped."""
        try:
            names = os.listdir(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return {}
        keys = {}
        for name in names:
            if name.isdigit():
                try:
                    with open(os.path.join(self.path, name), "rb") as f:
                        keys[int(name)] = f.read().strip()
                except FileNotFoundError:
                    continue
        return keys

    def _read(self):
        with self._lock(exclusive=False):
            return self._key_files()

    def _write_key(self, index):
        fd, tmp = tempfile.mkstemp(prefix=".key-", dir=self.path)  # 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, os.path.join(self.path, str(index)))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _ensure_locked(self):
        keys = self._key_files()
        if 0 not in keys:
            self._write_key(0)
        if not [k for k in keys if k > 0]:
            self._write_key(1)

    def ensure(self):
        """Create the repository with a staged key 0 and a primary key 1 when empty (writers only)."""
        self._require_crypto()
        keys = self._read()
        if 0 in keys and [k for k in keys if k > 0]:
            return
        with self._lock(exclusive=True):
            self._ensure_locked()

    def rotate(self, max_active_keys=3):
        """Keystone's rotation: staged 0 becomes the new primary, a new staged 0 is made, and the
        oldest secondaries beyond ``max_active_keys`` (staged + primary + secondaries) are removed.
        Tokens made with a key stay valid as long as that key is in the repository."""
        self._check_max(max_active_keys)
        self._require_crypto()
        with self._lock(exclusive=True):
            self._ensure_locked()
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


# the operator's secret that unlocks the key repository kept in the database (an AWX credential injects it)
KEY_SECRET_ENV = "BOOTFLOW_KEY_SECRET"
KEY_SECRET_MIN_LENGTH = 32
# scrypt for the key that wraps the Fernet keys: derived once per run (about 0.1 s here, see _shared_memory), and
# the secret is long and random, so a lower cost than the passwords' is enough
_WRAP_N, _WRAP_R, _WRAP_P = 2 ** 15, 8, 1
_WRAP_VERIFIER = b"bootflow.cloud fernet key repository"
_WRAP_LOCK = "fernet-keys"
_wrap_cache = {}


def _shared_memory():
    """An anonymous shared mapping (memory only, never a file) that the processes this one forks from now on
    share. Ansible imports the action plugins into its main process before it forks the task's worker, so the
    first worker that derives the wrapping key leaves it here for the following workers of the run."""
    try:
        return mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_SHARED)
    except (AttributeError, OSError, ValueError):  # pragma: no cover - no shared mappings: every step derives
        return None


_wrap_shared = _shared_memory()


def _shared_wrap_key(ident, key=None):
    """The derived key kept in the shared mapping for ``ident`` (a digest of secret, kdf and salt), or None;
    with ``key``: keep that one. A digest over both guards against a torn write of another worker."""
    if key is not None:
        if _wrap_shared is not None:
            _wrap_shared[:96] = ident + key + hashlib.sha256(ident + key).digest()
        return key
    if _wrap_shared is None:
        return None
    data = _wrap_shared[:96]
    if data[:32] != ident or hashlib.sha256(data[:64]).digest() != data[64:96]:
        return None
    return data[32:64]


class DBKeyRepository(_Keys):
    """The Fernet key repository in the database (tables ``fernet_keys`` and ``fernet_key_wrap``, revision
    0009), each key encrypted with a key derived by scrypt from the operator's secret and the stored salt.

    The same semantics as the directory: index 0 staged, the highest primary. Readers run one SELECT (a
    consistent snapshot); writers (creation, rotation) run in one transaction that first takes the
    repository's lock (``db.lock``: an advisory lock on PostgreSQL, BEGIN IMMEDIATE on SQLite), so a
    rotation is all or nothing and two jobs never both create keys. A secret that does not unlock the
    stored keys is refused (AuthError), never answered with new keys. ``import_from``: a directory
    repository whose keys the database takes when it has none yet (moving a controller's state dir)."""

    where = "database"

    def __init__(self, db, secret, import_from=None):
        if len(secret) < KEY_SECRET_MIN_LENGTH:
            raise AuthError("%s is too short (%d characters): it must be at least %d random characters, for example "
                            "the output of 'openssl rand -base64 32'." % (KEY_SECRET_ENV, len(secret),
                                                                          KEY_SECRET_MIN_LENGTH))
        self.db = db
        self._secret = secret
        self.import_from = import_from

    def _derive(self, kdf, salt):
        """The Fernet that wraps the keys: scrypt of the secret with ``kdf`` (``scrypt$N$r$p``) and ``salt``
        (base64), computed once per run: the processes Ansible forks share it (``_shared_memory``)."""
        try:
            algo, n, r, p = kdf.split("$")
            n, r, p = int(n), int(r), int(p)
            if algo != "scrypt" or 128 * r * (n + p + 2) + 2 ** 20 > _SCRYPT_MAX_MEM:
                raise ValueError(kdf)
            raw_salt = base64.b64decode(salt)
        except (ValueError, TypeError) as exc:
            raise AuthError("the key repository in the database has an unknown key derivation %r." % kdf) from exc
        cache_key = (hashlib.sha256(self._secret.encode()).digest(), kdf, salt)
        if cache_key not in _wrap_cache:
            ident = hashlib.sha256(b"\0".join((cache_key[0], kdf.encode(), salt.encode()))).digest()
            key = _shared_wrap_key(ident) or _shared_wrap_key(ident, _scrypt(self._secret, raw_salt, n, r, p))
            _wrap_cache.clear()
            _wrap_cache[cache_key] = Fernet(base64.urlsafe_b64encode(key))
        return _wrap_cache[cache_key]

    def _wrapper(self, row):
        """The wrapping Fernet of the stored row, once its verifier shows the secret is the right one."""
        wrapper = self._derive(row.kdf, row.salt)
        try:
            if wrapper.decrypt(row.verifier.encode()) != _WRAP_VERIFIER:
                raise InvalidToken
        except InvalidToken:
            raise AuthError("%s does not unlock the Fernet key repository in the database: it was created with "
                            "another secret. Set the secret it was created with (nothing was changed)." % KEY_SECRET_ENV
                            ) from None
        return wrapper

    def _new_wrap(self, conn):
        kdf, salt = "scrypt$%d$%d$%d" % (_WRAP_N, _WRAP_R, _WRAP_P), base64.b64encode(secrets.token_bytes(16)).decode()
        verifier = self._derive(kdf, salt).encrypt(_WRAP_VERIFIER).decode()
        wrap_t = _db.table("fernet_key_wrap")
        conn.execute(wrap_t.insert().values(id=1, kdf=kdf, salt=salt, verifier=verifier, created_at=_db.now()))

    def _keys_in(self, conn, for_update=False):
        """(wrapper or None, {index: key}) as stored; the wrapper is None when there is no repository yet."""
        wrap_t, keys_t = _db.table("fernet_key_wrap"), _db.table("fernet_keys")
        query = wrap_t.select().where(wrap_t.c.id == 1)
        row = conn.execute(query.with_for_update() if for_update else query).first()
        if row is None:
            return None, {}
        wrapper = self._wrapper(row)
        keys = {}
        for key in conn.execute(keys_t.select()):
            try:
                keys[key.key_index] = wrapper.decrypt(key.ciphertext.encode())
            except InvalidToken:
                raise AuthError("Fernet key %d in the database does not decrypt with %s, though the secret is right: "
                                "the row was changed outside bootflow." % (key.key_index, KEY_SECRET_ENV)) from None
        return wrapper, keys

    def _read(self):
        with self.db.tx() as conn:
            wrapper, keys = self._keys_in(conn)
        if wrapper is None and self.import_from is not None:
            return self.import_from._read()  # not moved yet: the state dir's keys still validate (read only)
        return keys

    def _insert(self, conn, wrapper, index, key=None):
        conn.execute(_db.table("fernet_keys").insert().values(
            key_index=index, ciphertext=wrapper.encrypt(key or Fernet.generate_key()).decode(), created_at=_db.now()))

    def _ensure_locked(self, conn):
        """The wrapper and the keys, with a staged and a primary key (made, or taken from ``import_from``)."""
        _db.lock(conn, _WRAP_LOCK)
        wrapper, keys = self._keys_in(conn, for_update=True)
        if wrapper is None:
            self._new_wrap(conn)
            wrapper, keys = self._keys_in(conn)
            imported = self.import_from._read() if self.import_from is not None else {}
            if 0 in imported and [k for k in imported if k > 0]:
                for index, key in imported.items():
                    self._insert(conn, wrapper, index, key)
                return wrapper, imported
        if 0 not in keys:
            self._insert(conn, wrapper, 0)
        if not [k for k in keys if k > 0]:
            self._insert(conn, wrapper, 1)
        return wrapper, self._keys_in(conn)[1]

    def ensure(self):
        """Create the repository (staged key 0, primary key 1, or the keys of ``import_from``) when empty."""
        self._require_crypto()
        with self.db.tx() as conn:
            wrapper, keys = self._keys_in(conn)
        if wrapper is not None and 0 in keys and [k for k in keys if k > 0]:
            return
        with self.db.tx() as conn:
            self._ensure_locked(conn)

    def rotate(self, max_active_keys=3):
        self._check_max(max_active_keys)
        self._require_crypto()
        keys_t = _db.table("fernet_keys")
        with self.db.tx() as conn:
            wrapper, keys = self._ensure_locked(conn)
            indexes = sorted(keys)
            new_primary = indexes[-1] + 1
            conn.execute(keys_t.update().where(keys_t.c.key_index == 0).values(key_index=new_primary))
            self._insert(conn, wrapper, 0)
            active = sorted(indexes[1:] + [0, new_primary])
            removed = []
            while len(active) > max_active_keys:
                oldest = next(i for i in active if i != 0)
                conn.execute(keys_t.delete().where(keys_t.c.key_index == oldest))
                active.remove(oldest)
                removed.append(oldest)
        return {"primary": new_primary, "keys": active, "removed": removed}


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
    # the local backend's issue time, integer microseconds since the epoch (in the token's payload)
    issued_at_us: int = None

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


def key_repository(state_dir, db=None):
    """The operator's Fernet key repository: in the database ``db`` (encrypted) when E(BOOTFLOW_KEY_SECRET) is
    set, else the directory ``<state_dir>/fernet-keys``. Without the secret, a database that holds the
    repository is refused (AuthError) rather than answered with the state dir's keys."""
    files = KeyRepository(os.path.join(_db.resolve_state_dir(state_dir), "fernet-keys"))
    secret = os.environ.get(KEY_SECRET_ENV)
    if not secret:
        if db is not None:
            with db.tx() as conn:
                if conn.execute(_db.table("fernet_key_wrap").select()).first() is not None:
                    raise AuthError("the Fernet key repository is in the database (encrypted), but %s is not set on the "
                                    "controller: set it (for AWX, in the bootflow.cloud credential)." % KEY_SECRET_ENV)
        return files
    if db is None:
        raise InvalidRequest("%s is set: the key repository is in the database, and this caller gave none."
                             % KEY_SECRET_ENV)
    return DBKeyRepository(db, secret, import_from=files)


def issue_token(db, keys, username, password, project=None, ttl=None, user_domain=None, project_domain=None,
                check=None):
    """Authenticate with a password and return (token, AuthContext) scoped to a project.

    The user name is looked up in ``user_domain``, the project name in ``project_domain`` (names
    or IDs, both ``Default`` when None, as Keystone's clients do); both domains must be enabled.
    ``ttl``: seconds, the operator's identity.token_expiration when None, never above
    identity.max_token_expiration. Unknown user, disabled user or domain and wrong password all run
    scrypt once (against a dummy hash when there is no usable user) and get the same message. A
    successful login with a hash of older scrypt parameters rehashes the password. ``check(ctx)``
    may refuse the token (raise) before anything is written or encrypted."""
    cap = max_token_expiration()
    ttl = token_expiration() if ttl is None else ttl
    if ttl < 1:
        raise InvalidRequest("ttl must be a positive number of seconds, got %d." % ttl)
    if ttl > cap:
        raise InvalidRequest("ttl must be at most %d seconds (identity.max_token_expiration of the operator "
                             "configuration), got %d." % (cap, ttl))
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    refused = UNAUTHENTICATED + " (wrong user name or password)"
    with db.tx() as conn:
        udom = find_domain(conn, user_domain or _db.DEFAULT_DOMAIN_NAME)
        user = None
        if udom is not None:
            user = conn.execute(users.select().where(users.c.name == username, users.c.domain_id == udom.id)).first()
        usable = user is not None and user.enabled and udom.enabled
        # exactly one scrypt run whatever the case: the login time tells nothing about the user
        verified = verify_password(password or "", user.password_hash if usable else _DUMMY_HASH)
        if udom is None or not udom.enabled:
            raise AuthError(UNAUTHENTICATED + " (unknown or disabled domain %r)" % (user_domain or _db.DEFAULT_DOMAIN_NAME,))
        if not (usable and verified):
            raise AuthError(refused)
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
        # the issue time is taken inside the transaction that read the password (BEGIN IMMEDIATE on SQLite
        # serialises it with a password change), so "issued at or before the change" is exact
        issued_us = _now_us()
        audit = uuid.uuid4()
        ctx = AuthContext(user.id, user.name, proj.id, proj.name, roles, round(issued_us / 1e6 + ttl, 3), audit.hex,
                          user.domain_id, proj.domain_id, issued_us)
        if check is not None:
            check(ctx)
        if needs_rehash(user.password_hash):
            conn.execute(users.update().where(users.c.id == user.id).values(password_hash=hash_password(password)))
    payload = msgpack.packb([TOKEN_VERSION, uuid.UUID(user.id).bytes, uuid.UUID(proj.id).bytes, list(roles),
                             ctx.expires_at, audit.bytes, issued_us])
    token = keys.fernet().encrypt(payload).decode().rstrip("=")
    return token, ctx


def validate_token(keys, token, now=None, max_lifetime=None):
    """Return the AuthContext of a valid token or raise AuthError saying why it is refused. Reads the key
    repository only. A token older than ``max_lifetime`` (the operator's identity.max_token_expiration when
    None) is refused whatever its expiry says."""
    if not token:
        raise AuthError(UNAUTHENTICATED + " (no auth_token given: issue one with bootflow.cloud.token)")
    padded = token + "=" * (-len(token) % 4)
    fernet = keys.fernet_readonly()
    try:
        if fernet is None:
            raise ValueError("no Fernet keys")
        raw = fernet.decrypt(padded.encode())
        fields = msgpack.unpackb(raw)
        if not isinstance(fields, list) or not fields or fields[0] != TOKEN_VERSION:
            raise ValueError("unsupported token version")
        _version, user_id, project_id, roles, expires_at, audit, issued_us = fields
        user_id, project_id, audit = str(uuid.UUID(bytes=user_id)), str(uuid.UUID(bytes=project_id)), audit.hex()
        issued_us = int(issued_us)
    except (InvalidToken, ValueError, TypeError) as exc:
        raise AuthError(UNAUTHENTICATED + " (the token is not valid: malformed, tampered with, signed by an unknown key "
                        "or issued by an older version: issue a new one)") from exc
    now = time.time() if now is None else now
    if now >= expires_at:
        raise AuthError(UNAUTHENTICATED + " (the token expired at %s)" % time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at)))
    cap = max_token_expiration() if max_lifetime is None else max_lifetime
    if now - issued_us / 1e6 >= cap:
        raise AuthError(UNAUTHENTICATED + " (the token is older than the maximum token lifetime, %d seconds)" % cap)
    # names are not in the token (size); messages fall back to the IDs
    return AuthContext(user_id, None, project_id, None, tuple(roles), expires_at, audit, issued_at_us=issued_us)


def _revoked(conn, ctx):
    """The revocation event that revokes ``ctx``'s token, if any (Keystone's matching: every field the event
    names matches the token, and the token was issued at or before ``issued_before``)."""
    ev = _db.table("revocation_event")
    sa = _db.sa
    return conn.execute(ev.select().where(
        sa.or_(ev.c.audit_id.is_(None), ev.c.audit_id == ctx.audit_id),
        sa.or_(ev.c.user_id.is_(None), ev.c.user_id == ctx.user_id),
        sa.or_(ev.c.project_id.is_(None), ev.c.project_id == ctx.project_id),
        ev.c.issued_before >= _us_to_dt(ctx.issued_at_us)).limit(1)).first()


def revoke_event(conn, user_id=None, project_id=None, audit_id=None, expires_at=None):
    """Write a revocation event (in the caller's transaction): the tokens of ``user_id`` / on ``project_id`` /
    with ``audit_id`` (those named) issued up to now are revoked. Events older than the maximum token
    lifetime are pruned: every token they could match is refused by its age anyway."""
    now_us = _now_us()
    ev = _db.table("revocation_event")
    conn.execute(ev.insert().values(audit_id=audit_id, user_id=user_id, project_id=project_id,
                                    issued_before=_us_to_dt(now_us), revoked_at=_us_to_dt(now_us), expires_at=expires_at))
    conn.execute(ev.delete().where(ev.c.issued_before < _us_to_dt(now_us - max_token_expiration() * 10 ** 6)))


def authenticate(db, keys, token, now=None):
    """Validate a token like Keystone does: crypto, expiry and age, then the DB: not revoked (by its audit
    ID, its user or its user on its project), user and project still exist and are enabled, and the roles
    the user has *now* on the project."""
    ctx = validate_token(keys, token, now)
    users, projects, assignments = _db.table("users"), _db.table("projects"), _db.table("role_assignments")
    with db.tx() as conn:
        if _revoked(conn, ctx) is not None:
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
                       user.domain_id, proj.domain_id, ctx.issued_at_us)


def revoke(db, ctx):
    """Revoke a token by its audit id (Keystone's revocation event). Returns changed."""
    ev = _db.table("revocation_event")
    with db.tx() as conn:
        if conn.execute(ev.select().where(ev.c.audit_id == ctx.audit_id)).first() is not None:
            return False
        expires = _db.datetime.datetime.fromtimestamp(ctx.expires_at, _db.datetime.timezone.utc).replace(tzinfo=None)
        revoke_event(conn, audit_id=ctx.audit_id, expires_at=expires)
    return True


def bootstrap_plan(db, username, password, project, role="admin"):
    """What ``bootstrap`` would change, without changing anything: (identity_exists, [change, ...]), each
    change a phrase such as ``reset the password of user admin``. ``identity_exists``: the DB has a user."""
    if role not in ROLES:
        raise InvalidRequest("role must be one of %s" % ", ".join(ROLES))
    if not password:
        raise InvalidRequest("a password is required to bootstrap user %s" % username)
    validate_name("project", project)
    validate_name("user", username)
    assignments = _db.table("role_assignments")
    with db.tx() as conn:
        exists = _db.count(conn, "users") > 0
        prow, urow = find_project(conn, project), find_user(conn, username)
        changes = []
        if prow is None:
            changes.append("create project %s" % project)
        if urow is None:
            changes.append("create user %s" % username)
        elif not verify_password(password, urow.password_hash):
            changes.append("reset the password of user %s" % username)
        if prow is None or urow is None or conn.execute(assignments.select().where(
                assignments.c.user_id == urow.id, assignments.c.project_id == prow.id,
                assignments.c.role == role)).first() is None:
            changes.append("assign role %s to user %s on project %s" % (role, username, project))
    return exists, changes


def bootstrap(db, username, password, project, role="admin", check_mode=False, may_change=False):
    """``keystone-manage bootstrap``: project, user, role assignment. Returns changed.

    On a fresh identity (no user in the DB) it creates them. Once the identity exists it changes nothing
    unless ``may_change`` (the caller presented an admin's token): a run that would create a user, reset a
    password or assign a role is refused (AuthError) before anything is written; a run that changes
    nothing is fine (idempotent). With ``may_change`` an existing user's password is reset (and its tokens
    revoked) like ``keystone-manage bootstrap`` does."""
    exists, changes = bootstrap_plan(db, username, password, project, role)
    if exists and changes and not may_change:
        raise AuthError("The identity is already bootstrapped: without an admin's auth_token, identity_bootstrap "
                        "only checks it and changes nothing, but this run would %s. Pass an admin's auth_token "
                        "to change users, passwords or roles (or use bootflow.cloud.user and "
                        "bootflow.cloud.role_assignment)." % "; ".join(changes))
    if not changes:
        return False
    if check_mode:
        return True
    creating = "create user %s" % username in changes
    ensure_project(db, project, None, True, "present", False)
    # an existing user keeps its default project and enabled flag; only its password is reset
    ensure_user(db, username, password, project if creating else None, True if creating else None, "always",
                "present", False)
    ensure_role_assignment(db, username, project, role, "present", False)
    return True


# the embedded identity's admin password from the operator's environment (an AWX credential injects it); it
# takes the place of <state_dir>/admin-password, which an AWX job would lose
ADMIN_PASSWORD_ENV = "BOOTFLOW_ADMIN_PASSWORD"


def operator_admin_password(state_dir):
    """The admin's password the operator set: E(BOOTFLOW_ADMIN_PASSWORD), else ``<state_dir>/admin-password``
    (written by bootstrap), else None."""
    return os.environ.get(ADMIN_PASSWORD_ENV) or read_or_create_admin_password(state_dir, create=False)


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
    write_admin_password(state_dir, password)
    return password


def write_admin_password(state_dir, password):
    """Write a new ``<state_dir>/admin-password`` (0600); FileExistsError when there is one already."""
    fd = os.open(admin_password_path(state_dir), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")


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
    ``domain`` (Default when None); ``default_project`` is a project ID or a name in that domain.
    A password change, disabling and deleting revoke the user's tokens (a revocation event)."""
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
                revoke_event(conn, user_id=row.id)
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
            if "password_hash" in values or values.get("enabled") is False:
                # Keystone revokes a user's tokens when its password changes or it is disabled
                revoke_event(conn, user_id=row.id)
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
                # as Keystone's assignment manager: the user's tokens on the project are revoked
                revoke_event(conn, user_id=urow.id, project_id=prow.id)
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
