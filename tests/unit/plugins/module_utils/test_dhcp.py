# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import dhcp as dh

NET = "5a1c0d9e-2b3f-4c5d-8e9f-0a1b2c3d4e5f"
PORT = "2f1d3c4b-5a6e-4f70-8a9b-0c1d2e3f4a5b"
PORT2 = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"


# ---- file formats


def test_hosts_render_parse_round_trip():
    entries = [
        dict(mac="52:54:00:00:01:11", hostname="host-10-99-1-11", ip="10.99.1.11", port_id=PORT, tags=[]),
        dict(mac="52:54:00:00:01:12", hostname="web-1", ip="10.99.1.12", port_id=None, tags=[]),
        dict(mac="52:54:00:00:01:13", hostname=None, ip="10.99.1.13"),
    ]
    text = dh.render_hosts(entries)
    # no set:port-<id> tag: dnsmasq 2.90 crashes on SIGHUP for a tagged line with an active lease
    assert text == ("52:54:00:00:01:11,host-10-99-1-11,10.99.1.11\n"
                    "52:54:00:00:01:12,web-1,10.99.1.12\n"
                    "52:54:00:00:01:13,10.99.1.13\n")
    parsed = dh.parse_hosts(text)
    assert [(e["mac"], e["hostname"], e["ip"]) for e in parsed] == [
        ("52:54:00:00:01:11", "host-10-99-1-11", "10.99.1.11"),
        ("52:54:00:00:01:12", "web-1", "10.99.1.12"),
        ("52:54:00:00:01:13", None, "10.99.1.13")]
    assert dh.render_hosts(parsed) == text


def test_ports_file_round_trip():
    ports = {PORT: dict(mac="52:54:00:00:01:11", ip="10.99.1.11"), PORT2: dict(mac="52:54:00:00:01:12", ip="10.99.1.12")}
    assert dh.parse_ports(dh.render_ports(ports)) == ports
    assert dh.parse_ports(None) == {}


def test_parse_hosts_tolerates_neutron_order_comments_and_junk():
    text = ("# comment\n\n52:54:00:AA:BB:CC,set:port-%s,10.0.0.5,host-10-0-0-5.openstacklocal\n"
            "something,odd\n" % PORT)
    parsed = dh.parse_hosts(text)
    assert parsed[0]["mac"] == "52:54:00:aa:bb:cc" and parsed[0]["ip"] == "10.0.0.5"
    assert parsed[0]["hostname"] == "host-10-0-0-5.openstacklocal" and parsed[0]["port_id"] == PORT
    assert parsed[1] == {"raw": "something,odd"}
    assert dh.render_hosts(parsed).splitlines() == ["52:54:00:aa:bb:cc,host-10-0-0-5.openstacklocal,10.0.0.5",
                                                    "something,odd"]  # a neutron-style tag is dropped


def test_parse_leases():
    text = ("1795391513 52:54:00:00:01:11 10.99.1.11 host-10-99-1-11 01:52:54:00:00:01:11\n"
            "1795391600 52:54:00:00:01:12 10.99.1.12 * *\n"
            "duid 00:01:00:01:2c:aa\n"
            "garbage\n")
    leases = dh.parse_leases(text)
    assert leases == [
        dict(expiry=1795391513, mac="52:54:00:00:01:11", ip="10.99.1.11", hostname="host-10-99-1-11",
             client_id="01:52:54:00:00:01:11"),
        dict(expiry=1795391600, mac="52:54:00:00:01:12", ip="10.99.1.12", hostname=None, client_id=None)]
    assert dh.parse_leases(dh.render_leases(leases)) == leases


def test_seed_leases_adds_missing_only():
    hosts = dh.parse_hosts("52:54:00:00:01:11,h1,10.99.1.11\n52:54:00:00:01:12,h2,10.99.1.12\n")
    old = "1795391513 52:54:00:00:01:11 10.99.1.11 h1 01:52:54:00:00:01:11\n"
    seeded = dh.parse_leases(dh.seed_leases(hosts, old, 600, now=1000))
    assert seeded[0]["client_id"] == "01:52:54:00:00:01:11"  # kept as dnsmasq wrote it
    assert seeded[1] == dict(expiry=1600, mac="52:54:00:00:01:12", ip="10.99.1.12", hostname="h2", client_id=None)


def test_seed_leases_skips_the_new_reservation():
    hosts = dh.parse_hosts("52:54:00:00:01:11,h1,10.99.1.11\n52:54:00:00:01:12,h2,10.99.1.12\n")
    seeded = dh.parse_leases(dh.seed_leases(hosts, "", 600, now=1000, skip=[("52:54:00:00:01:12", "10.99.1.12")]))
    assert [(le["mac"], le["ip"]) for le in seeded] == [("52:54:00:00:01:11", "10.99.1.11")]


def test_find_active_lease():
    text = ("2000 52:54:00:00:01:11 10.99.1.11 * 01:52:54:00:00:01:11\n"
            "500 52:54:00:00:01:12 10.99.1.12 * *\n"
            "0 52:54:00:00:01:13 10.99.1.13 * *\n")
    assert dh.find_active_lease(text, "52:54:00:00:01:11", "10.99.1.11", now=1000)["client_id"] == "01:52:54:00:00:01:11"
    assert dh.find_active_lease(text, "52:54:00:00:01:11", "10.99.1.99", now=1000) is None   # another address
    assert dh.find_active_lease(text, "52:54:00:00:01:11", now=1000)["ip"] == "10.99.1.11"
    assert dh.find_active_lease(text, "52:54:00:00:01:12", "10.99.1.12", now=1000) is None    # expired
    assert dh.find_active_lease(text, "52:54:00:00:01:13", "10.99.1.13", now=10 ** 9)["expiry"] == 0  # infinite
    assert dh.find_active_lease(None, "52:54:00:00:01:11") is None


def test_render_opts():
    assert dh.render_opts(NET, "10.99.1.1", ["10.99.1.1", "9.9.9.9"]) == (
        "tag:subnet-%s,option:router,10.99.1.1\n"
        "tag:subnet-%s,option:dns-server,10.99.1.1,9.9.9.9\n" % (NET, NET))
    assert dh.render_opts(NET) == "tag:subnet-%s,option:router\n" % NET


def test_atomic_write(tmp_path):
    p = str(tmp_path / "host")
    dh.atomic_write(p, "a\n")
    dh.atomic_write(p, "b\n", mode=0o640)
    assert open(p).read() == "b\n" and os.stat(p).st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["host"]


def test_atomic_write_leaves_no_tmp_on_error(tmp_path, monkeypatch):
    p = str(tmp_path / "host")
    dh.atomic_write(p, "old\n")

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(dh.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        dh.atomic_write(p, "new\n")
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["host"] and open(p).read() == "old\n"


def test_dnsmasq_cmdline_mirrors_neutron():
    argv = dh.dnsmasq_cmdline(NET, "br-test", "10.99.1.0/24", "/var/lib/bootflow/dhcp", 86400, "/usr/sbin/dnsmasq")
    d = "/var/lib/bootflow/dhcp/" + NET
    assert argv[0] == "/usr/sbin/dnsmasq"
    for arg in ("--no-hosts", "--no-resolv", "--port=0", "--interface=br-test", "--bind-interfaces",
                "--except-interface=lo", "--dhcp-range=set:subnet-%s,10.99.1.0,static,255.255.255.0,86400s" % NET,
                "--dhcp-hostsfile=%s/host" % d, "--dhcp-optsfile=%s/opts" % d, "--dhcp-leasefile=%s/leases" % d,
                "--pid-file=%s/pid" % d, "--dhcp-no-override", "--dhcp-authoritative", "--log-dhcp",
                "--log-facility=%s/dnsmasq.log" % d, "--dhcp-lease-max=256", "--conf-file=/dev/null"):
        assert arg in argv
    with pytest.raises(dh.DhcpError, match="IPv4"):
        dh.dnsmasq_cmdline(NET, "br-test", "fd00::/64", "/x", 60)


def test_pid_alive_checks_the_command_line(tmp_path):
    pidfile = str(tmp_path / "pid")
    assert dh.pid_alive(pidfile, "x") is None  # no file
    with open(pidfile, "w") as f:
        f.write("%d\n" % os.getpid())
    me = " ".join(dh.proc_cmdline(os.getpid()))
    assert dh.pid_alive(pidfile, me.split()[0]) == os.getpid()
    assert dh.pid_alive(pidfile, "/var/lib/bootflow/dhcp/" + NET) is None  # a recycled PID is not trusted
    with open(pidfile, "w") as f:
        f.write("garbage")
    assert dh.pid_alive(pidfile, "x") is None
    with open(pidfile, "w") as f:
        f.write("999999999")
    assert dh.pid_alive(pidfile, "x") is None


def test_ip_output_parsers():
    out = ("5: br-test    inet 10.99.1.2/24 brd 10.99.1.255 scope global br-test\\       valid_lft forever\n"
           "5: br-test    inet 10.99.1.1/24 scope global secondary br-test\n")
    assert dh.parse_ip_addrs(out) == ["10.99.1.2/24", "10.99.1.1/24"]
    assert "UP" in dh.link_flags("5: br-test: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN")
    assert "UP" not in dh.link_flags("5: br-test: <BROADCAST,MULTICAST> mtu 1500 state DOWN")


# ---- the step, with a fake `ip` and a fake dnsmasq

FAKE_DNSMASQ = r'''#!%s
import os, signal, sys, time
args = sys.argv[1:]
pidfile = [a.split("=", 1)[1] for a in args if a.startswith("--pid-file=")][0]
if "--fail" in open(os.path.join(os.path.dirname(pidfile), "..", "..", "mode")).read():
    sys.stderr.write("dnsmasq: failed to create listening socket: Address in use\n")
    sys.exit(2)
if os.fork():
    sys.exit(0)
os.setsid()
hup = pidfile + ".hup"
signal.signal(signal.SIGHUP, lambda *a: open(hup, "a").write("x"))
with open(pidfile, "w") as f:
    f.write("%%d\n" %% os.getpid())
for _ in range(600):
    time.sleep(0.1)
''' % sys.executable


class FakeIp:
    def __init__(self, exists=True, addrs=()):
        self.exists = exists
        self.addrs = list(addrs)
        self.calls = []

    def __call__(self, argv):
        self.calls.append(argv[1:])
        if argv[1:3] == ["-o", "link"]:
            if not self.exists:
                return 1, "", 'Device "%s" does not exist.' % argv[-1]
            return 0, "5: %s: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n" % argv[-1], ""
        if argv[1:4] == ["-o", "-4", "addr"]:
            return 0, "".join("5: br    inet %s scope global br\n" % a for a in self.addrs), ""
        if argv[1:3] == ["addr", "replace"]:
            self.addrs.append(argv[3])
            return 0, "", ""
        if argv[1:3] == ["addr", "del"]:
            self.addrs.remove(argv[3])
            return 0, "", ""
        if os.path.basename(argv[0]) == "dhcp_release":
            return 0, "", ""
        return 1, "", "unexpected %r" % argv


@pytest.fixture
def env(tmp_path, monkeypatch):
    fake = tmp_path / "dnsmasq"
    fake.write_text(FAKE_DNSMASQ)
    fake.chmod(0o755)
    (tmp_path / "mode").write_text("ok")
    bins = {"dnsmasq": str(fake), "ip": "/sbin/ip", "dhcp_release": "/usr/bin/dhcp_release"}
    monkeypatch.setattr(dh, "find_bin", bins.get)
    dhcp_dir = tmp_path / "dhcp"
    yield dict(tmp=tmp_path, dhcp_dir=str(dhcp_dir), conf=dh.conf_paths(str(dhcp_dir), NET))
    # stop the fake dnsmasq this test started (by its pid)
    pid = dh.pid_alive(str(dhcp_dir / NET / "pid"), str(dhcp_dir / NET))
    if pid:
        os.kill(pid, signal.SIGTERM)


def lease_params(env, **kw):
    p = dict(network_id=NET, bridge="br-test", cidr="10.99.1.0/24", dhcp_ip="10.99.1.2", gateway_ip="10.99.1.1",
             dns_servers=["10.99.1.1"], mac="52:54:00:00:01:11", ip="10.99.1.11", hostname=None, port_id=PORT,
             lease_time=86400, dhcp_dir=env["dhcp_dir"], state="present")
    p.update(kw)
    return p


def wait_for(fn, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


def guest_gets_lease(env, mac="52:54:00:00:01:11", ip="10.99.1.11", expiry=None):
    """What dnsmasq writes when the guest's DHCPREQUEST is acknowledged (the fake dnsmasq cannot)."""
    expiry = int(time.time()) + 86400 if expiry is None else expiry
    with open(env["conf"]["leases"], "a") as f:
        f.write("%d %s %s * 01:%s\n" % (expiry, mac, ip, mac))


def test_present_starts_then_is_idempotent_then_reloads(env):
    ip = FakeIp()
    p = lease_params(env)
    r = dh.dhcp_lease_step(p, check_mode=True, run=ip)
    assert r["changed"] and r["dnsmasq_started"] and not os.path.exists(env["conf"]["dir"])
    assert not [c for c in ip.calls if c[:2] == ["addr", "replace"]]

    r = dh.dhcp_lease_step(p, run=ip, now=1000)
    assert r["changed"] and r["dnsmasq_started"] and r["dnsmasq_pid"]
    assert r["hosts_line"] == "52:54:00:00:01:11,host-10-99-1-11,10.99.1.11"
    assert open(env["conf"]["host"]).read() == r["hosts_line"] + "\n"
    assert dh.parse_ports(open(env["conf"]["ports"]).read()) == {PORT: dict(mac="52:54:00:00:01:11", ip="10.99.1.11")}
    assert "option:router,10.99.1.1" in open(env["conf"]["opts"]).read()
    assert open(env["conf"]["interface"]).read() == "br-test\n"
    assert ["addr", "replace", "10.99.1.2/24", "dev", "br-test"] in ip.calls
    # a reservation this call adds is not pre-seeded: its guest has not asked yet (state=leased waits for it)
    assert r["lease"] is None and (dh.read_text(env["conf"]["leases"]) or "") == ""
    pid = r["dnsmasq_pid"]

    again = dh.dhcp_lease_step(p, run=ip)
    assert not again["changed"] and again["dnsmasq_pid"] == pid and not again["reloaded"]

    second = dh.dhcp_lease_step(lease_params(env, mac="52:54:00:00:01:12", ip="10.99.1.12", port_id=PORT2,
                                             hostname="web-2"), run=ip)
    assert second["changed"] and second["reloaded"] and not second["dnsmasq_started"]
    assert second["dnsmasq_pid"] == pid
    assert wait_for(lambda: os.path.exists(env["conf"]["pid"] + ".hup"))
    assert len(dh.parse_hosts(open(env["conf"]["host"]).read())) == 2
    diff = second["diff"][0]
    assert diff["before"].count("\n") == 1 and diff["after"].count("\n") == 2

    # the same port gets a new IP: its line is replaced in place
    moved = dh.dhcp_lease_step(lease_params(env, ip="10.99.1.21"), run=ip)
    assert moved["changed"]
    lines = open(env["conf"]["host"]).read().splitlines()
    assert lines[0] == "52:54:00:00:01:11,host-10-99-1-21,10.99.1.21" and len(lines) == 2

    # the port's MAC changes: still its line, replaced
    dh.dhcp_lease_step(lease_params(env, mac="52:54:00:00:01:31", ip="10.99.1.21"), run=ip)
    lines = open(env["conf"]["host"]).read().splitlines()
    assert lines[0] == "52:54:00:00:01:31,host-10-99-1-21,10.99.1.21" and len(lines) == 2


def test_conflicts_are_refused(env):
    ip = FakeIp()
    dh.dhcp_lease_step(lease_params(env), run=ip)
    with pytest.raises(dh.DhcpError, match="ip 10.99.1.11 is already reserved for port %s" % PORT):
        dh.dhcp_lease_step(lease_params(env, mac="52:54:00:00:01:99", port_id=PORT2), run=ip, check_mode=True)
    with pytest.raises(dh.DhcpError, match="MAC 52:54:00:00:01:11 is already reserved for port %s" % PORT):
        dh.dhcp_lease_step(lease_params(env, ip="10.99.1.50", port_id=PORT2), run=ip)
    with pytest.raises(dh.DhcpError, match="ip 10.99.1.11 is already reserved for port %s" % PORT):
        dh.dhcp_lease_step(lease_params(env, mac="52:54:00:00:01:99", port_id=None), run=ip)
    assert len(open(env["conf"]["host"]).read().splitlines()) == 1


def test_cmdline_change_restarts(env):
    ip = FakeIp()
    r1 = dh.dhcp_lease_step(lease_params(env), run=ip)
    r2 = dh.dhcp_lease_step(lease_params(env, lease_time=3600), run=ip)
    assert r2["changed"] and r2["dnsmasq_restarted"] and r2["dnsmasq_started"]
    assert r2["dnsmasq_pid"] != r1["dnsmasq_pid"]
    assert dh.proc_cmdline(r1["dnsmasq_pid"]) is None
    assert "--dhcp-range=set:subnet-%s,10.99.1.0,static,255.255.255.0,3600s" % NET in dh.proc_cmdline(r2["dnsmasq_pid"])


def test_missing_bridge_fails_before_acting(env):
    with pytest.raises(dh.DhcpError, match="bridge br-test does not exist"):
        dh.dhcp_lease_step(lease_params(env), run=FakeIp(exists=False))
    assert not os.path.exists(env["conf"]["dir"])


def test_failed_start_is_rolled_back(env):
    (env["tmp"] / "mode").write_text("--fail")
    ip = FakeIp()
    with pytest.raises(dh.DhcpError, match="failed to start .*Address in use"):
        dh.dhcp_lease_step(lease_params(env), run=ip)
    assert not os.path.exists(env["conf"]["dir"])  # files and the directory removed again
    assert ip.addrs == []                           # the DHCP address taken off the bridge


@pytest.mark.parametrize("kw, msg", [
    (dict(ip="10.99.2.5"), "not in"),
    (dict(ip="10.99.1.255"), "broadcast"),
    (dict(ip="10.99.1.2"), "DHCP server"),
    (dict(mac="nope"), "MAC"),
    (dict(hostname="bad,name"), "hostname"),
    (dict(network_id="../etc"), "network_id"),
    (dict(port_id="a,b"), "port_id"),
    (dict(bridge="br0; rm -rf"), "bridge"),
    (dict(cidr="10.99.1.0/31"), "too small"),
    (dict(lease_time=10), "120"),
    (dict(lease_time=2 ** 31), "at most 2147483647"),
    (dict(dns_servers=["x"]), "dns"),
])
def test_input_validation(env, kw, msg):
    with pytest.raises(BootflowError, match=msg):   # DhcpError, or InvalidRequest for a bad MAC
        dh.dhcp_lease_step(lease_params(env, **kw), run=FakeIp(), check_mode=True)


def test_absent_with_dnsmasq_stopped_edits_files(env):
    ip = FakeIp()
    r = dh.dhcp_lease_step(lease_params(env), run=ip)
    guest_gets_lease(env)
    os.kill(r["dnsmasq_pid"], signal.SIGTERM)
    assert wait_for(lambda: dh.pid_alive(env["conf"]["pid"], env["conf"]["dir"]) is None)
    p = lease_params(env, state="absent", bridge=None, cidr=None, dhcp_ip=None, mac=None, ip=None)  # by port id
    chk = dh.dhcp_lease_step(p, check_mode=True, run=ip)
    assert chk["changed"] and chk["lease"]["ip"] == "10.99.1.11"
    gone = dh.dhcp_lease_step(p, run=ip)
    assert gone["changed"] and gone["hosts_line"].startswith("52:54:00:00:01:11,")
    assert open(env["conf"]["host"]).read() == "" and open(env["conf"]["leases"]).read() == ""
    assert open(env["conf"]["ports"]).read() == ""
    assert not dh.dhcp_lease_step(p, run=ip)["changed"]


def test_absent_with_dnsmasq_running_releases(env, monkeypatch):
    monkeypatch.setattr(dh, "RELEASE_WAIT", 0.2)
    ip = FakeIp()
    r = dh.dhcp_lease_step(lease_params(env), run=ip)
    guest_gets_lease(env)
    gone = dh.dhcp_lease_step(lease_params(env, state="absent"), run=ip)
    assert gone["changed"] and gone["reloaded"] and gone["dnsmasq_pid"] == r["dnsmasq_pid"]
    # the client id the guest used goes along (dnsmasq only releases a lease whose client id matches)
    assert [c for c in ip.calls if c[:1] == ["br-test"]] == [["br-test", "10.99.1.11", "52:54:00:00:01:11",
                                                              "01:52:54:00:00:01:11"]]
    # the fake dnsmasq does not drop the lease: the module warns instead of touching the file
    assert gone["warnings"] and "10.99.1.11" in open(env["conf"]["leases"]).read()
    assert open(env["conf"]["host"]).read() == ""


def test_restart_after_a_kill_seeds_the_running_guests_only(env):
    """dnsmasq killed between two boots: the next reservation starts it again with the leases of the
    existing reservations (their guests keep their addresses), but not one for the new reservation."""
    ip = FakeIp()
    r1 = dh.dhcp_lease_step(lease_params(env), run=ip)
    os.kill(r1["dnsmasq_pid"], signal.SIGKILL)
    assert wait_for(lambda: dh.pid_alive(env["conf"]["pid"], env["conf"]["dir"]) is None)
    r2 = dh.dhcp_lease_step(lease_params(env, mac="52:54:00:00:01:12", ip="10.99.1.12", port_id=PORT2), run=ip,
                            now=1000)
    assert r2["changed"] and r2["dnsmasq_started"] and r2["dnsmasq_pid"] != r1["dnsmasq_pid"]
    leases = dh.parse_leases(open(env["conf"]["leases"]).read())
    assert [(le["mac"], le["ip"], le["expiry"]) for le in leases] == [("52:54:00:00:01:11", "10.99.1.11", 1000 + 86400)]
    assert r2["lease"] is None
    # a lease dnsmasq wrote is kept as it is (client id and all)
    guest_gets_lease(env, "52:54:00:00:01:12", "10.99.1.12", expiry=5000)
    os.kill(r2["dnsmasq_pid"], signal.SIGKILL)
    assert wait_for(lambda: dh.pid_alive(env["conf"]["pid"], env["conf"]["dir"]) is None)
    r3 = dh.dhcp_lease_step(lease_params(env), run=ip, now=2000)
    assert r3["dnsmasq_started"] and r3["changed"]
    leases = dh.parse_leases(open(env["conf"]["leases"]).read())
    assert leases[1] == dict(expiry=5000, mac="52:54:00:00:01:12", ip="10.99.1.12", hostname=None,
                             client_id="01:52:54:00:00:01:12")
    assert len(leases) == 2


# ---- state=leased


def leased_params(env, **kw):
    p = dict(network_id=NET, mac="52:54:00:00:01:11", ip="10.99.1.11", port_id=PORT, dhcp_dir=env["dhcp_dir"],
             state="leased", wait=True, wait_timeout=5)
    p.update(kw)
    return p


def test_leased_waits_until_the_guest_holds_its_lease(env):
    dh.dhcp_lease_step(lease_params(env), run=FakeIp())
    looks = []

    def sleep(_s):
        looks.append(1)
        if len(looks) == 3:
            guest_gets_lease(env)

    r = dh.dhcp_lease_step(leased_params(env), run=FakeIp(), sleep=sleep)
    assert r["leased"] and r["leased_ip"] == "10.99.1.11" and not r["changed"]
    assert r["lease"]["client_id"] == "01:52:54:00:00:01:11" and len(looks) == 3
    assert r["reserved"] and r["dnsmasq_pid"] and r["diagnosis"] == []


def test_leased_finds_mac_and_ip_by_port_id(env):
    dh.dhcp_lease_step(lease_params(env), run=FakeIp())
    guest_gets_lease(env)
    r = dh.dhcp_lease_step(leased_params(env, mac=None, ip=None), run=FakeIp())
    assert r["leased"] and (r["mac"], r["ip"], r["leased_ip"]) == ("52:54:00:00:01:11", "10.99.1.11", "10.99.1.11")
    with pytest.raises(dh.DhcpError, match="give mac"):
        dh.dhcp_lease_step(leased_params(env, mac=None, ip=None, port_id=PORT2), run=FakeIp())


def test_leased_times_out_with_what_it_saw(env, monkeypatch):
    monkeypatch.setattr(dh, "LEASE_POLL", 0.01)
    dh.dhcp_lease_step(lease_params(env), run=FakeIp())
    with open(env["conf"]["log"], "w") as f:
        f.write("dnsmasq-dhcp[7]: DHCPDISCOVER(br-test) 52:54:00:00:01:11 no address available\n")
    guest_gets_lease(env, ip="10.99.1.77")   # an address that is not the port's
    t0 = time.monotonic()
    with pytest.raises(dh.DhcpError) as e:
        dh.dhcp_lease_step(leased_params(env, wait_timeout=1), run=FakeIp())
    assert 1 <= time.monotonic() - t0 < 3
    msg = str(e.value)
    assert msg.startswith("no DHCP lease for 52:54:00:00:01:11 (10.99.1.11) in %s after 1 s" % env["conf"]["leases"])
    assert "gives MAC 52:54:00:00:01:11 the address 10.99.1.77 instead" in msg
    assert "no address available" in msg
    # wait=false looks once and reports, without failing
    r = dh.dhcp_lease_step(leased_params(env, wait=False), run=FakeIp())
    assert not r["leased"] and not r["hopeless"] and r["reserved"] and r["diagnosis"]
    # check mode never waits
    r = dh.dhcp_lease_step(leased_params(env, wait_timeout=60), run=FakeIp(), check_mode=True)
    assert not r["leased"] and r["waited"] < 1


def test_leased_fails_at_once_when_nobody_can_answer(env):
    # no reservation (and no dnsmasq): waiting would be pointless
    t0 = time.monotonic()
    with pytest.raises(dh.DhcpError, match="cannot get a DHCP lease.*has no reservation.*is not running"):
        dh.dhcp_lease_step(leased_params(env, wait_timeout=30), run=FakeIp())
    r = dh.dhcp_lease_step(lease_params(env), run=FakeIp())
    os.kill(r["dnsmasq_pid"], signal.SIGKILL)
    assert wait_for(lambda: dh.pid_alive(env["conf"]["pid"], env["conf"]["dir"]) is None)
    with pytest.raises(dh.DhcpError, match="dnsmasq for network %s is not running" % NET):
        dh.dhcp_lease_step(leased_params(env, wait_timeout=30), run=FakeIp())
    assert time.monotonic() - t0 < 10
    # an expired lease is no lease
    guest_gets_lease(env, expiry=int(time.time()) - 5)
    r = dh.dhcp_lease_step(leased_params(env, wait=False), run=FakeIp())
    assert not r["leased"] and r["hopeless"] and any("expired" in d for d in r["diagnosis"])
    # a lease in the file while dnsmasq is down is reported, with a warning
    guest_gets_lease(env)
    r = dh.dhcp_lease_step(leased_params(env), run=FakeIp())
    assert r["leased"] and r["warnings"] and "not running" in r["warnings"][0]


@pytest.mark.parametrize("kw, msg", [
    (dict(ip="nope"), "not an IP"),
    (dict(wait_timeout=-1), "negative"),
    (dict(mac="zz"), "MAC"),
])
def test_leased_input_validation(env, kw, msg):
    with pytest.raises(BootflowError, match=msg):   # DhcpError, or InvalidRequest for a bad MAC
        dh.dhcp_lease_step(leased_params(env, **kw), run=FakeIp())


# --- issue 16, finding 9: a newline never reaches dnsmasq's hosts file --------------------------------------

@pytest.mark.parametrize("check,value", [
    (dh.check_hostname, "vm1\n"), (dh.check_hostname, "vm1\nfa:16:3e:00:00:01,10.0.0.99"),
    (dh.check_hostname, "vm1\u202e"), (dh.check_network_id, NET + "\n"), (dh.check_port_id, PORT + "\n"),
    (dh.check_ifname, "br-test\n"),
])
def test_validators_refuse_a_trailing_newline(check, value):
    with pytest.raises(dh.DhcpError, match="invalid"):
        check(value)
    check(value.split("\n")[0].split("\u202e")[0])   # the same without it is fine


@pytest.mark.parametrize("entry", [
    dict(mac="52:54:00:00:01:11", hostname="vm1\nfa:16:3e:00:00:01", ip="10.0.0.99"),
    dict(mac="52:54:00:00:01:11", hostname="vm1,10.0.0.98", ip="10.0.0.99"),
    dict(mac="52:54:00:00:01:11\n", hostname="vm1", ip="10.0.0.99"),
    dict(mac="52:54:00:00:01:11", hostname="vm1\x85", ip="10.0.0.99"),
    dict(raw="52:54:00:00:01:11,vm1,10.0.0.99\nfa:16:3e:00:00:01,10.0.0.98"),
])
def test_the_hosts_line_writer_refuses_a_field_that_splits_or_extends_the_line(entry):
    with pytest.raises(dh.DhcpError, match="refusing to write"):
        dh.render_hosts([entry])


@pytest.mark.parametrize("hostname", ["vm1\n", "vm1\nfa:16:3e:00:00:01,10.0.0.99"])
def test_a_reservation_with_a_newline_in_its_hostname_writes_nothing(env, hostname):
    ip = FakeIp()
    with pytest.raises(dh.DhcpError, match="invalid hostname"):
        dh.dhcp_lease_step(lease_params(env, hostname=hostname), run=ip)
    assert not os.path.exists(env["conf"]["host"]) and not os.path.exists(env["conf"]["ports"])
    assert not [c for c in ip.calls if c[:2] == ["addr", "replace"]]


# the lease wait's look on the host (lease_watch_cmd), run by a real sh against a real leases file

def _watch(leases, mac, seen=None, seconds=0.0):
    import subprocess
    out = subprocess.run(["sh", "-c", dh.lease_watch_cmd(mac, str(leases), seen, seconds)],
                         capture_output=True, text=True, check=True).stdout
    return dh.parse_lease_watch(out)


def test_lease_watch_first_look_prints_the_clock_and_the_mac_lines(tmp_path):
    leases = tmp_path / "leases"
    mac = "fa:16:3e:00:00:01"
    clock, seen = _watch(leases, mac)          # no file yet
    assert seen == "" and abs(clock - time.time()) < 5
    leases.write_text("0 fa:16:3e:00:00:02 10.0.0.9 b *\n1 FA:16:3E:00:00:01 10.0.0.5 it's;$(x) *\n"
                      "0 fa:16:3e:00:00:01 10.0.0.6 a *\n")
    clock, seen = _watch(leases, mac)
    assert seen == "1 FA:16:3E:00:00:01 10.0.0.5 it's;$(x) *\n0 fa:16:3e:00:00:01 10.0.0.6 a *"
    assert dh.find_active_lease(seen, mac, "10.0.0.6", now=clock)["ip"] == "10.0.0.6"


def test_lease_watch_returns_when_the_mac_lines_change(tmp_path):
    import subprocess
    leases = tmp_path / "leases"
    mac = "fa:16:3e:00:00:01"
    old = "5 fa:16:3e:00:00:01 10.0.0.5 old *"

    def write(text):   # at once: a reader must not catch the file empty between truncate and write
        (tmp_path / "leases.tmp").write_text(text)
        os.replace(tmp_path / "leases.tmp", leases)

    write(old + "\n")
    proc = subprocess.Popen(["sh", "-c", dh.lease_watch_cmd(mac, str(leases), old, 600)],
                            stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        assert proc.poll() is None, "the watch must wait while the MAC's lines are what was seen"
        write("0 fa:16:3e:00:00:09 10.0.0.7 other *\n" + old + "\n")   # another MAC: still waiting
        time.sleep(0.3)
        assert proc.poll() is None
        new = "%d fa:16:3e:00:00:01 10.0.0.5 new *" % (time.time() + 600)
        write(new + "\n")
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    clock, seen = dh.parse_lease_watch(out)
    assert seen == new
    assert dh.find_active_lease(seen, mac, now=clock)["hostname"] == "new"


def test_lease_watch_gives_up_after_its_slice(tmp_path):
    leases = tmp_path / "leases"
    clock, seen = _watch(leases, "fa:16:3e:00:00:01", seen="", seconds=0.2)
    assert seen == ""
    with pytest.raises(ValueError):
        dh.parse_lease_watch("not a clock\n")
