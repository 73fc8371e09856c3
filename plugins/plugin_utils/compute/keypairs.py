# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nova's key pairs (``os-keypairs``): a user's SSH public keys, and the key nova-api copies into a
new instance (``key_name``), which the config drive hands to the guest.

PRIVATE to the collection: may change at any time. Controller side only.

Semantics (Nova's, with the differences said here):

* a key pair belongs to a **user**, not a project: the same user sees the same key pairs in every
  project. Its name is unique per user: 1-255 characters of ``[a-zA-Z0-9@._- ]`` (Nova's rule since
  microversion 2.92), no leading or trailing blank;
* import (a public key given): one OpenSSH public key line, ``<type> <base64> [comment]``, of type
  ``ssh-ed25519``, ``ssh-rsa`` (2048 bits or more) or ``ecdsa-sha2-nistp256/384/521``. The type inside
  the base64 blob must be the declared one. Anything else - options before the type, certificates, DSA,
  several lines, bad base64 - is refused (Nova's 400 ``InvalidKeypair``). Nova has only ``ssh`` and
  ``x509`` key pair types; ``x509`` is not supported here;
* generate (no public key): a new ed25519 key pair (Nova generated RSA keys until 2.92 removed
  generation); the private key is returned once, in OpenSSH format, and never stored;
* idempotence: importing the same key (the same key material, whatever the comment) under an existing
  name changes nothing; another key under that name is a Conflict, as Nova's 409 ``KeyPairExists``
  (Nova has no update: delete the key pair and import it again). Generating under an existing name
  returns the existing key pair without a private key;
* the fingerprint is Nova's (``nova.crypto.generate_fingerprint``: MD5 of the key blob, colon hex, as
  ``ssh-keygen -l -E md5`` prints it without ``MD5:``); the SHA-256 one (``SHA256:<base64>``, ssh-keygen's
  default) is given too;
* a user acts on its own key pairs (member, policy ``os_compute_api:os-keypairs:create`` / ``delete``;
  reader for ``show`` / ``index``); another user's, through ``user`` (Nova's ``user_id`` parameter), needs
  admin (``os_compute_api:os-keypairs:other_user``);
* deleted rows are gone (no soft delete, as in Nova's API database): an instance keeps the copy of the
  key nova-api took when it was created.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import traceback

try:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported when a key is parsed or generated
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import (
    BootflowError,
    Conflict,
    InvalidRequest,
    NotFound,
)
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import allowed, enforce

# the OpenSSH key types accepted, and for ECDSA the curve each one names in its blob
KEY_TYPES = ("ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
_ECDSA_POINT_BYTES = {"nistp256": 65, "nistp384": 97, "nistp521": 133}   # uncompressed points: 04 || X || Y
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 16384          # OpenSSH's own limit
MAX_LINE = 8192               # a 16384-bit RSA key with a long comment fits
KEYPAIR_TYPE = "ssh"          # Nova's key pair type (the other, x509, is not supported)
GENERATED_COMMENT = "Generated-by-bootflow"   # Nova's generated keys say Generated-by-Nova
_NAME_RE = re.compile(r"[A-Za-z0-9@._ -]{1,255}")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")   # every control character but the tab

POLICY = {"create": "os_compute_api:os-keypairs:create", "delete": "os_compute_api:os-keypairs:delete",
          "show": "os_compute_api:os-keypairs:show", "index": "os_compute_api:os-keypairs:index"}
OTHER_USER = "os_compute_api:os-keypairs:other_user"


class PublicKey:
    """One parsed OpenSSH public key: ``algorithm`` (ssh-ed25519 ...), the key ``blob``, ``comment``, ``bits``."""

    def __init__(self, algorithm, blob, comment, bits):
        self.algorithm = algorithm
        self.blob = blob
        self.comment = comment
        self.bits = bits

    @property
    def line(self):
        """The key as stored and injected: ``<type> <base64> [comment]`` (canonical base64, one space)."""
        out = "%s %s" % (self.algorithm, base64.b64encode(self.blob).decode("ascii"))
        return out + " " + self.comment if self.comment else out

    @property
    def fingerprint(self):
        return fingerprint_md5(self.blob)

    @property
    def fingerprint_sha256(self):
        return fingerprint_sha256(self.blob)


def fingerprint_md5(blob):
    """Nova's fingerprint: the MD5 of the key blob as colon-separated hex pairs."""
    raw = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(raw[i:i + 2] for i in range(0, len(raw), 2))


def fingerprint_sha256(blob):
    """OpenSSH's default fingerprint: ``SHA256:`` and the unpadded base64 of the blob's SHA-256."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")


def _fields(blob):
    """The SSH wire-format strings of a public key blob (RFC 4251: uint32 length, then the bytes)."""
    out, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ValueError("the key data ends inside a length field")
        (length,) = struct.unpack(">I", blob[pos:pos + 4])
        if pos + 4 + length > len(blob):
            raise ValueError("the key data ends inside a field (%d bytes announced, %d left)"
                             % (length, len(blob) - pos - 4))
        out.append(blob[pos + 4:pos + 4 + length])
        pos += 4 + length
    return out


def _mpint_bits(value):
    return int.from_bytes(value, "big").bit_length()


def parse_public_key(text):
    """Parse and check one OpenSSH public key line; returns a PublicKey. InvalidRequest says what is wrong."""
    if not isinstance(text, str):
        raise InvalidRequest("Invalid public key: it must be a string (one OpenSSH public key line), got %s."
                             % type(text).__name__)
    line = text.strip()
    if not line:
        raise InvalidRequest("Invalid public key: it is empty.")
    if "\n" in line or "\r" in line:
        raise InvalidRequest("Invalid public key: it has more than one line; give exactly one OpenSSH public key "
                             "(<type> <base64> [comment]).")
    if len(line) > MAX_LINE:
        raise InvalidRequest("Invalid public key: %d characters, at most %d are allowed." % (len(line), MAX_LINE))
    if _CONTROL.search(line):
        raise InvalidRequest("Invalid public key: control characters are not allowed.")
    parts = line.split(None, 2)
    declared = parts[0]
    if declared not in KEY_TYPES:
        raise InvalidRequest("Invalid public key: type %r is not supported; use one of %s (one line: <type> <base64> "
                             "[comment], without authorized_keys options)." % (declared[:64], ", ".join(KEY_TYPES)))
    if len(parts) < 2:
        raise InvalidRequest("Invalid public key: the base64 key data after %s is missing." % declared)
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest("Invalid public key: the key data is not valid base64 (%s)." % exc) from None
    comment = parts[2] if len(parts) > 2 else ""
    try:
        fields = _fields(blob)
    except ValueError as exc:
        raise InvalidRequest("Invalid public key: %s." % exc) from None
    embedded = fields[0].decode("ascii", "replace") if fields else ""
    if embedded != declared:
        raise InvalidRequest("Invalid public key: it says %s but its key data is of type %r."
                             % (declared, embedded[:64]))
    bits = _check_fields(declared, fields)
    _check_with_cryptography(declared, blob)
    return PublicKey(declared, blob, comment, bits)


def _check_fields(algorithm, fields):
    """The key's size in bits, after checking the blob has the fields its type needs."""
    if algorithm == "ssh-ed25519":
        if len(fields) != 2 or len(fields[1]) != 32:
            raise InvalidRequest("Invalid public key: an ssh-ed25519 key is one 32-byte value.")
        return 256
    if algorithm == "ssh-rsa":
        if len(fields) != 3:
            raise InvalidRequest("Invalid public key: an ssh-rsa key is an exponent and a modulus.")
        bits = _mpint_bits(fields[2])
        if bits < MIN_RSA_BITS:
            raise InvalidRequest("Invalid public key: the RSA key has %d bits; at least %d are required."
                                 % (bits, MIN_RSA_BITS))
        if bits > MAX_RSA_BITS:
            raise InvalidRequest("Invalid public key: the RSA key has %d bits; at most %d are allowed."
                                 % (bits, MAX_RSA_BITS))
        return bits
    curve = algorithm.rsplit("-", 1)[1]
    if len(fields) != 3:
        raise InvalidRequest("Invalid public key: an %s key is a curve name and a point." % algorithm)
    if fields[1] != curve.encode("ascii"):
        raise InvalidRequest("Invalid public key: it says %s but its key data names curve %r."
                             % (algorithm, fields[1].decode("ascii", "replace")[:64]))
    if len(fields[2]) != _ECDSA_POINT_BYTES[curve] or fields[2][:1] != b"\x04":
        raise InvalidRequest("Invalid public key: the %s point is not an uncompressed point of %d bytes."
                             % (curve, _ECDSA_POINT_BYTES[curve]))
    return {"nistp256": 256, "nistp384": 384, "nistp521": 521}[curve]


def _check_with_cryptography(algorithm, blob):
    """Load the key with ``cryptography`` as Nova does (``load_ssh_public_key``): the point is on its
    curve, the RSA numbers make a key."""
    if not HAS_CRYPTOGRAPHY:
        raise BootflowError("the cryptography package is required on the controller: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
    line = ("%s %s" % (algorithm, base64.b64encode(blob).decode("ascii"))).encode("ascii")
    try:
        serialization.load_ssh_public_key(line)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("Invalid public key: the %s key data does not make a valid key (%s)."
                             % (algorithm, exc)) from None


def generate():
    """A new ed25519 key pair: (PublicKey, private key in OpenSSH format)."""
    if not HAS_CRYPTOGRAPHY:
        raise BootflowError("the cryptography package is required on the controller: %s" % CRYPTOGRAPHY_IMPORT_ERROR)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode("ascii")
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode("ascii")
    return parse_public_key("%s %s" % (public, GENERATED_COMMENT)), pem


def validate_keypair_name(name):
    """Nova's key pair name rule (microversion 2.92): 1-255 of ``[a-zA-Z0-9@._- ]``; no leading or trailing blank."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidRequest("Invalid key pair name %r: 1 to 255 characters, only letters, digits and @ . _ - and "
                             "blanks (as Nova since microversion 2.92)." % (name,))
    if name != name.strip():
        raise InvalidRequest("Invalid key pair name %r: leading or trailing blanks are not allowed." % (name,))


# --- the records -------------------------------------------------------------------------------------

def _row(conn, user_id, name):
    keys = _db.table("key_pairs")
    return conn.execute(keys.select().where(keys.c.user_id == user_id, keys.c.name == name)).first()


def keypair_dict(row):
    """A key pair as the module returns it (never a private key): the record, the SHA-256 fingerprint,
    the key's algorithm and size."""
    out = _db.row_dict(row)
    key = parse_public_key(row.public_key)
    out.update(fingerprint_sha256=key.fingerprint_sha256, algorithm=key.algorithm, bits=key.bits)
    return out


def _preview(name, user_id, project_id, key):
    """What a key pair about to be created will look like (check mode): no id, no creation time yet."""
    return {"id": None, "name": name, "user_id": user_id, "project_id": project_id, "type": KEYPAIR_TYPE,
            "public_key": key.line if key else None, "fingerprint": key.fingerprint if key else None,
            "fingerprint_sha256": key.fingerprint_sha256 if key else None,
            "algorithm": key.algorithm if key else "ssh-ed25519", "bits": key.bits if key else 256, "created_at": None}


def owner(conn, auth, user=None, local_identity=True):
    """The ID of the user whose key pairs a call works on: the caller's own, or ``user``'s (Nova's ``user_id``
    parameter), which needs admin unless it names the caller. With the local identity ``user`` is a user ID or
    a name (Default domain), with Keystone a user ID, taken as given (as Nova does)."""
    if user is None or user == auth.user_id:
        return auth.user_id
    if not allowed(auth, OTHER_USER):
        if user == auth.user_name:
            return auth.user_id
        enforce(auth, OTHER_USER)   # raises: a member never learns whether another user exists
    if not local_identity:
        return auth.user_id if user == auth.user_name else user
    row = _identity.find_user(conn, user)
    if row is None:
        raise NotFound("User %s could not be found." % user)
    return row.id


def _not_found(name, user_id):
    # Nova's KeypairNotFound
    return NotFound("Keypair %s not found for user %s" % (name, user_id))


def lock_name(user_id):
    """What every create or delete of one user's key pairs locks (``_db.lock``): one at a time per user."""
    return "key_pairs:%s" % user_id


# --- nova-api: os-keypairs create / show / index / delete -----------------------------------------------

def ensure(db, auth, name, public_key, state, check_mode, user=None, local_identity=True):
    """Import, generate or delete a key pair. Returns (changed, before, after, private_key): before/after are
    key pair dicts or None; private_key is the OpenSSH private key of a key pair generated now, else None."""
    if state not in ("present", "absent"):
        raise InvalidRequest("state must be present or absent, got %r." % (state,))
    if state == "absent":
        changed, before = delete(db, auth, name, check_mode, user=user, local_identity=local_identity)
        return changed, before, None, None
    enforce(auth, POLICY["create"])
    validate_keypair_name(name)
    key = parse_public_key(public_key) if public_key is not None else None
    keys = _db.table("key_pairs")
    with db.tx() as conn:
        user_id = owner(conn, auth, user, local_identity)
        # the name check holds until commit (SQLite: BEGIN IMMEDIATE serialises already)
        _db.lock(conn, lock_name(user_id))
        row = _row(conn, user_id, name)
        if row is not None:
            existing = keypair_dict(row)
            if key is not None and parse_public_key(row.public_key).blob != key.blob:
                raise Conflict("Key pair '%s' already exists for user %s with another key (fingerprint %s, the key "
                               "given has %s); a key pair cannot be changed (as in Nova): delete it and import the "
                               "new key, or pick another name." % (name, user_id, row.fingerprint, key.fingerprint))
            return False, existing, existing, None
        # the key pair is the caller's project's only for information; another user's gets no project
        project_id = auth.project_id if user_id == auth.user_id else None
        if check_mode:
            return True, None, _preview(name, user_id, project_id, key), None
        private_key = None
        if key is None:
            key, private_key = generate()
        conn.execute(keys.insert().values(name=name, user_id=user_id, project_id=project_id, type=KEYPAIR_TYPE,
                                          public_key=key.line, fingerprint=key.fingerprint, created_at=_db.now()))
        return True, None, keypair_dict(_row(conn, user_id, name)), private_key


def get(db, auth, name, user=None, local_identity=True):
    """One key pair (os-keypairs show); NotFound when the user has none of that name."""
    enforce(auth, POLICY["show"])
    with db.tx() as conn:
        user_id = owner(conn, auth, user, local_identity)
        row = _row(conn, user_id, name)
        if row is None:
            raise _not_found(name, user_id)
        return keypair_dict(row)


def list_keypairs(db, auth, user=None, local_identity=True):
    """The user's key pairs, by name (os-keypairs index)."""
    enforce(auth, POLICY["index"])
    keys = _db.table("key_pairs")
    with db.tx() as conn:
        user_id = owner(conn, auth, user, local_identity)
        return [keypair_dict(r) for r in conn.execute(keys.select().where(keys.c.user_id == user_id)
                                                      .order_by(keys.c.name))]


def delete(db, auth, name, check_mode, user=None, local_identity=True):
    """Delete a key pair (os-keypairs delete): (changed, the key pair before or None). A key pair that does
    not exist is no change. Instances booted with it keep their copy of the key."""
    enforce(auth, POLICY["delete"])
    keys = _db.table("key_pairs")
    with db.tx() as conn:
        user_id = owner(conn, auth, user, local_identity)
        _db.lock(conn, lock_name(user_id))
        row = _row(conn, user_id, name)
        if row is None:
            return False, None
        before = keypair_dict(row)
        if not check_mode:
            conn.execute(keys.delete().where(keys.c.id == row.id))
        return True, before


# --- nova-api's create: key_name -----------------------------------------------------------------------

def public_key_for(conn, auth, key_name):
    """The public key line of the caller's key pair ``key_name``, for an instance being created (inside its
    transaction). Nova looks the key up for the calling user only (``KeyPair.get_by_name(context.user_id)``):
    another user's key pair, also for an admin, is as unknown as a missing one."""
    row = _row(conn, auth.user_id, key_name)
    if row is None:
        raise NotFound("Invalid key_name provided: key pair %r could not be found for user %s (a key pair belongs to "
                       "the user who created it; import it with bootflow.cloud.keypair)."
                       % (key_name, auth.user_name or auth.user_id))
    return row.public_key
