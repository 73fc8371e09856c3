# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16, attack replays on the controller (a real SQLite DB, the real services):

- findings 9 and 11: a name with a trailing newline, a C1 control (CSI \\x9b, NEL \\x85), a bidi override
  (U+202E) or a zero-width space (U+200B) is refused by every path that takes a name, with the code point
  in the message, and the whole DB is unchanged;
- finding 14: a member may not choose a fixed IP (Neutron's create_port:fixed_ips:ip_address) - not at
  create, not in a fleet list, not for a port; nothing is recorded; an admin still may;
- finding 12: task results carry the user data's size and sha256, never the data.
"""

from __future__ import annotations

import hashlib
import re

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common import rules
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError, InvalidRequest
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import boot_request as _boot_request
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import conductor as _conductor
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import keypairs as _keypairs
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import local as _identity
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import policy as _policy
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import glance as _glance
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import ipam as _ipam

# (character, its code point as the error names it)
HOSTILE = [("\x9b", "U+009B"), ("\u202e", "U+202E"), ("\u200b", "U+200B"), ("\x85", "U+0085"), ("\n", "U+000A"),
           ("\x1b", "U+001B"), ("\u2028", "U+2028")]
MARKER = "#cloud-config\n# SECRET-MARKER-6f1d2c\n"


@pytest.fixture()
def cloud(tmp_path):
    state_dir = str(tmp_path / "state")
    db = _db.open_db(state_dir=state_dir)
    keys = _identity.key_repository(state_dir)
    _identity.bootstrap(db, "admin", "pw", "admin")
    auth = {}
    _identity.ensure_project(db, "pa", "", True, "present", False)
    _identity.ensure_user(db, "alice", "pw", "pa", True, "on_create", "present", False)
    _identity.ensure_role_assignment(db, "alice", "pa", "member", "present", False)
    auth["alice"] = _identity.authenticate(db, keys, _identity.issue_token(db, keys, "alice", "pw", "pa")[0])
    auth["admin"] = _identity.authenticate(db, keys, _identity.issue_token(db, keys, "admin", "pw", "admin")[0])
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * 65536)
    _compute_api.ensure_flavor(db, "m1.tiny", 1, 128, 1, {}, "present", False)
    _images.apply_image(db, auth["admin"], state_dir, "img", str(image), "raw", "bare", "public", 0, 0, {},
                        "present", False)
    _networking.ensure_network(db, "net", "br-test", "present", False)
    # pool .10-.100: .200 is outside it, .50 inside
    _networking.ensure_subnet(db, "net", "net-subnet", "10.0.0.0/24", None, "10.0.0.10", "10.0.0.100", None, [],
                              "present", False)
    yield {"db": db, "auth": auth, "state_dir": state_dir, "image": str(image)}
    db.dispose()


def everything(db):
    """Every row of every table (order-independent): what a refused request must leave as it was."""
    with db.tx() as conn:
        names = _db.sa.inspect(conn).get_table_names()
        return {t: sorted(repr(tuple(r)) for r in conn.execute(_db.sa.text('SELECT * FROM "%s"' % t))) for t in names}


# --- finding 11: control and format characters, in every name ------------------------------------------

@pytest.mark.parametrize("char,code", HOSTILE)
def test_validate_name_refuses_control_and_format_characters_naming_the_code_point(char, code):
    for name in ("vm" + char, char + "vm", "v" + char + "m"):
        with pytest.raises(InvalidRequest, match=r"Invalid instance name .*%s" % re.escape(code)) as exc:
            rules.validate_name("instance", name)
        assert char not in str(exc.value)   # the name is quoted escaped, never raw


def test_validate_name_still_takes_ordinary_unicode():
    for name in ("Web 1", "café", "ウェブ", "vm-1.example", "a" * 255):
        rules.validate_name("instance", name)


def _name_paths(c):
    """Every controller path that takes a new name: (what, call with the name)."""
    db, auth, state_dir = c["db"], c["auth"], c["state_dir"]
    return [
        ("instance", lambda n: _compute_api.create(db, auth["alice"], n, "m1.tiny", "img", ["net"], 0, None, False)),
        ("instance", lambda n: _boot_request.record(db, auth["alice"], _boot_request.expand(
            [{"name": "fine", "flavor": "m1.tiny", "image": "img", "networks": ["net"]},
             {"name": n, "flavor": "m1.tiny", "image": "img", "networks": ["net"]}]))),
        ("flavor", lambda n: _compute_api.ensure_flavor(db, n, 1, 128, 1, {}, "present", False)),
        ("image", lambda n: _images.apply_image(db, auth["admin"], state_dir, n, c["image"], "raw", "bare", "public",
                                                0, 0, {}, "present", False)),
        ("network", lambda n: _networking.ensure_network(db, n, "br-x", "present", False)),
        ("subnet", lambda n: _networking.ensure_subnet(db, "net", n, "10.1.0.0/24", None, None, None, None, [],
                                                       "present", False)),
        ("project", lambda n: _identity.ensure_project(db, n, "", True, "present", False)),
        ("user", lambda n: _identity.ensure_user(db, n, "pw", "pa", True, "on_create", "present", False)),
        ("domain", lambda n: _identity.ensure_domain(db, n, "", True, "present", False)),
        ("server group", lambda n: _server_groups.ensure(db, auth["alice"], n, "anti-affinity", {}, "present",
                                                         False)),
        ("metadata key", lambda n: _boot_request.expand(
            [{"name": "vm", "flavor": "m1.tiny", "image": "img", "networks": ["net"], "metadata": {n: "v"}}])),
    ]


@pytest.mark.parametrize("char,code", HOSTILE)
def test_every_name_path_refuses_the_character_and_changes_nothing(cloud, char, code):
    before = everything(cloud["db"])
    for what, call in _name_paths(cloud):
        with pytest.raises(InvalidRequest, match=r"%s.*%s" % (what, re.escape(code))):
            call("evil" + char + "name")
        assert everything(cloud["db"]) == before, what


def test_keypair_names_refuse_the_characters_too(cloud):
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host"
    before = everything(cloud["db"])
    for char, _code in HOSTILE:
        with pytest.raises(InvalidRequest, match="Invalid key pair name"):
            _keypairs.ensure(cloud["db"], cloud["auth"]["alice"], "k" + char, key, "present", False)
    assert everything(cloud["db"]) == before


def test_availability_zone_and_aggregates_refuse_format_characters():
    base = {k: None for k in _placement.NODE_SETTINGS}
    base.update(aggregates=[], traits=[], availability_zone="nova")
    for char, _code in HOSTILE:
        with pytest.raises(InvalidRequest, match="availability_zone"):
            _placement.node_settings(dict(base, availability_zone="nova" + char))
        with pytest.raises(InvalidRequest, match="aggregates"):
            _placement.node_settings(dict(base, aggregates=["ssd" + char]))


# --- finding 9: a trailing newline passes no validation --------------------------------------------------

def test_controller_validators_refuse_a_trailing_newline(cloud):
    with pytest.raises(InvalidRequest, match="Invalid bridge name"):
        _networking.ensure_network(cloud["db"], "net2", "br0\n", "present", False)
    with pytest.raises(_ipam.IpamError):
        _ipam.validate_mac("fa:16:3e:00:00:01\n" + "x")
    assert _ipam.validate_mac("fa:16:3e:00:00:01\n") == "fa:16:3e:00:00:01"   # stripped: no newline survives
    with pytest.raises(_ipam.IpamError, match="MAC prefix"):
        _ipam.random_mac(prefix="fa:16\n:3e")
    assert not _scheduler.TRAIT_RE.fullmatch("CUSTOM_SSD\n")
    with pytest.raises(InvalidRequest, match="trait"):
        _placement.node_settings(dict({k: None for k in _placement.NODE_SETTINGS}, availability_zone="nova",
                                      aggregates=[], traits=["CUSTOM_SSD\n"]))
    assert not _glance.is_uuid("0b2c6f4e-0000-4000-8000-000000000001\n")
    assert rules.normalize_mac("52:54:00:12:34:56\n") == "52:54:00:12:34:56"
    with pytest.raises(InvalidRequest):
        rules.normalize_mac("52:54:00:12:34:56\nfa:16:3e:00:00:01")


# --- finding 14: a member may not choose a fixed IP -------------------------------------------------------

def test_policy_has_neutrons_fixed_ip_rule_for_admins_only():
    assert _policy.POLICY[_networking.FIXED_IP_RULE] == _policy.ADMIN


@pytest.mark.parametrize("ip", ["10.0.0.50", "10.0.0.200"])   # in the pool, outside it
def test_member_create_with_a_fixed_ip_is_refused_and_nothing_is_written(cloud, ip):
    before = everything(cloud["db"])
    with pytest.raises(AuthError, match="network:create_port:fixed_ips:ip_address"):
        _compute_api.create(cloud["db"], cloud["auth"]["alice"], "vm-f", "m1.tiny", "img", ["net"], 0, None, False,
                            fixed_ips={"net": ip})
    assert everything(cloud["db"]) == before


def test_member_fleet_list_with_one_fixed_ip_records_nothing(cloud):
    entries = _boot_request.expand([
        {"name": "a", "flavor": "m1.tiny", "image": "img", "networks": ["net"]},
        {"name": "b", "flavor": "m1.tiny", "image": "img", "networks": [{"network": "net", "fixed_ip": "10.0.0.200"}]},
        {"name": "c", "flavor": "m1.tiny", "image": "img", "networks": ["net"]}])
    before = everything(cloud["db"])
    with pytest.raises(AuthError, match="network:create_port:fixed_ips:ip_address"):
        _boot_request.record(cloud["db"], cloud["auth"]["alice"], entries)
    assert everything(cloud["db"]) == before
    # without the fixed IP the same member may boot the list
    entries[1]["fixed_ips"] = {}
    changed, present, _absent = _boot_request.record(cloud["db"], cloud["auth"]["alice"], entries)
    assert changed and [p["name"] for p in present] == ["a", "b", "c"]


def _placed(cloud, who, name):
    _c, row = _compute_api.create(cloud["db"], cloud["auth"][who], name, "m1.tiny", "img", ["net"], 0, None, False)
    with cloud["db"].tx() as conn:
        conn.execute(_db.table("instances").update().where(_db.table("instances").c.uuid == row.uuid).values(
            host="hv1"))
    return row.uuid


@pytest.mark.parametrize("ip", ["10.0.0.50", "10.0.0.200"])
def test_member_port_with_a_fixed_ip_is_refused_and_nothing_changes(cloud, ip):
    uuid = _placed(cloud, "alice", "vm-p")
    before = everything(cloud["db"])
    with pytest.raises(AuthError, match="network:create_port:fixed_ips:ip_address"):
        _networking.allocate_instance_ports(cloud["db"], cloud["auth"]["alice"], uuid, {"net": ip})
    assert everything(cloud["db"]) == before
    # a port from the pool is still the member's to take
    changed, _row, _after, ports = _networking.allocate_instance_ports(cloud["db"], cloud["auth"]["alice"], uuid, {})
    assert changed and ports[0]["ip"] != ip


def test_admin_may_still_choose_fixed_ips(cloud):
    _c, row = _compute_api.create(cloud["db"], cloud["auth"]["admin"], "vm-adm", "m1.tiny", "img", ["net"], 0, None,
                                  False, fixed_ips={"net": "10.0.0.200"})
    assert row.request["fixed_ips"]
    uuid = _placed(cloud, "admin", "vm-adm2")
    ports = _networking.allocate_instance_ports(cloud["db"], cloud["auth"]["admin"], uuid, {"net": "10.0.0.50"})[3]
    assert [p["ip"] for p in ports] == ["10.0.0.50"]


# --- finding 12: the user data is never in a task result -------------------------------------------------

def test_instance_results_carry_the_user_datas_digest_not_the_data(cloud):
    _c, row = _compute_api.create(cloud["db"], cloud["auth"]["alice"], "vm-u", "m1.tiny", "img", ["net"], 0, MARKER,
                                  False)
    assert row.request["user_data"] == MARKER          # the record keeps it: the config drive reads it there
    out = instances.instance_dict(row)
    _row, spec = _conductor.instance_spec(cloud["db"], cloud["auth"]["alice"], "vm-u")
    for result in (out, spec):
        assert "SECRET-MARKER" not in repr(result)
    assert out["request"]["user_data_size"] == len(MARKER.encode())
    assert out["request"]["user_data_sha256"] == hashlib.sha256(MARKER.encode()).hexdigest()
    assert spec["user_data_size"] == len(MARKER.encode()) and "user_data" not in spec
    _c, none = _compute_api.create(cloud["db"], cloud["auth"]["alice"], "vm-n", "m1.tiny", "img", ["net"], 0, None,
                                   False)
    assert instances.instance_dict(none)["request"]["user_data_size"] is None
