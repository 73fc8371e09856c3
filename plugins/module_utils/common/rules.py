# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Value rules that more than one step checks: resource names, MAC addresses, user data size, timeouts.

PRIVATE to the collection: may change at any time. Stdlib only: host modules import it too.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest

MAX_NAME = 255
# Unicode categories no name may hold: Cc (C0 and C1 controls: newline, tab, NUL, ESC, CSI \x9b, NEL \x85...),
# Cf (format: bidi overrides such as U+202E, zero-width space U+200B...), Cs (lone surrogates),
# Zl/Zp (U+2028/U+2029 line and paragraph separators)
FORBIDDEN_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")

# nova-api's limit counts user_data base64-encoded (as the API carries it): 65535 bytes of base64,
# i.e. at most 49149 bytes of user data
MAX_USER_DATA_BASE64 = 65535
MAX_USER_DATA = MAX_USER_DATA_BASE64 // 4 * 3


def seconds_option(p, key, default):
    """A timeout option of ``p`` (``default`` when unset); InvalidRequest unless a whole number of seconds, 0 or
    more (an operator file's value is not typed by any argument spec)."""
    value = p.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest("%s must be 0 or more seconds, got %r" % (key, value))
    return value


def forbidden_char(text):
    """The first character of ``text`` that no name may hold (a control, format, surrogate or line/paragraph
    separator character, see FORBIDDEN_CATEGORIES), or None."""
    for ch in text:
        if unicodedata.category(ch) in FORBIDDEN_CATEGORIES:
            return ch
    return None


def safe_text(value):
    """``value`` as text for a terminal: every character no name may hold written as a Python escape (C(\\n),
    C(\\x9b), C(\\u202e)), so text that reached a table or a progress line cannot move the cursor, recolour
    the terminal or reorder the line."""
    text = value if isinstance(value, str) else str(value)
    if forbidden_char(text) is None:
        return text
    return "".join(ascii(ch)[1:-1] if unicodedata.category(ch) in FORBIDDEN_CATEGORIES else ch for ch in text)


def describe_char(ch):
    """'U+202E (RIGHT-TO-LEFT OVERRIDE, category Cf)': how an error names a refused character."""
    return "U+%04X (%s, category %s)" % (ord(ch), unicodedata.name(ch, "unnamed"), unicodedata.category(ch))


def check_text(what, text):
    """Refuse ``text`` (a name, ID, hostname...) holding a control or format character: InvalidRequest naming
    ``what`` and the character's code point. The text itself is quoted escaped (ascii), never raw."""
    ch = forbidden_char(text)
    if ch is not None:
        raise InvalidRequest("Invalid %s %s: it holds the character %s; control characters (newline, tab, NUL, "
                             "C1 controls...) and format characters (bidi overrides, zero-width characters...) are "
                             "not allowed."
                             % (what, ascii(text), describe_char(ch)))
    return text


def validate_name(kind, name):
    """The name of a resource (instance, flavor, image, network, project, user...): 1-255 characters,
    no control or format characters (Unicode categories Cc, Cf; also Cs, Zl, Zp), no leading or trailing
    whitespace."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest("Invalid %s name: it must be a non-empty string." % kind)
    if len(name) > MAX_NAME:
        raise InvalidRequest("Invalid %s name: %d characters, at most %d are allowed." % (kind, len(name), MAX_NAME))
    check_text("%s name" % kind, name)
    if name != name.strip():
        raise InvalidRequest("Invalid %s name %s: leading or trailing whitespace is not allowed." % (kind, ascii(name)))


def check_uuid(value, what="instance_uuid"):
    """``value`` as a canonical UUID string; InvalidRequest naming ``what`` when it is none."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidRequest("%s %r is not a UUID" % (what, value)) from None


def normalize_mac(mac):
    """A MAC address as six lower-case hex pairs separated by colons (dashes accepted)."""
    m = str(mac or "").strip().lower().replace("-", ":")
    if not MAC_RE.fullmatch(m):
        raise InvalidRequest("invalid MAC address %r (expected six hex pairs like 52:54:00:12:34:56)" % (mac,))
    return m


def user_data_problem(data):
    """Why ``data`` (bytes or str) is too large for nova-api, or None: Nova limits user_data to 65535
    bytes once base64-encoded."""
    size = len(data.encode("utf-8") if isinstance(data, str) else data)
    encoded = 4 * ((size + 2) // 3)
    if encoded <= MAX_USER_DATA_BASE64:
        return None
    return ("user_data is %d bytes, %d once base64-encoded (as nova-api counts it); at most %d base64-encoded "
            "bytes, i.e. %d bytes of user data, are allowed" % (size, encoded, MAX_USER_DATA_BASE64, MAX_USER_DATA))


def user_data_summary(data):
    """What a task result may say about user data (it may hold secrets, so never the data itself): its size in
    bytes and its sha256, or (None, None) when there is none."""
    if data is None:
        return None, None
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    return len(raw), hashlib.sha256(raw).hexdigest()
