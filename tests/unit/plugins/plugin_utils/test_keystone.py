# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``keystone`` identity backend against a REAL Keystone (tests/openstack/keystone.sh: Keystone
from PyPI on SQLite under uwsgi on 127.0.0.1, started once for the session and stopped by PID).

Issue, validate, the validation cache (hit, TTL, never past expiry, 0600 files without the token),
expired / revoked / tampered tokens refused, Keystone's errors as clear AuthErrors, clouds.yaml and
openrc variables, and the policy table and project scoping fed with Keystone's answers.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time

import pytest

from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import policy as _policy
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "openstack"))

import keystone_server  # noqa: E402  # tests/openstack/keystone_server.py

OPENRC = ("OS_AUTH_URL", "OS_CLOUD", "OS_USERNAME", "OS_PASSWORD", "OS_PROJECT_NAME", "OS_USER_DOMAIN_NAME",
          "OS_PROJECT_DOMAIN_NAME", "OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE", "OS_CACERT",
          "BOOTFLOW_AUTH_BACKEND")


@pytest.fixture(scope="session")
def keystone(tmp_path_factory):
    server = keystone_server.KeystoneServer(tmp_path_factory.mktemp("keystone"))
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.stop()
        pytest.fail("cannot start a private Keystone (scripts/setup.sh installs it into "
                    "/var/tmp/bootflow-openstack/venv): %s" % exc)
    print("\nkeystone: setup %.1f s, serving after %.1f s, demo users %.1f s"
          % (server.timings["setup"], server.timings["serve"], server.timings["users"]))
    yield server
    server.stop()
    assert server.all_stopped()


@pytest.fixture(scope="session")
def short_lived(keystone):
    """A second server on the same database and keys whose tokens expire after 3 seconds."""
    return keystone.serve(expiration=3)


@pytest.fixture(autouse=True)
def no_openrc(monkeypatch):
    for name in OPENRC:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def state(tmp_path):
    return str(tmp_path / "state")


def backend(url, state_dir, **kw):
    return _keystone.Keystone(url, state_dir, **kw)


def admin_token(keystone, state_dir):
    return backend(keystone.url, state_dir).issue("admin", keystone.admin_password, "admin")


# --- issue and validate --------------------------------------------------------------------------

def test_issue_gives_keystones_ids_names_and_roles(keystone, state):
    ks = backend(keystone.url, state)
    token, ctx = ks.issue("admin", keystone.admin_password, "admin")
    assert ctx.user_id == keystone.user_id("admin") and ctx.user_name == "admin"
    assert ctx.project_id == keystone.project_id("admin") and ctx.project_name == "admin"
    assert {"admin", "member", "reader"} <= set(ctx.roles)          # implied roles included
    assert 3500 < ctx.expires_at - time.time() <= 3600
    assert ctx.audit_id and ctx.audit_id not in token
    assert ks.requests == 1


def test_validate_asks_keystone_then_uses_the_cache(keystone, state, tmp_path):
    token, issued = admin_token(keystone, str(tmp_path / "issuer"))
    first = backend(keystone.url, state)
    assert first.validate(token) == issued and first.requests == 1        # cache miss: asked Keystone
    second = backend(keystone.url, state)                                # another worker process
    assert second.validate(token) == issued and second.requests == 0     # cache hit
    # a fresh validation (token state=validated) always asks
    assert second.validate(token, use_cache=False) == issued and second.requests == 1
    # the cache file: 0600 in a 0700 dir, named by sha256(token), without the token in it
    cache_dir = os.path.join(state, "keystone-tokens")
    path = os.path.join(cache_dir, hashlib.sha256(token.encode()).hexdigest())
    assert stat.S_IMODE(os.stat(cache_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as f:
        assert token not in f.read()


def test_cache_entry_is_reused_only_for_its_ttl(keystone, state):
    token, _ctx = admin_token(keystone, state)       # issuing primes the cache
    ks = backend(keystone.url, state)
    ks.validate(token, now=time.time() + 25)
    assert ks.requests == 0
    ks.validate(token, now=time.time() + _keystone.CACHE_TTL + 1)
    assert ks.requests == 1


def test_cache_entry_is_never_used_past_the_tokens_expiry(keystone, state):
    token, ctx = admin_token(keystone, state)
    ks = backend(keystone.url, state, cache_ttl=10 ** 7)
    with pytest.raises(AuthError, match=r"requires authentication\. \(the token expired at "):
        ks.validate(token, now=ctx.expires_at + 1)
    assert ks.requests == 0
    assert not os.listdir(os.path.join(state, "keystone-tokens"))   # the entry was dropped


def test_cache_of_another_keystone_is_not_used(keystone, short_lived, state):
    token, _ctx = admin_token(keystone, state)
    other = backend(short_lived.url, state)         # same token, other auth_url: asks its own Keystone
    other.validate(token)
    assert other.requests == 1


# --- refused tokens ------------------------------------------------------------------------------

def test_expired_token_is_refused_by_keystone(keystone, short_lived, state, tmp_path):
    token, ctx = backend(short_lived.url, str(tmp_path / "issuer")).issue("admin", keystone.admin_password, "admin")
    assert ctx.expires_at - time.time() <= 3
    ks = backend(keystone.url, state)
    assert ks.validate(token).user_name == "admin"              # still valid
    time.sleep(max(0.0, ctx.expires_at - time.time()) + 1.5)
    with pytest.raises(AuthError, match=r"requires authentication\. \(the token expired at "):
        ks.validate(token)                                      # from the cache entry: never past expiry
    with pytest.raises(AuthError, match=r"requires authentication\. \(Keystone at http://127\.0\.0\.1:\d+/v3 "
                                        r"refused the token: it is expired, revoked or not a valid token\)"):
        ks.validate(token, use_cache=False)                     # Keystone itself says no
    assert ks.requests == 2


def test_revoked_token_is_refused_at_once_here_and_after_the_ttl_elsewhere(keystone, state, tmp_path):
    token, _ctx = admin_token(keystone, state)
    other_controller = str(tmp_path / "other")
    assert backend(keystone.url, other_controller).validate(token).user_name == "admin"   # cached there
    ks = backend(keystone.url, state)
    assert ks.revoke(token) is True
    with pytest.raises(AuthError, match="refused the token: it is expired, revoked or not a valid token"):
        ks.validate(token)                       # our cache entry went with the revocation
    elsewhere = backend(keystone.url, other_controller)
    assert elsewhere.validate(token).user_name == "admin" and elsewhere.requests == 0   # within its TTL
    with pytest.raises(AuthError, match="refused the token"):
        elsewhere.validate(token, now=time.time() + _keystone.CACHE_TTL + 1)
    with pytest.raises(AuthError, match="refused the token: it is expired, already revoked or not a valid token"):
        ks.revoke(token)


@pytest.mark.parametrize("tamper", [
    lambda t: t[:-4] + ("AAAA" if t[-4:] != "AAAA" else "BBBB"),    # last bytes (HMAC) changed
    lambda t: t[:20] + ("x" if t[20] != "x" else "y") + t[21:],    # payload changed
    lambda t: t[:len(t) // 2],                                      # truncated
    lambda t: "gAAAAA" + "0" * 180,                                 # made up
])
def test_tampered_token_is_refused(keystone, state, tamper):
    token, _ctx = admin_token(keystone, str(os.path.join(state, "issuer")))
    ks = backend(keystone.url, state)
    with pytest.raises(AuthError, match="refused the token: it is expired, revoked or not a valid token"):
        ks.validate(tamper(token))
    assert ks.requests == 1


@pytest.mark.parametrize("token,why", [(None, "no auth_token given"), ("", "no auth_token given"),
                                       ("abc def", "characters no Keystone token has")])
def test_missing_or_garbage_token_is_refused_without_asking(keystone, state, token, why):
    ks = backend(keystone.url, state)
    with pytest.raises(AuthError, match=why):
        ks.validate(token)
    assert ks.requests == 0


def test_role_removed_in_keystone_refuses_the_token(keystone, state):
    reader = keystone.users["reader"]
    token, ctx = backend(keystone.url, state).issue("reader", reader["password"], "demo")
    assert ctx.roles == ("reader",)
    path = "/projects/%s/users/%s/roles/%s" % (reader["project_id"], reader["id"], keystone.role_id("reader"))
    keystone.admin("DELETE", path)
    try:
        with pytest.raises(AuthError, match="refused the token"):
            backend(keystone.url, state).validate(token, use_cache=False)
    finally:
        keystone.admin("PUT", path)


# --- Keystone's errors as clear messages ---------------------------------------------------------

@pytest.mark.parametrize("user,password,project,match", [
    ("admin", "wrong", "admin", r"wrong user name or password, or user admin has no role on project admin"),
    ("nobody", "x", "admin", r"wrong user name or password"),
    ("member", None, "admin", r"wrong user name or password, or user member has no role on project admin"),
])
def test_refused_credentials(keystone, state, user, password, project, match):
    password = password or keystone.users["member"]["password"]
    with pytest.raises(AuthError, match=r"^The request you have made requires authentication\. \(Keystone at "
                                        r"http://127\.0\.0\.1:\d+/v3 refused the credentials: " + match):
        backend(keystone.url, state).issue(user, password, project)


def test_no_password_is_refused_before_asking(keystone, state):
    ks = backend(keystone.url, state)
    with pytest.raises(AuthError, match=r"no password for user admin: give password, a clouds.yaml cloud"):
        ks.issue("admin", None, "admin")
    assert ks.requests == 0


def test_unreachable_keystone(state):
    port = keystone_server.free_port()   # nothing listens there
    ks = backend("http://127.0.0.1:%d/v3" % port, state)
    with pytest.raises(AuthError, match=r"^cannot reach Keystone at http://127\.0\.0\.1:%d/v3 \(connection refused\)$" % port):
        ks.validate("gAAAAAsometoken")
    with pytest.raises(AuthError, match=r"^cannot reach Keystone at http://127\.0\.0\.1:%d/v3 \(connection refused\)$" % port):
        ks.issue("admin", "pw", "admin")


def test_a_url_that_is_not_keystone(keystone, state):
    ks = backend(keystone.url.replace("/v3", "/nothing-here"), state)
    with pytest.raises(AuthError, match=r"^no Keystone identity v3 API at http://127\.0\.0\.1:\d+/nothing-here/v3 "
                                        r"\(404 Not Found\): check auth_url$"):
        ks.validate("gAAAAAsometoken")


def test_auth_url_is_required_and_normalized(keystone, state, monkeypatch):
    with pytest.raises(InvalidRequest, match="needs Keystone's URL: set auth_url"):
        _keystone.Keystone(None, state)
    with pytest.raises(InvalidRequest, match="must be an http:// or https:// URL"):
        _keystone.Keystone("127.0.0.1:5000", state)
    base = keystone.url[:-len("/v3")]
    for url in (base, base + "/", base + "/v3/"):
        assert _keystone.Keystone(url, state).auth_url == keystone.url
    monkeypatch.setenv("OS_AUTH_URL", base)
    assert _keystone.Keystone(None, state).auth_url == keystone.url


def test_backend_choice(monkeypatch):
    assert _keystone.resolve_backend(None) == "local"
    monkeypatch.setenv("BOOTFLOW_AUTH_BACKEND", "keystone")
    assert _keystone.resolve_backend(None) == "keystone"
    assert _keystone.resolve_backend("keystone") == "keystone"      # a task may repeat the operator's backend
    with pytest.raises(AuthError, match="differs from the operator's"):
        _keystone.resolve_backend("local")                           # ... but not choose another
    monkeypatch.setenv("BOOTFLOW_AUTH_BACKEND", "ldap")
    with pytest.raises(InvalidRequest, match="from the BOOTFLOW_AUTH_BACKEND environment variable"):
        _keystone.resolve_backend(None)


# --- clouds.yaml and openrc ----------------------------------------------------------------------

def test_clouds_yaml_with_secure_yaml(keystone, state, tmp_path, monkeypatch):
    clouds, secure = tmp_path / "clouds.yaml", tmp_path / "secure.yaml"
    clouds.write_text("clouds:\n  it:\n    auth:\n      auth_url: %s\n      username: member\n      project_name: demo\n"
                      "      user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n"
                      % keystone.url)
    secure.write_text("clouds:\n  it:\n    auth:\n      password: %s\n" % keystone.users["member"]["password"])
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(secure))
    token, ctx = _keystone.Keystone(None, state, cloud="it").issue()
    assert (ctx.user_name, ctx.project_name, ctx.roles) == ("member", "demo", ("member", "reader"))
    # steps find the URL through OS_CLOUD
    monkeypatch.setenv("OS_CLOUD", "it")
    assert _keystone.Keystone(None, state).validate(token, use_cache=False) == ctx
    with pytest.raises(InvalidRequest, match=r"cloud 'nope' is not in .*clouds.yaml \(clouds: it\)"):
        _keystone.Keystone(None, state, cloud="nope")


def test_openrc_variables(keystone, state, monkeypatch):
    monkeypatch.setenv("OS_AUTH_URL", keystone.url)
    monkeypatch.setenv("OS_USERNAME", "reader")
    monkeypatch.setenv("OS_PASSWORD", keystone.users["reader"]["password"])
    monkeypatch.setenv("OS_PROJECT_NAME", "demo")
    _token, ctx = _keystone.Keystone(None, state).issue()
    assert (ctx.user_name, ctx.project_name, ctx.roles) == ("reader", "demo", ("reader",))
    # explicit options win over the environment; no project = the user's default project (demo)
    _token, ctx = _keystone.Keystone(None, state).issue("member", keystone.users["member"]["password"])
    assert (ctx.user_name, ctx.project_name) == ("member", "demo")


def test_os_auth_url_beside_os_cloud_keeps_the_clouds_credentials(keystone, state, tmp_path, monkeypatch):
    """Both OS_AUTH_URL and OS_CLOUD set (an AWX credential beside a clouds.yaml): the token comes from the cloud's
    credentials, not 'no password for user admin'; a cloud of another Keystone is a conflict, said before any
    request."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds:\n  it:\n    auth:\n      auth_url: %s\n      username: member\n      password: %s\n"
                      "      project_name: demo\n  elsewhere:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n"
                      "      username: admin\n      password: x\n" % (keystone.url, keystone.users["member"]["password"]))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    monkeypatch.setenv("OS_CLOUD", "it")
    monkeypatch.setenv("OS_AUTH_URL", keystone.url.rstrip("/") + "/")    # the same Keystone, spelled otherwise
    _token, ctx = _keystone.Keystone(None, state).issue()
    assert (ctx.user_name, ctx.project_name) == ("member", "demo")
    assert _keystone.operator_auth_url() == _keystone.normalize_auth_url(keystone.url)
    monkeypatch.setenv("OS_CLOUD", "elsewhere")
    for call in (lambda: _keystone.Keystone(None, state), _keystone.operator_auth_url):
        with pytest.raises(InvalidRequest, match=r"OS_AUTH_URL \(.*\) and the auth_url of the OS_CLOUD cloud 'elsewhere' "
                                                 r"\(http://127.0.0.1:9/v3\) differ"):
            call()


# --- the policy table and project scoping with Keystone's answers ----------------------------------

@pytest.fixture()
def cloud(keystone, tmp_path):
    """A local bootflow DB (instances, images...) with callers validated by the real Keystone."""
    state_dir = str(tmp_path / "state")
    db = _db.open_db(state_dir=state_dir)
    ks = backend(keystone.url, state_dir)
    auth = {"admin": ks.validate(ks.issue("admin", keystone.admin_password, "admin")[0], use_cache=False)}
    for name in ("member", "reader"):
        token, _ctx = ks.issue(name, keystone.users[name]["password"], "demo")
        auth[name] = ks.validate(token, use_cache=False)
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["admin"], state_dir, "public-img", str(image), "raw", "bare", "public", 0, 0, {},
                        "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, None, None, None, [], "present", False)
    _c, inst = _compute_api.create(db, auth["admin"], "vm-admin", "m1.tiny", "public-img", ["net"], 1, None, False)
    yield {"db": db, "auth": auth, "inst": inst}
    db.dispose()


def test_instance_records_keystones_project_and_user(keystone, cloud):
    inst = cloud["inst"]
    assert inst.project_id == keystone.project_id("admin") and inst.user_id == keystone.user_id("admin")


def test_other_projects_member_and_reader_cannot_see_admins_instance(cloud):
    db, inst = cloud["db"], cloud["inst"]
    with db.tx() as conn:
        for name in ("member", "reader"):
            caller = cloud["auth"][name]
            assert caller.project_name == "demo"
            assert instances.find_instance(conn, "vm-admin", caller) is None
            with pytest.raises(NotFound, match="Instance %s could not be found" % inst.uuid):
                instances.get_instance(conn, inst.uuid, caller)
        assert instances.get_instance(conn, inst.uuid, cloud["auth"]["admin"]).name == "vm-admin"


def test_policy_table_with_keystone_roles(cloud):
    member, reader = cloud["auth"]["member"], cloud["auth"]["reader"]
    _policy.enforce(member, "compute:create")
    _policy.enforce(reader, "compute:get")
    with pytest.raises(AuthError, match=r"Policy doesn't allow compute:create to be performed: .* user reader has "
                                        r"reader on project demo"):
        _policy.enforce(reader, "compute:create")
    with pytest.raises(AuthError, match="Policy doesn't allow network:manage"):
        _policy.enforce(member, "network:manage")
    # the member boots in its own project; the reader of that project sees it, the admin by UUID
    _c, inst = _compute_api.create(cloud["db"], member, "vm-member", "m1.tiny", "public-img", ["net"], 0, None, False)
    assert inst.project_id == member.project_id
    with cloud["db"].tx() as conn:
        assert instances.get_instance(conn, "vm-member", reader).uuid == inst.uuid
        assert instances.get_instance(conn, inst.uuid, cloud["auth"]["admin"]).name == "vm-member"
