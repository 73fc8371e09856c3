# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bad input, across the modules: each case fails with a clear message and changes nothing.

Before and after every case the test takes the whole state (conftest ``Env.everything``): every row
of every table of the controller DB, the controller's keys and image store, and on the test host
the libvirt domains (and a hash of their XML), pools and pool volumes, every path under
/var/lib/bootflow (instance dirs, the _base cache, volumes, DHCP hosts/ports/leases/opts files,
with content hashes), the host's links and addresses and its dnsmasq/qemu processes. Both must be
equal. A running instance (``bi-target``, booted once, holding a DHCP lease) and a scheduled one
without ports (``bi-pending``) are there for the cases to aim at, so "changes nothing" is checked
against a host that has a live dnsmasq, reservation, lease, overlay, volume and domain.

Cases run as boot.yml (the request a user makes), or as one task of a module on the controller or
on the test host (with an admin token unless the case says otherwise; ``token=None`` = the module
alone on the host, without the controller's bookkeeping).

Names with XML or shell special characters are not refused (Nova accepts any display name without
control characters): ``test_hostile_name_is_inert`` boots one and proves nothing is injected.

Host bfhv131.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import re
import uuid as uuidlib
import xml.etree.ElementTree as ET

import pytest
import yaml

from conftest import REPO, host_session, snapshot_diff

HOST_N = 131
HOST = "bfhv%d" % HOST_N
NAME = "bi-bad"          # every refused boot asks for this name
TARGET = "bi-target"     # a running instance (domain, overlay, volume, reservation, lease)
WORLD_PLAYBOOK = os.path.join(REPO, "tests", "integration", "playbooks", "bad_input_world.yml")
NOWHERE = str(uuidlib.UUID(int=0))
RESULT_RE = re.compile(r"BFRESULT (\S+)")


@dataclasses.dataclass
class Case:
    id: str
    where: str                 # boot | localhost | host
    module: str                # module name, or "" for boot.yml
    args: object               # dict, or world -> dict (extra vars for boot)
    expect: str                # regex the failure message must match
    token: str | None = "admin"

    def build(self, world):
        return self.args(world) if callable(self.args) else dict(self.args)


def _boot(id_, extra, expect, token="admin"):
    return Case(id_, "boot", "", extra, expect, token)


def _ctl(id_, module, args, expect, token="admin"):
    return Case(id_, "localhost", module, args, expect, token)


def _host(id_, module, args, expect, token="admin"):
    return Case(id_, "host", module, args, expect, token)


def _dhcp(w, **over):
    """A complete dhcp_lease reservation on the target's network, with some arguments made bad."""
    port = w["port"]
    args = dict(network_id=port["network_id"], bridge=port["bridge"], cidr=port["cidr"], dhcp_ip=port["dhcp_ip"],
                gateway_ip=port["gateway_ip"], mac="fa:16:3e:00:00:01", ip="10.99.0.200", port_id="bi-port-x")
    args.update(over)
    return args


CASES = [
    # --- the boot request (boot.yml: token, nova-api) --------------------------------------------------
    _boot("boot unknown flavor", {"bootflow_flavor": "m1.nope"}, r"Flavor m1\.nope could not be found\."),
    _boot("boot unknown image", {"bootflow_image": "no-such-image"}, r"Image no-such-image could not be found\."),
    _boot("boot ambiguous image name", {"bootflow_image": "bi-twin"},
          r"Multiple images are named bi-twin; use the image ID"),
    _boot("boot unknown network", {"bootflow_networks": ["no-such-net"]}, r"Network no-such-net could not be found\."),
    _boot("boot no network", {"bootflow_networks": []}, r"At least one network is required\."),
    _boot("boot garbage token", {"bootflow_token": "gAAAAABnot-a-real-token"}, r"the token is not valid"),
    _boot("boot as a reader", {"bootflow_username": "bi-reader", "bootflow_password": "reader-pw"},
          r"Policy doesn't allow compute:create to be performed.*user bi-reader has reader"),
    _boot("boot over quota", {"bootflow_username": "bi-bob", "bootflow_password": "bob-pw"},
          r"Quota exceeded for instances: Requested 1, but already used 0 of 0 instances\."),
    # a variable of a later role (compute) is checked before nova-api creates anything
    _boot("boot with a bad virt type", {"bootflow_virt_type": "xen"},
          r"value of bootflow_virt_type must be one of: auto, qemu, kvm, got: xen"),
    _boot("boot with a non-numeric lease timeout", {"bootflow_lease_timeout": "soon"},
          r"bootflow_lease_timeout.*unable to convert to int"),
    _boot("boot name with a newline", {"bootflow_instance_name": "bad\nname"}, r"control characters"),
    _boot("boot name of 256 characters", {"bootflow_instance_name": "n" * 256}, r"256 characters, at most 255"),
    _boot("boot blank name", {"bootflow_instance_name": "   "}, r"Invalid instance name: it must be a non-empty string"),
    _boot("boot negative volume size", {"bootflow_volume_size_gb": -1}, r"volume_size_gb must be between 0 and 16384, got -1"),
    _boot("boot huge volume size", {"bootflow_volume_size_gb": 10 ** 9},
          r"volume_size_gb must be between 0 and 16384, got 1000000000"),
    _boot("boot volume size not a number", {"bootflow_volume_size_gb": "ten"},
          r"volume_size_gb.*(cannot be converted to an int|invalid literal)"),
    _boot("boot delete_on_termination not a boolean", {"bootflow_volume_delete_on_termination": "maybe"},
          r"volume_delete_on_termination.*not a valid boolean"),
    _boot("boot root volume without boot_from_volume", {"bootflow_root_volume_size_gb": 5},
          r"root_volume_size_gb is only valid with boot_from_volume"),
    _boot("boot huge root volume", {"bootflow_boot_from_volume": True, "bootflow_root_volume_size_gb": 10 ** 6},
          r"The root volume size must be between 1 and 16384 GB, got 1000000"),
    _boot("boot availability zone with blanks", {"bootflow_availability_zone": "nova; reboot"},
          r"Invalid availability_zone 'nova; reboot': use ZONE, ZONE:HOST or :HOST"),
    _boot("boot user_data over 65535 bytes", {"bootflow_user_data": "#" * 70000},
          r"user_data is 70000 bytes, 93336 once base64-encoded \(as nova-api counts it\); at most 65535"),
    _boot("boot user_data over 65535 bytes once base64-encoded", {"bootflow_user_data": "#" * 50000},
          r"user_data is 50000 bytes, 66668 once base64-encoded \(as nova-api counts it\); at most 65535 "
          r"base64-encoded bytes, i\.e\. 49149 bytes of user data, are allowed"),

    # --- controller modules -----------------------------------------------------------------------------
    _ctl("flavor negative vcpus", "flavor", {"name": "bi-flavor", "vcpus": -1, "ram_mb": 64},
         r"Invalid flavor bi-flavor: vcpus must be a positive integer, got -1"),
    _ctl("flavor huge ram", "flavor", {"name": "bi-flavor", "vcpus": 1, "ram_mb": 2 ** 40},
         r"Invalid flavor bi-flavor: ram_mb must be at most 2147483647, got 1099511627776"),
    _ctl("flavor negative disk", "flavor", {"name": "bi-flavor", "vcpus": 1, "ram_mb": 64, "disk_gb": -1},
         r"disk_gb must be 0 or more, got -1"),
    _ctl("flavor extra_specs not a dict", "flavor", {"name": "bi-flavor", "vcpus": 1, "ram_mb": 64, "extra_specs": "x"},
         r"extra_specs.*dictionary requested"),
    _ctl("network bridge with shell metacharacters", "network", {"name": "bi-net", "bridge": "br;reboot"},
         r"Invalid bridge name 'br;reboot'"),
    _ctl("network bridge with a path", "network", {"name": "bi-net", "bridge": "../br0"},
         r"Invalid bridge name '\.\./br0'"),
    _ctl("subnet CIDR prefix 33", "subnet", {"name": "bi-sub", "network": "private", "cidr": "10.98.0.0/33"},
         r"Invalid subnet bi-sub:.*10\.98\.0\.0/33"),
    _ctl("subnet IPv6 CIDR", "subnet", {"name": "bi-sub", "network": "private", "cidr": "fd00::/64"},
         r"Invalid subnet bi-sub:.*IPv4"),
    _ctl("subnet gateway outside the CIDR", "subnet",
         {"name": "bi-sub", "network": "private", "cidr": "10.97.0.0/24", "gateway_ip": "10.96.0.1"},
         r"Invalid subnet bi-sub: gateway_ip 10\.96\.0\.1 is not in subnet 10\.97\.0\.0/24"),
    _ctl("subnet pool reversed", "subnet",
         {"name": "bi-sub", "network": "private", "cidr": "10.97.0.0/24", "pool_start": "10.97.0.200",
          "pool_end": "10.97.0.100"}, r"Invalid subnet bi-sub:.*pool"),
    _ctl("subnet DNS server not an IP", "subnet",
         {"name": "bi-sub", "network": "private", "cidr": "10.97.0.0/24", "dns_servers": ["8.8.8.8;reboot"]},
         r"Invalid subnet bi-sub: DNS server '8\.8\.8\.8;reboot' is not a valid IP address"),
    _ctl("subnet on an unknown network", "subnet", {"name": "bi-sub", "network": "no-such-net", "cidr": "10.97.0.0/24"},
         r"Network no-such-net could not be found\."),
    _ctl("port fixed IP outside the subnet", "port", lambda w: {"instance": w["pending"], "fixed_ips": {"private": "10.98.0.5"}},
         r"Invalid fixed IP for network private: 10\.98\.0\.5 is not in subnet 10\.99\.0\.0/24"),
    _ctl("port fixed IP malformed", "port", lambda w: {"instance": w["pending"], "fixed_ips": {"private": "10.99.0.999"}},
         r"Invalid fixed IP for network private: fixed IP '10\.99\.0\.999' is not a valid IP address"),
    _ctl("port fixed IP is the gateway", "port", lambda w: {"instance": w["pending"], "fixed_ips": {"private": "10.99.0.1"}},
         r"Invalid fixed IP for network private: 10\.99\.0\.1 is the gateway address"),
    _ctl("port fixed IP taken by another instance", "port",
         lambda w: {"instance": w["pending"], "fixed_ips": {"private": w["port"]["ip"]}},
         r"Invalid fixed IP for network private: 10\.99\.0\.\d+ is already allocated"),
    _ctl("port fixed IP on a network the instance is not on", "port",
         lambda w: {"instance": w["pending"], "fixed_ips": {"bi-lonely": "10.97.0.5"}},
         r"fixed_ips names network\(s\) the instance is not on"),
    _ctl("port fixed IP differing from the instance's port", "port",
         lambda w: {"instance": w["target"], "fixed_ips": {"private": "10.99.0.250"}},
         r"already has port \S+ with IP 10\.99\.0\.\d+ on network private; it cannot get 10\.99\.0\.250"),
    _ctl("port of an unknown instance", "port", {"instance": NOWHERE}, r"Instance %s could not be found\." % NOWHERE),
    _ctl("quota below -1", "quota", {"project": "bi-other", "cores": -5}, r"Quota cores must be -1 \(unlimited\) or more, got -5"),
    _ctl("quota huge", "quota", {"project": "bi-other", "ram": 2 ** 70},
         r"Quota ram must be at most 2147483647 \(or -1 for unlimited\), got 1180591620717411303424"),
    _ctl("quota of an unknown project", "quota", {"project": "no-such-project", "cores": 1},
         r"Project no-such-project could not be found\."),
    _ctl("token ttl 0", "token", {"username": "admin", "password": "x", "ttl": 0},
         r"ttl must be a positive number of seconds, got 0", token=None),
    _ctl("token ttl of 300 years", "token", lambda w: {"username": "admin", "password": w["admin_password"], "ttl": 10 ** 10},
         r"ttl must be at most 86400 seconds \(identity.max_token_expiration .*\), got 10000000000", token=None),
    _ctl("token wrong password", "token", {"username": "admin", "password": "wrong"}, r"wrong user name or password", token=None),
    _ctl("token unknown project", "token", lambda w: {"username": "admin", "password": w["admin_password"], "project": "nope"},
         r"unknown or disabled project 'nope'", token=None),
    _ctl("user with an unknown default project", "user", {"name": "bi-user", "password": "p", "default_project": "nope"},
         r"Project nope could not be found\."),
    _ctl("user name with a newline", "user", {"name": "bi\nuser", "password": "p"}, r"Invalid user name .*control characters"),
    _ctl("project in an unknown domain", "project", {"name": "bi-proj", "domain": "no-such-domain"},
         r"Domain no-such-domain could not be found\."),
    _ctl("role that does not exist", "role_assignment", {"user": "bi-bob", "project": "bi-other", "role": "superuser"},
         r"value of role must be one of: admin, member, reader, got: superuser"),
    _ctl("role for an unknown user", "role_assignment", {"user": "nobody", "project": "bi-other", "role": "member"},
         r"User nobody could not be found\."),
    _ctl("identity domain with an empty name", "identity_domain", {"name": ""}, r"Invalid domain name: it must be a non-empty string"),
    _ctl("key rotation keeping 1 key", "identity_keys", {"state": "rotated", "max_active_keys": 1},
         r"max_active_keys must be at least 2"),
    _ctl("bootstrap a user without a password", "identity_bootstrap", {"username": "bi-admin2", "project": "admin"},
         r"password is required for user bi-admin2", token=None),
    _ctl("image file outside the image (a text file)", "image",
         {"name": "bi-passwd", "filename": "/etc/../etc/passwd", "disk_format": "qcow2"},
         r"Image file /etc/passwd is raw but disk_format says qcow2"),
    _ctl("schedule an unknown instance", "schedule", {"instance": NOWHERE, "hosts": [HOST]},
         r"Instance %s could not be found\." % NOWHERE),

    # --- host modules -------------------------------------------------------------------------------------
    _host("dhcp_lease unknown port", "dhcp_lease", {"port_id": NOWHERE}, r"Port %s could not be found\." % NOWHERE),
    _host("dhcp_lease bad MAC", "dhcp_lease", lambda w: _dhcp(w, mac="fa:16:3e:zz:00:01"),
          r"invalid MAC address 'fa:16:3e:zz:00:01'", token=None),
    _host("dhcp_lease IP outside the CIDR", "dhcp_lease", lambda w: _dhcp(w, ip="10.98.0.7"), r"ip 10\.98\.0\.7 is not in 10\.99\.0\.0/24",
          token=None),
    _host("dhcp_lease network_id with a path", "dhcp_lease", lambda w: _dhcp(w, network_id="../../etc"),
          r"invalid network_id '\.\./\.\./etc'", token=None),
    _host("dhcp_lease hostname with shell metacharacters", "dhcp_lease", lambda w: _dhcp(w, hostname="a;reboot"),
          r"invalid hostname 'a;reboot'", token=None),
    _host("dhcp_lease lease time 60 s", "dhcp_lease", lambda w: _dhcp(w, lease_time=60), r"lease_time must be at least 120 seconds",
          token=None),
    _host("dhcp_lease lease time over 2^32 s", "dhcp_lease", lambda w: _dhcp(w, lease_time=2 ** 40),
          r"lease_time must be at most 2147483647 seconds.*got 1099511627776", token=None),
    _host("dhcp_lease MAC of another port", "dhcp_lease", lambda w: _dhcp(w, mac=w["port"]["mac"]),
          r"MAC %s is already reserved for port" % r"fa:16:3e:[0-9a-f:]+", token=None),
    _host("dhcp_lease IP of another port", "dhcp_lease", lambda w: _dhcp(w, ip=w["port"]["ip"]),
          r"ip %s is already reserved for" % r"10\.99\.0\.\d+", token=None),
    _host("config_drive hostname with shell metacharacters", "config_drive",
          lambda w: {"instance_uuid": w["target"], "hostname": "x$(reboot)"}, r"invalid hostname 'x\$\(reboot\)'"),
    _host("config_drive instance_uuid with a path", "config_drive", {"instance_uuid": "../../etc"},
          r"instance_uuid '\.\./\.\./etc' is not a UUID", token=None),
    _host("config_drive user_data over 65535 bytes", "config_drive", {"instance_uuid": NOWHERE, "user_data": "#" * 70000},
          r"user_data is 70000 bytes, 93336 once base64-encoded", token=None),
    _host("config_drive port with a bad MAC", "config_drive", {"instance_uuid": NOWHERE, "ports": [{"mac": "nope"}]},
          r"invalid MAC address 'nope'", token=None),
    _host("config_drive of an unknown instance", "config_drive", {"instance_uuid": NOWHERE},
          r"Instance %s could not be found\." % NOWHERE),
    _host("volume name with a path", "volume", {"name": "../../etc/x", "size_gb": 1}, r"invalid volume name '\.\./\.\./etc/x'",
          token=None),
    _host("volume extended beyond 16384 GB", "volume", lambda w: {"name": w["volume"]["name"], "size_gb": 10 ** 7},
          r"size_gb must be between 1 and 16384, got 10000000\."),
    _host("volume shrunk to 0", "volume", lambda w: {"name": w["volume"]["name"], "size_gb": 0},
          r"size_gb must be between 1 and 16384, got 0\."),
    _host("volume extended over the gigabytes quota", "volume", lambda w: {"name": w["volume"]["name"], "size_gb": 2000},
          r"Quota exceeded for gigabytes: Requested 1999, but already used 1 of 1000 GB of volumes\."),
    _host("volume size not a number", "volume", lambda w: {"name": w["volume"]["name"], "size_gb": "2; reboot"},
          # the spec is checked on the controller before anything else, as the module checks it on the host
          r"argument 'size_gb' is of type .* and we were unable to convert to int"),
    _host("volume_attach to a domain that does not exist", "volume_attach",
          lambda w: {"volume": w["volume"]["name"], "domain": "bootflow-%s" % NOWHERE}, r"domain bootflow-%s does not exist" % NOWHERE,
          token=None),
    _host("volume_attach (with a token) to a domain that does not exist", "volume_attach",
          lambda w: {"volume": w["volume"]["name"], "domain": "bootflow-%s" % NOWHERE},
          r"Instance of domain bootflow-%s could not be found\." % NOWHERE),
    _host("volume_attach to another instance's domain", "volume_attach",
          lambda w: {"volume": w["volume"]["name"], "domain": "bootflow-%s" % w["pending"]},
          r"Volume volume-\S+ is attached to instance bi-target, not to bi-pending \(multiattach is not supported\)\."),
    _host("volume_attach device name with a path", "volume_attach",
          lambda w: {"volume": w["volume"]["name"], "domain": w["domain"], "device": "../vdz"},
          r"Invalid device name '\.\./vdz': vdX, sdX or hdX"),
    _host("image_fetch instance_uuid with a path", "image_fetch",
          {"image_id": NOWHERE, "instance_uuid": "../../../etc", "state": "absent"}, r"instance_uuid .*not a UUID", token=None),
    _host("image_fetch file:// URL", "image_fetch",
          {"image_id": NOWHERE, "disk_format": "qcow2", "checksum": "0" * 32, "url": "file:///etc/shadow"},
          r"url must be an http:// or https:// URL", token=None),
    _host("image_fetch src outside the cache", "image_fetch",
          {"image_id": NOWHERE, "disk_format": "raw", "checksum": "0" * 32, "src": "/var/lib/bootflow/../../../etc/shadow"},
          r"checksum|does not match|mismatch", token=None),
    _host("domain negative memory", "domain",
          {"name": "bootflow-%s" % NOWHERE, "uuid": NOWHERE, "vcpus": 1, "memory_mb": -64, "state": "defined"},
          r"memory_mb", token=None),
    _host("domain name with a path", "domain",
          {"name": "../../etc/x", "uuid": NOWHERE, "vcpus": 1, "memory_mb": 64, "state": "defined"}, r"invalid domain name|name",
          token=None),
    _host("compute_node negative vcpus", "compute_node", {"vcpus": -4}, r"vcpus"),
    _host("compute_node full report as a member", "compute_node", {},
          r"Policy doesn't allow compute:report_node to be performed", token="bob"),
    _host("compute_node heartbeat as a reader", "compute_node", {"heartbeat": True},
          r"Policy doesn't allow compute:heartbeat to be performed", token="reader"),
    # day 2 (server_action, console_log) on the running target
    _host("stop as a reader", "server_action", {"instance": TARGET, "action": "stop"},
          r"Policy doesn't allow os_compute_api:servers:stop to be performed.*has reader", token="reader"),
    _host("a member's own shutdown timeout", "server_action", {"instance": TARGET, "action": "stop", "shutdown_timeout": 0},
          r"shutdown_timeout is an operator setting", token="bob"),
    _host("stop an unknown instance", "server_action", {"instance": "bi-nowhere", "action": "stop"},
          r"Instance bi-nowhere could not be found"),
    _host("a negative shutdown timeout", "server_action", {"instance": TARGET, "action": "stop", "shutdown_timeout": -5},
          r"shutdown_timeout must be 0 or more seconds"),
    _host("an unknown action", "server_action", {"instance": TARGET, "action": "hibernate"},
          r"value of action must be one of: stop, start"),
    _host("another instance's domain name", "server_action",
          {"instance": TARGET, "name": "bootflow-%s" % NOWHERE, "action": "stop"}, r"is not the domain of instance"),
    _host("an instance by name without a token", "server_action", {"instance": TARGET, "action": "stop"},
          r"instance \(a name or UUID looked up in the database\) needs auth_token", token=None),
    _host("pause a domain that does not exist", "server_action", {"name": "bootflow-%s" % NOWHERE, "action": "pause"},
          r"domain bootflow-%s does not exist on this host" % NOWHERE, token=None),
    _host("console log as a reader", "console_log", {"instance": TARGET},
          r"Policy doesn't allow os_compute_api:os-console-output to be performed", token="reader"),
    _host("console log of another file", "console_log", {"instance": TARGET, "path": "/etc/shadow"},
          r"path /etc/shadow is not the console log of instance"),
    _host("console log with a negative length", "console_log", {"instance": TARGET, "length": -1},
          r"length must be 0 or more lines"),
]


@pytest.fixture(scope="module")
def bad_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-bad-input") as env:
        yield env


@pytest.fixture(scope="module")
def world(bad_env, tmp_path_factory):
    env = bad_env
    wdir = tmp_path_factory.mktemp("bad-input-world")
    w = {"dir": wdir}
    try:
        yield _make_world(env, w)
    finally:
        for name in (TARGET, "bi-pending", NAME):
            env.play("delete.yml", "-e", json.dumps({"bootflow_instance_name": name}))
        if "admin" in w:
            run_step(env, w, _ctl("teardown", "network", {"name": "bi-lonely", "state": "absent"}, ""))


def _make_world(env, w):
    wdir = w["dir"]
    env.play("boot.yml", "-e", "bootflow_instance_name=%s" % TARGET)
    env.play("hypervisors.yml")   # a fresh capacity report (heartbeat) for the direct schedule in the world playbook
    # the operator lets members register image files from the world's directory (member bi-bob's bi-twin)
    config = env.state_dir / "bootflow.yml"
    config.write_text("image:\n  upload_dir: %s\n" % wdir)
    config.chmod(0o600)
    env.play(WORLD_PLAYBOOK, "-e", "world_dir=%s" % wdir)
    w.update(json.loads((wdir / "world.json").read_text()))
    inst = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", TARGET)[0]
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    net = env.query("SELECT * FROM networks WHERE id=?", port["network_id"])[0]
    sub = env.query("SELECT * FROM subnets WHERE id=?", port["subnet_id"])[0]
    w.update(target=inst["uuid"], domain="bootflow-%s" % inst["uuid"],
             port=dict(port, bridge=net["bridge"], cidr=sub["cidr"], dhcp_ip=sub["dhcp_ip"], gateway_ip=sub["gateway_ip"]),
             volume=env.query("SELECT * FROM volumes WHERE instance_uuid=?", inst["uuid"])[0],
             admin_password=(env.state_dir / "admin-password").read_text().strip())
    # a network the pending instance is not on
    res = run_step(env, w, _ctl("setup", "network", {"name": "bi-lonely", "bridge": "br-lonely"}, ""))
    assert not res.get("failed"), res
    return w


def run_step(env, world, case):
    """One task of ``case.module`` on the controller or the host; returns its registered result."""
    args = case.build(world)
    if case.token:
        args["auth_token"] = world[case.token]
    play = [{
        "name": "bad input: %s" % case.id, "hosts": "localhost" if case.where == "localhost" else HOST,
        "gather_facts": False,
        "tasks": [
            {"name": case.id, "bootflow.cloud.%s" % case.module: args, "register": "r", "ignore_errors": True},
            {"name": "result", "ansible.builtin.debug": {"msg": "BFRESULT {{ r | to_json | b64encode }}"}},
        ],
    }]
    path = world["dir"] / "case.yml"
    path.write_text(yaml.safe_dump(play, width=10 ** 6))
    res = env.play(str(path), check=False)
    m = RESULT_RE.search(res.out)
    assert m, "%s: no result:\n%s" % (case.id, res.out[-4000:])
    return json.loads(base64.b64decode(m.group(1)))


def run_boot(env, world, case):
    extra = dict({"bootflow_instance_name": NAME, "bootflow_wait_for_lease": False}, **case.build(world))
    path = world["dir"] / "boot-vars.json"
    path.write_text(json.dumps(extra))
    res = env.play("boot.yml", "-e", "@%s" % path, check=False)
    failed = re.findall(r"^fatal: \[[^\]]+\]: FAILED! => (.*)$", res.out, re.M)
    return {"failed": res.rc != 0, "msg": "\n".join(failed) or res.out[-3000:], "out": res.out}


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_input_fails_clearly_and_changes_nothing(bad_env, world, case):
    before = bad_env.everything()
    res = run_boot(bad_env, world, case) if case.where == "boot" else run_step(bad_env, world, case)
    after = bad_env.everything()
    if case.where == "boot" and not res.get("failed"):   # not refused: do not leave it to the next case
        bad_env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME)
    msg = res.get("msg") or ""
    print("\nOBSERVED %s => %s" % (case.id, msg[:400].replace("\n", " ")))
    assert res.get("failed"), "%s: not refused: %s" % (case.id, json.dumps(res, default=str)[:3000])
    assert re.search(case.expect, msg, re.S), "%s: expected /%s/ in: %s" % (case.id, case.expect, msg[:3000])
    assert snapshot_diff(before, after) == [], case.id


# Nova accepts any display name without control characters, and so does nova-api here: the name is
# data, never code. The libvirt domain is named bootflow-<uuid>; the name only goes (escaped) into the
# domain's <title>; the guest's host name is derived from it Nova's way (a-z, 0-9, '-').
HOSTILE = ("bi-hostile <x>&amp;\"q\" 'a' $(touch /tmp/bf-pwn-1) `touch /tmp/bf-pwn-2`; touch /tmp/bf-pwn-3 "
           "| ../../etc/bf-pwn-4 \\ %s")


def test_hostile_name_is_inert(bad_env, world):
    """A name with XML specials, quotes, shell metacharacters and path separators is accepted and
    round-trips unchanged; nothing is injected: the domain XML is well-formed, no shell ran it, no
    path was made from it, and delete.yml removes everything again."""
    env = bad_env
    env.ssh("rm -f /tmp/bf-pwn-*")   # /tmp is shared by the controller and the test hosts
    before = env.everything()
    path = world["dir"] / "hostile.json"
    path.write_text(json.dumps({"bootflow_instance_name": HOSTILE, "bootflow_wait_for_lease": False}))
    res = env.play("boot.yml", "-e", "@%s" % path)
    try:
        rows = env.query("SELECT * FROM instances WHERE deleted=0 AND name=?", HOSTILE)
        assert len(rows) == 1, env.query("SELECT name FROM instances WHERE deleted=0")
        inst = rows[0]
        assert inst["vm_state"] == "active"
        assert "REQUEST FLOW [%s]" % HOSTILE in res.out
        xml = env.ssh("virsh -c qemu:///system dumpxml bootflow-%s" % inst["uuid"])
        dom = ET.fromstring(xml)   # well-formed
        assert dom.findtext("name") == "bootflow-%s" % inst["uuid"]
        assert dom.findtext("title") == HOSTILE
        assert env.ssh("virsh -c qemu:///system desc --title bootflow-%s" % inst["uuid"]).strip() == HOSTILE
        meta = env.ssh("isoinfo -R -i %s/%s/disk.config -x /meta-data" % ("/var/lib/bootflow/instances", inst["uuid"]))
        hostname = yaml.safe_load(meta)["local-hostname"]
        assert re.match(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", hostname), hostname
        assert env.ssh("ls /tmp/bf-pwn-* 2>/dev/null || true").strip() == ""   # no shell ran any part of it
        made = {p.split(" ", 3)[3] for p in set(env.full_host_snapshot()["paths"]) - set(before["host"]["paths"])}
        ours = re.compile(r"^(instances/(%s|_base)(/[a-z.]+|/[0-9a-f]{40}(\.info)?)?|volumes/volume-[0-9a-f-]{36}"
                          r"|dhcp/[0-9a-f-]{36}/(host|ports|leases))$" % inst["uuid"])
        assert made and all(ours.match(p) for p in made), made   # no path was made from the name
        print("\nOBSERVED hostile name accepted: title round-trips, host name %r, no file /tmp/bf-pwn-*" % hostname)
    finally:
        env.play("delete.yml", "-e", "@%s" % path)
    after = env.everything()
    assert env.query("SELECT name FROM instances WHERE deleted=0 AND name=?", HOSTILE) == []
    # the deleted instance's record and step rows stay (soft delete, as in Nova); nothing else changed
    # (the boot used the cached base image, which may mark it used: its mtime is not compared here)
    assert snapshot_diff(dict(before["host"], **{"image cache": None}), dict(after["host"], **{"image cache": None})) == []
    assert after["db"]["ports"] == before["db"]["ports"] and after["db"]["allocations"] == before["db"]["allocations"]
