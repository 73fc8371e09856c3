# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Neutron-style DHCP with one dnsmasq per network (pure logic + stdlib I/O).

PRIVATE to the collection: may change at any time.

Per network, in <dhcp_dir>/<network_id>/ (like neutron's dhcp agent, neutron/agent/linux/dhcp.py):
  host       dnsmasq --dhcp-hostsfile, lines "mac,hostname,ip"
  ports      which port owns which reservation: lines "<port_id> <mac> <ip>" (ours, not dnsmasq's)
  opts       dnsmasq --dhcp-optsfile, "tag:subnet-<id>,option:router,<gw>" / dns-server
  leases     dnsmasq --dhcp-leasefile (seeded before a start so running guests are not NAKed)
  pid        dnsmasq --pid-file
  interface  the bridge dnsmasq serves
  dnsmasq.log

Files are replaced atomically; dnsmasq re-reads host and opts on SIGHUP. Imports neither ansible
nor libvirt.

No "set:port-<id>" tag in the hosts lines (neutron writes one): dnsmasq 2.90 (Debian 12) dies with a
general protection fault on SIGHUP when a hosts line carrying a set: tag has an active lease
(reproduced here with busybox udhcpc). The port is recorded in the "ports" file instead.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time

from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import DHCP_DIR
from ansible_collections.bootflow.cloud.plugins.module_utils.common.files import (
    atomic_write_text,
    file_lock,
    find_bin,
    makedirs,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import (
    MAC_RE,
    describe_char,
    forbidden_char,
    normalize_mac,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError

_NET_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_PORT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
RELEASE_WAIT = 2.0  # seconds to wait for dnsmasq to drop a released lease from its file
LEASE_POLL = 0.05   # seconds between two looks at the leases file on the host (state=leased)
MAX_LEASE_TIME = 2 ** 31 - 1   # dnsmasq parses the lease time with atoi()


class DhcpError(BootflowError):
    """DHCP step failure."""


# --------------------------------------------------------------------------------------------
# validation


def check_network_id(value):
    if not value or not _NET_ID_RE.fullmatch(value) or value in (".", ".."):
        raise DhcpError("invalid network_id %r (letters, digits, _ . -)" % (value,))
    return value


def check_port_id(value):
    if value is None:
        return None
    if not _PORT_ID_RE.fullmatch(value):
        raise DhcpError("invalid port_id %r (letters, digits, _ -)" % (value,))
    return value


def check_ifname(value, what="bridge"):
    if not value or not _IFNAME_RE.fullmatch(value):
        raise DhcpError("invalid %s name %r (at most 15 of letters, digits, _ . -)" % (what, value))
    return value


def check_hostname(name):
    if not name or len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise DhcpError("invalid hostname %s (DNS labels of letters, digits and '-')" % (ascii(name),))
    return name


def default_hostname(ip):
    """neutron's host-<ip with dashes>."""
    return "host-" + str(ip).replace(".", "-").replace(":", "-")


def network(cidr):
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise DhcpError("invalid cidr %r: %s" % (cidr, e))
    if net.version != 4:
        raise DhcpError("only IPv4 subnets are supported (cidr %s)" % cidr)
    if net.prefixlen > 30:
        raise DhcpError("cidr %s is too small for DHCP" % cidr)
    return net


def host_ip(value, net, what):
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        raise DhcpError("%s %r is not an IP address" % (what, value))
    if ip not in net:
        raise DhcpError("%s %s is not in %s" % (what, ip, net))
    if ip in (net.network_address, net.broadcast_address):
        raise DhcpError("%s %s is the network or broadcast address of %s" % (what, ip, net))
    return str(ip)


# --------------------------------------------------------------------------------------------
# file formats


def parse_hosts(text):
    """Entries of a dnsmasq hostsfile: dicts mac, hostname, ip, port_id, tags (raw=line if unknown)."""
    out = []
    for line in (text or "").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        fields = [f.strip() for f in s.split(",")]
        e = dict(mac=None, hostname=None, ip=None, port_id=None, tags=[])
        for f in fields:
            low = f.lower()
            if MAC_RE.fullmatch(low) and e["mac"] is None:
                e["mac"] = low
            elif low.startswith("set:"):
                tag = f[4:]
                e["tags"].append(tag)
                if tag.startswith("port-") and e["port_id"] is None:
                    e["port_id"] = tag[5:]
            else:
                try:
                    e["ip"] = str(ipaddress.ip_address(f.strip("[]")))
                except ValueError:
                    if e["hostname"] is None and f:
                        e["hostname"] = f
        if e["mac"] is None or e["ip"] is None:
            out.append(dict(raw=s))
        else:
            out.append(e)
    return out


def render_host_line(e):
    """'mac,hostname,ip' (tags are never written: see the module docstring). A field that could split the line
    or add one (a comma, a newline, any control or format character) is refused: DhcpError, nothing written."""
    if e.get("raw"):
        return _line_field("hosts line", e["raw"], commas=True)
    parts = [e["mac"]]
    if e.get("hostname"):
        parts.append(e["hostname"])
    parts.append(e["ip"])
    return ",".join(_line_field("hosts line field", str(part)) for part in parts)


def _line_field(what, text, commas=False):
    """``text`` unchanged when it can be one field (``commas``: one whole line) of a dnsmasq file, else DhcpError."""
    bad = forbidden_char(text)
    if bad is not None:
        raise DhcpError("refusing to write the %s %s: it holds %s (a line of dnsmasq's hosts file must not be "
                        "split or extended)" % (what, ascii(text), describe_char(bad)))
    if not commas and "," in text:
        raise DhcpError("refusing to write the %s %s: a comma would add a field to dnsmasq's hosts line"
                        % (what, ascii(text)))
    return text


def render_hosts(entries):
    lines = [render_host_line(e) for e in entries]
    return "".join(line + "\n" for line in lines)


def parse_ports(text):
    """{port_id: {mac, ip}} from the 'ports' file."""
    out = {}
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 3 and not parts[0].startswith("#"):
            out[parts[0]] = dict(mac=parts[1].lower(), ip=parts[2])
    return out


def render_ports(ports):
    return "".join("%s %s %s\n" % (pid, v["mac"], v["ip"]) for pid, v in sorted(ports.items()))


def parse_leases(text):
    """dnsmasq leases lines: '<expiry> <mac> <ip> <hostname|*> <client-id|*>' (IPv4 only)."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] == "duid":
            continue
        try:
            expiry = int(parts[0])
        except ValueError:
            continue
        out.append(dict(expiry=expiry, mac=parts[1].lower(), ip=parts[2],
                        hostname=None if parts[3] == "*" else parts[3],
                        client_id=None if len(parts) < 5 or parts[4] == "*" else parts[4]))
    return out


def render_leases(leases):
    return "".join("%d %s %s %s %s\n" % (le["expiry"], le["mac"], le["ip"], le.get("hostname") or "*",
                                         le.get("client_id") or "*") for le in leases)


def seed_leases(hosts, leases_text, lease_time, now=None, skip=()):
    """Leases text with a lease for every hosts entry that has none (neutron pre-seeds the file so a
    (re)started dnsmasq does not NAK guests that are already running).

    ``skip``: (mac, ip) pairs not to seed - the reservation this call adds has no running guest yet,
    and a made-up lease for it would look like the guest had asked for its address (the compute role
    waits for the guest's lease in this file)."""
    now = int(time.time() if now is None else now)
    leases = parse_leases(leases_text)
    have = {(le["mac"], le["ip"]) for le in leases} | set(skip)
    for e in hosts:
        if e.get("raw") or (e["mac"], e["ip"]) in have:
            continue
        leases.append(dict(expiry=now + int(lease_time), mac=e["mac"], ip=e["ip"], hostname=e.get("hostname"),
                           client_id=None))
    return render_leases(leases)


def subnet_tag(network_id):
    return "subnet-%s" % network_id


def render_opts(network_id, gateway_ip=None, dns_servers=()):
    tag = "tag:%s" % subnet_tag(network_id)
    lines = ["%s,option:router,%s" % (tag, gateway_ip) if gateway_ip else "%s,option:router" % tag]
    if dns_servers:
        lines.append("%s,option:dns-server,%s" % (tag, ",".join(dns_servers)))
    return "".join(line + "\n" for line in lines)


atomic_write = atomic_write_text  # the name the DHCP code and its tests use


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------------------------
# dnsmasq


def conf_paths(dhcp_dir, network_id):
    d = os.path.join(dhcp_dir, network_id)
    return dict(dir=d, host=os.path.join(d, "host"), opts=os.path.join(d, "opts"), ports=os.path.join(d, "ports"),
                leases=os.path.join(d, "leases"), pid=os.path.join(d, "pid"),
                interface=os.path.join(d, "interface"), log=os.path.join(d, "dnsmasq.log"))


def dnsmasq_cmdline(network_id, bridge, subnet_cidr, dhcp_dir, lease_time, dnsmasq="dnsmasq"):
    """dnsmasq argv mirroring neutron's Dnsmasq._build_cmdline_callback (static, DHCP only)."""
    net = network(subnet_cidr)
    c = conf_paths(dhcp_dir, network_id)
    return [
        dnsmasq,
        "--conf-file=/dev/null",
        "--no-hosts",
        "--no-resolv",
        "--port=0",
        "--interface=%s" % bridge,
        "--bind-interfaces",
        "--except-interface=lo",
        "--dhcp-range=set:%s,%s,static,%s,%ds" % (subnet_tag(network_id), net.network_address, net.netmask,
                                                  int(lease_time)),
        "--dhcp-hostsfile=%s" % c["host"],
        "--dhcp-optsfile=%s" % c["opts"],
        "--dhcp-leasefile=%s" % c["leases"],
        "--pid-file=%s" % c["pid"],
        "--dhcp-no-override",
        "--dhcp-authoritative",
        "--log-dhcp",
        "--log-facility=%s" % c["log"],
        "--dhcp-lease-max=%d" % net.num_addresses,
    ]


def proc_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:  # a zombie (or a kernel thread): not a running program
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def pid_alive(pidfile, expected_cmd_substr):
    """PID from pidfile if that process runs and its command line contains expected_cmd_substr
    (the network's config dir), so a recycled PID is never trusted. Else None."""
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return None
    if pid <= 1:
        return None
    argv = proc_cmdline(pid)
    if not argv or expected_cmd_substr not in " ".join(argv):
        return None
    return pid


def start_daemon(argv, timeout=30):
    """Run a self-daemonising program (dnsmasq) without keeping pipes to it. Returns (rc, stderr).

    Not run_command: the daemon must not inherit a pipe the module waits on, and must get its own
    session; its start-up errors go to a temporary file.
    """
    with tempfile.TemporaryFile() as err:
        rc = subprocess.call(  # pylint: disable=ansible-bad-function
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            close_fds=True, start_new_session=True, timeout=timeout)
        err.seek(0)
        return rc, err.read().decode("utf-8", "replace").strip()


def parse_ip_addrs(text):
    """['a.b.c.d/p', ...] from `ip -o -4 addr show dev X`."""
    out = []
    for line in (text or "").splitlines():
        parts = line.split()
        if "inet" in parts:
            i = parts.index("inet")
            if i + 1 < len(parts):
                out.append(parts[i + 1])
    return out


def link_flags(text):
    """Flags of `ip -o link show dev X`: '2: br0: <BROADCAST,MULTICAST,UP,LOWER_UP> ...'."""
    m = re.search(r"<([^>]*)>", text or "")
    return m.group(1).split(",") if m else []


def _wait_pidfile(pidfile, substr, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        pid = pid_alive(pidfile, substr)
        if pid or time.monotonic() >= deadline:
            return pid
        time.sleep(0.05)


def _wait_exit(pid, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc_cmdline(pid) is None:
            return True
        time.sleep(0.05)
    return proc_cmdline(pid) is None


# --------------------------------------------------------------------------------------------
# the dhcp_lease step


def dhcp_lease_step(p, check_mode=False, run=None, now=None, sleep=time.sleep):
    """p: network_id, bridge, cidr, dhcp_ip, gateway_ip, dns_servers, mac, ip, hostname, port_id,
    lease_time, dhcp_dir, state, wait, wait_timeout.

    run(argv) -> (rc, stdout, stderr) runs ip and dhcp_release (the module passes
    command.run_argv).
    """
    state = p.get("state") or "present"
    network_id = check_network_id(p.get("network_id"))
    dhcp_dir = p.get("dhcp_dir") or DHCP_DIR
    if not os.path.isabs(dhcp_dir):
        raise DhcpError("dhcp_dir must be an absolute path")
    c = conf_paths(os.path.normpath(dhcp_dir), network_id)
    port_id = check_port_id(p.get("port_id"))
    mac = normalize_mac(p["mac"]) if p.get("mac") else None
    result = dict(changed=False, hosts_line=None, dnsmasq_pid=None, dnsmasq_started=False,
                  dnsmasq_restarted=False, reloaded=False, lease=None, conf_dir=c["dir"], warnings=[])
    if state == "leased":
        return _leased(p, c, network_id, port_id, mac, result, check_mode, sleep)
    if check_mode:
        return _change(p, c, network_id, port_id, mac, result, check_mode, run, now, sleep)
    # One change at a time per network on this host: two boots landing here together would
    # otherwise read-modify-write the host/ports files over each other and lose a reservation.
    os.makedirs(os.path.normpath(dhcp_dir), mode=0o755, exist_ok=True)
    with file_lock(os.path.join(os.path.normpath(dhcp_dir), ".%s.lock" % network_id)):
        return _change(p, c, network_id, port_id, mac, result, check_mode, run, now, sleep)


def _change(p, c, network_id, port_id, mac, result, check_mode, run, now, sleep):
    """present / absent (the caller holds the network's lock unless in check mode)."""
    state = p.get("state") or "present"
    dhcp_dir = p.get("dhcp_dir") or DHCP_DIR
    if state == "absent":
        return _absent(p, c, network_id, port_id, mac, result, check_mode, run)

    # ---- present: validate everything first
    for key in ("bridge", "cidr", "dhcp_ip", "mac", "ip"):
        if not p.get(key):
            raise DhcpError("%s is required with state=present" % key)
    bridge = check_ifname(p["bridge"])
    net = network(p["cidr"])
    ip = host_ip(p["ip"], net, "ip")
    dhcp_ip = host_ip(p["dhcp_ip"], net, "dhcp_ip")
    if ip == dhcp_ip:
        raise DhcpError("ip %s is the DHCP server address of the network" % ip)
    gateway = host_ip(p["gateway_ip"], net, "gateway_ip") if p.get("gateway_ip") else None
    if gateway == ip:
        raise DhcpError("ip %s is the gateway address" % ip)
    dns = []
    for d in p.get("dns_servers") or []:
        try:
            dns.append(str(ipaddress.IPv4Address(d)))
        except ValueError:
            raise DhcpError("dns server %r is not an IPv4 address" % (d,))
    hostname = check_hostname(p.get("hostname") or default_hostname(ip))
    lease_time = int(p.get("lease_time") or 86400)
    if lease_time < 120:
        raise DhcpError("lease_time must be at least 120 seconds (dnsmasq's minimum)")
    if lease_time > MAX_LEASE_TIME:
        raise DhcpError("lease_time must be at most %d seconds (dnsmasq reads it as a signed 32-bit number), got %d"
                        % (MAX_LEASE_TIME, lease_time))

    old_hosts = read_text(c["host"])
    entries = parse_hosts(old_hosts or "")
    old_ports_text = read_text(c["ports"])
    ports = parse_ports(old_ports_text)
    owner = {v["mac"]: pid for pid, v in ports.items()}
    if port_id and owner.get(mac) not in (None, port_id):
        raise DhcpError("MAC %s is already reserved for port %s in %s" % (mac, owner[mac], c["host"]))
    prev_mac = ports[port_id]["mac"] if port_id in ports else None   # the port had another MAC
    mine, others = [], []
    for e in entries:
        if not e.get("raw") and (e["mac"] == mac or (prev_mac and e["mac"] == prev_mac)):
            mine.append(e)
        else:
            others.append(e)
    for e in others:
        if not e.get("raw") and e["ip"] == ip:
            who = "port %s" % owner[e["mac"]] if e["mac"] in owner else "MAC %s" % e["mac"]
            raise DhcpError("ip %s is already reserved for %s (MAC %s) in %s" % (ip, who, e["mac"], c["host"]))
    new_entry = dict(mac=mac, hostname=hostname, ip=ip, port_id=port_id, tags=[])
    result["hosts_line"] = render_host_line(new_entry)
    new_ports = {pid: v for pid, v in ports.items() if v["mac"] not in (mac, prev_mac) or pid == port_id}
    if port_id:
        new_ports[port_id] = dict(mac=mac, ip=ip)
    new_ports_text = render_ports(new_ports)
    ports_changed = new_ports_text != (old_ports_text or "")
    new_entries, placed = [], False
    for e in entries:
        if any(e is m for m in mine):
            if not placed:
                new_entries.append(new_entry)
                placed = True
            continue
        new_entries.append(e)
    if not placed:
        new_entries.append(new_entry)
    new_hosts = render_hosts(new_entries)
    old_opts = read_text(c["opts"])
    new_opts = render_opts(network_id, gateway, dns)
    old_iface = read_text(c["interface"])
    new_iface = bridge + "\n"
    hosts_changed = new_hosts != (old_hosts or "")
    opts_changed = new_opts != (old_opts or "")
    iface_changed = new_iface != (old_iface or "")
    diffs = [dict(before_header=c["host"], after_header=c["host"], before=old_hosts or "", after=new_hosts)]
    if opts_changed:
        diffs.append(dict(before_header=c["opts"], after_header=c["opts"], before=old_opts or "", after=new_opts))
    result["diff"] = diffs

    # the bridge (made by the hypervisor role) and the DHCP server address on it
    ip_bin = find_bin("ip")
    if not ip_bin:
        raise DhcpError("the ip command (iproute2) is not installed")
    rc, out, err = run([ip_bin, "-o", "link", "show", "dev", bridge])
    if rc != 0:
        raise DhcpError("bridge %s does not exist on this host (the hypervisor role creates it): %s"
                        % (bridge, (err or out).strip()))
    if "UP" not in link_flags(out):
        result["warnings"].append("bridge %s is administratively down; guests will not get DHCP answers" % bridge)
    rc, out, err = run([ip_bin, "-o", "-4", "addr", "show", "dev", bridge])
    addrs = parse_ip_addrs(out)
    want_addr = "%s/%d" % (dhcp_ip, net.prefixlen)
    addr_missing = want_addr not in addrs
    had_dhcp_ip = any(a.split("/")[0] == dhcp_ip for a in addrs)

    dnsmasq = find_bin("dnsmasq")
    if not dnsmasq:
        raise DhcpError("dnsmasq is not installed on this host (package dnsmasq-base)")
    argv = dnsmasq_cmdline(network_id, bridge, str(net), os.path.normpath(dhcp_dir), lease_time, dnsmasq)
    marker = "--dhcp-hostsfile=%s" % c["host"]
    pid = pid_alive(c["pid"], marker)
    need_restart = False
    if pid:
        running = [a for a in (proc_cmdline(pid) or []) if a.startswith("--")]
        need_restart = running != argv[1:]
    result["dnsmasq_pid"] = pid
    will_start = not pid
    result["changed"] = bool(addr_missing or hosts_changed or opts_changed or iface_changed or ports_changed
                             or will_start or need_restart)
    result["lease"] = _find_lease(read_text(c["leases"]), mac, ip)
    if check_mode:
        result.update(dnsmasq_started=will_start, dnsmasq_restarted=need_restart,
                      reloaded=bool(pid and not need_restart and (hosts_changed or opts_changed)))
        return result

    undo = []
    try:
        made = makedirs(c["dir"])
        for d in reversed(made):
            undo.append(lambda d=d: os.rmdir(d))
        if addr_missing:
            rc, out, err = run([ip_bin, "addr", "replace", want_addr, "dev", bridge])
            if rc != 0:
                raise DhcpError("cannot put %s on bridge %s: %s" % (want_addr, bridge, (err or out).strip()))
            if not had_dhcp_ip:
                undo.append(lambda: run([ip_bin, "addr", "del", want_addr, "dev", bridge]))
        for path, old, new, changed in ((c["opts"], old_opts, new_opts, opts_changed),
                                        (c["interface"], old_iface, new_iface, iface_changed),
                                        (c["ports"], old_ports_text, new_ports_text, ports_changed),
                                        (c["host"], old_hosts, new_hosts, hosts_changed)):
            if changed:
                atomic_write(path, new)
                undo.append(_restore(path, old))
        if will_start or need_restart:
            if need_restart:
                os.kill(pid, signal.SIGTERM)
                if not _wait_exit(pid):
                    raise DhcpError("dnsmasq (pid %d) for network %s did not exit after SIGTERM" % (pid, network_id))
                result["dnsmasq_restarted"] = True
            old_leases = read_text(c["leases"])
            was_reserved = any(not e.get("raw") and (e["mac"], e["ip"]) == (mac, ip) for e in entries)
            seeded = seed_leases(new_entries, old_leases or "", lease_time, now,
                                 skip=() if was_reserved else ((mac, ip),))
            if seeded != (old_leases or ""):
                atomic_write(c["leases"], seeded)
                undo.append(_restore(c["leases"], old_leases))
            rc, err = start_daemon(argv)
            if rc != 0:
                raise DhcpError("dnsmasq for network %s failed to start (rc=%s): %s" % (network_id, rc, err),
                                cmd=argv)
            pid = _wait_pidfile(c["pid"], marker)
            if not pid:
                raise DhcpError("dnsmasq for network %s started but wrote no pid file %s" % (network_id, c["pid"]),
                                cmd=argv)
            result["dnsmasq_started"] = True
        elif hosts_changed or opts_changed:
            os.kill(pid, signal.SIGHUP)
            result["reloaded"] = True
    except BaseException as e:
        failed = []
        for fn in reversed(undo):
            try:
                fn()
            except Exception as ue:
                failed.append(str(ue))
        if isinstance(e, DhcpError):
            if failed:
                e.msg += " (cleanup also failed: %s)" % "; ".join(failed)
            raise
        if isinstance(e, (OSError, subprocess.SubprocessError)):
            raise DhcpError("DHCP setup for network %s failed: %s" % (network_id, e))
        raise
    result["dnsmasq_pid"] = pid
    result["lease"] = _find_lease(read_text(c["leases"]), mac, ip)
    return result


def _restore(path, old):
    def fn():
        if old is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        else:
            atomic_write(path, old)
    return fn


def _find_lease(text, mac=None, ip=None):
    for le in parse_leases(text or ""):
        if (mac and le["mac"] == mac) or (ip and le["ip"] == ip):
            return le
    return None


def _absent(p, c, network_id, port_id, mac, result, check_mode, run):
    ip = p.get("ip")
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise DhcpError("ip %r is not an IP address" % (ip,))
    if not (port_id or mac or ip):
        raise DhcpError("give port_id, mac or ip to say which reservation to remove")
    old_hosts = read_text(c["host"])
    entries = parse_hosts(old_hosts or "")
    old_ports_text = read_text(c["ports"])
    ports = parse_ports(old_ports_text)
    known = ports.get(port_id) if port_id else None

    def is_mine(e):
        if e.get("raw"):
            return False
        if known:
            return e["mac"] == known["mac"]
        if mac:
            return e["mac"] == mac and (not ip or e["ip"] == ip)
        return bool(ip) and e["ip"] == ip

    mine = [e for e in entries if is_mine(e)]
    keep = [e for e in entries if not is_mine(e)]
    new_hosts = render_hosts(keep)
    gone_macs = {e["mac"] for e in mine} | ({known["mac"]} if known else set())
    new_ports = {pid: v for pid, v in ports.items() if pid != port_id and v["mac"] not in gone_macs}
    new_ports_text = render_ports(new_ports)
    ports_changed = old_ports_text is not None and new_ports_text != old_ports_text
    pairs = {(e["mac"], e["ip"]) for e in mine}
    if known:
        pairs.add((known["mac"], known["ip"]))
    if mac and ip:
        pairs.add((mac, ip))
    leases_text = read_text(c["leases"])
    leases = parse_leases(leases_text or "")
    stale = [le for le in leases if (le["mac"], le["ip"]) in pairs
             or (not pairs and ((mac and le["mac"] == mac) or (ip and le["ip"] == ip)))]
    if mine:
        result["hosts_line"] = render_host_line(mine[0])
    result["lease"] = stale[0] if stale else None
    hosts_changed = old_hosts is not None and new_hosts != old_hosts
    result["changed"] = bool(hosts_changed or ports_changed or stale)
    result["diff"] = [dict(before_header=c["host"], after_header=c["host"], before=old_hosts or "",
                           after=new_hosts if old_hosts is not None else "")]
    pid = pid_alive(c["pid"], "--dhcp-hostsfile=%s" % c["host"])
    result["dnsmasq_pid"] = pid
    if check_mode or not result["changed"]:
        result["reloaded"] = bool(check_mode and pid and hosts_changed)
        return result
    try:
        released = []
        if stale and pid:
            # like neutron's _release_unused_leases: ask the running dnsmasq to drop the lease
            # (it owns the leases file while it runs; never rewrite it under its feet)
            bridge = p.get("bridge") or (read_text(c["interface"]) or "").strip()
            rel = find_bin("dhcp_release")
            if not bridge or not rel:
                result["warnings"].append("cannot release the lease%s: %s" % (
                    "s" if len(stale) > 1 else "",
                    "dhcp_release (dnsmasq-utils) is not installed" if not rel else "the bridge is unknown"))
            else:
                for le in stale:
                    argv = [rel, bridge, le["ip"], le["mac"]] + ([le["client_id"]] if le.get("client_id") else [])
                    rc, out, err = run(argv)
                    if rc != 0:
                        result["warnings"].append("dhcp_release %s %s failed: %s"
                                                  % (le["ip"], le["mac"], (err or out).strip()))
                    else:
                        released.append(le)
        if hosts_changed:
            atomic_write(c["host"], new_hosts)
        if ports_changed:
            atomic_write(c["ports"], new_ports_text)
        if pid:
            if hosts_changed:
                os.kill(pid, signal.SIGHUP)
                result["reloaded"] = True
            if released:
                deadline = time.monotonic() + RELEASE_WAIT
                while time.monotonic() < deadline:
                    left = parse_leases(read_text(c["leases"]) or "")
                    if not any((le["mac"], le["ip"]) == (r["mac"], r["ip"]) for le in left for r in released):
                        break
                    time.sleep(0.05)
                else:
                    result["warnings"].append("dnsmasq still lists the released lease in %s" % c["leases"])
        elif stale:
            left = [le for le in leases if not any(le is s for s in stale)]
            atomic_write(c["leases"], render_leases(left))
    except OSError as e:
        raise DhcpError("removing the DHCP reservation on network %s failed: %s" % (network_id, e))
    return result


# --------------------------------------------------------------------------------------------
# state=leased: has the guest got its address? (seen in dnsmasq's leases file)


def find_active_lease(text, mac, ip=None, now=None):
    """The lease of ``mac`` (for ``ip`` when given) in leases text that has not expired (dnsmasq
    writes expiry 0 for an infinite lease), else None."""
    now = int(time.time() if now is None else now)
    for le in parse_leases(text or ""):
        if le["mac"] == mac and (not ip or le["ip"] == ip) and (le["expiry"] == 0 or le["expiry"] > now):
            return le
    return None


def lease_watch_cmd(mac, leases_file, seen=None, seconds=0.0, poll=LEASE_POLL):
    """A shell command for the host that prints its clock (``date +%s``), then the lines of the
    leases file naming ``mac``. With ``seen`` (those lines as the last run printed them, without the
    final newline) it first looks every ``poll`` s, for up to ``seconds``, until they differ: the
    lease wait polls on the host, not with one SSH session per look."""
    looks = 0 if seen is None else max(1, int(seconds / poll))
    return ("g() { grep -F -i -e %s %s 2>/dev/null; }; cur=$(g); i=0; "
            "while [ $i -lt %d ] && [ \"$cur\" = %s ]; do sleep %s; cur=$(g); i=$((i+1)); done; "
            "date +%%s && printf '%%s\\n' \"$cur\""
            % (shlex.quote(" %s " % mac), shlex.quote(leases_file), looks, shlex.quote(seen or ""), poll))


def parse_lease_watch(stdout):
    """(host clock, the lines naming the MAC as ``seen`` for the next lease_watch_cmd) from its output;
    ValueError when it is not that command's output."""
    clock, _newline, lines = stdout.partition("\n")
    return int(clock.strip()), lines[:-1] if lines.endswith("\n") else lines


def lease_diagnosis(c, network_id, mac, ip, leases_text, hosts_text, pid, now=None, log_lines=5):
    """Why ``mac`` holds no lease of ``ip``: a list of findings, the first ones decisive."""
    now = int(time.time() if now is None else now)
    out = []
    reserved = [e for e in parse_hosts(hosts_text or "") if not e.get("raw") and e["mac"] == mac]
    if not reserved:
        out.append("MAC %s has no reservation in %s (run dhcp_lease with state=present first)" % (mac, c["host"]))
    elif ip and all(e["ip"] != ip for e in reserved):
        out.append("MAC %s is reserved for %s in %s, not for %s" % (mac, reserved[0]["ip"], c["host"], ip))
    if not pid:
        out.append("dnsmasq for network %s is not running (pid file %s)" % (network_id, c["pid"]))
    for le in parse_leases(leases_text or ""):
        if le["mac"] == mac and ip and le["ip"] != ip:
            out.append("the leases file gives MAC %s the address %s instead" % (mac, le["ip"]))
        elif le["mac"] == mac and le["expiry"] and le["expiry"] <= now:
            out.append("the lease of %s expired %d s ago" % (le["ip"], now - le["expiry"]))
    if leases_text is None:
        out.append("there is no leases file %s" % c["leases"])
    log = read_text(c["log"]) or ""
    seen = [line.strip() for line in log.splitlines() if mac in line.lower()][-log_lines:]
    if seen:
        out.append("dnsmasq.log: " + " | ".join(seen))
    elif pid:
        out.append("dnsmasq has not heard from MAC %s (nothing in %s): is the guest's NIC on the bridge "
                   "and its DHCP client running?" % (mac, c["log"]))
    return out


def _leased(p, c, network_id, port_id, mac, result, check_mode, sleep):
    """Wait (wait_timeout) until the guest holds its lease; with wait=false (or in check mode) look once.

    The lease must be one dnsmasq wrote: a reservation added by state=present is never pre-seeded into
    the leases file (see seed_leases), so a lease for it means the guest asked for its address.
    """
    ports = parse_ports(read_text(c["ports"]))
    known = ports.get(port_id) if port_id else None
    if mac is None and known:
        mac = known["mac"]
    if mac is None:
        raise DhcpError("give mac (or the port_id of a reservation in %s) with state=leased" % c["ports"])
    ip = p.get("ip") or (known["ip"] if known and known["mac"] == mac else None)
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise DhcpError("ip %r is not an IP address" % (ip,))
    wait = p.get("wait") is not False and not check_mode
    timeout = p.get("wait_timeout")
    timeout = 120 if timeout is None else int(timeout)
    if timeout < 0:
        raise DhcpError("wait_timeout must not be negative")
    started = time.monotonic()
    marker = "--dhcp-hostsfile=%s" % c["host"]
    result.update(mac=mac, ip=ip, leases_file=c["leases"], leased=False, leased_ip=None, waited=0.0,
                  reserved=False, hopeless=False, diagnosis=[])
    while True:
        leases_text = read_text(c["leases"])
        lease = find_active_lease(leases_text, mac, ip)
        if lease:
            break
        hosts_text = read_text(c["host"])
        pid = pid_alive(c["pid"], marker)
        reserved = any(not e.get("raw") and e["mac"] == mac and (not ip or e["ip"] == ip)
                       for e in parse_hosts(hosts_text or ""))
        # nobody will hand this address out: no reservation, or no dnsmasq
        hopeless = not reserved or not pid
        if not wait or hopeless or time.monotonic() - started >= timeout:
            break
        sleep(LEASE_POLL)
    waited = round(time.monotonic() - started, 1)
    pid = pid_alive(c["pid"], marker)
    result.update(dnsmasq_pid=pid, waited=waited)
    if lease:
        result.update(leased=True, lease=lease, leased_ip=lease["ip"], reserved=True)
        if not pid:
            result["warnings"].append("the leases file lists %s for %s, but dnsmasq for network %s is not running"
                                      % (lease["ip"], mac, network_id))
        return result
    diagnosis = lease_diagnosis(c, network_id, mac, ip, leases_text, hosts_text, pid)
    result.update(reserved=reserved, hopeless=hopeless, diagnosis=diagnosis)
    if wait:
        what = "%s (%s)" % (mac, ip) if ip else mac
        if hopeless:
            raise DhcpError("%s cannot get a DHCP lease on network %s: %s" % (what, network_id, "; ".join(diagnosis)),
                            **{k: v for k, v in result.items() if k not in ("warnings", "diff")})
        raise DhcpError("no DHCP lease for %s in %s after %d s: %s" % (what, c["leases"], timeout, "; ".join(diagnosis)),
                        **{k: v for k, v in result.items() if k not in ("warnings", "diff")})
    return result
