# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Networking end to end on its own test host (bfhv51) and controller state: the NoCloud config
drive (the guest prints the hostname from it), the wait for the guest's lease in dnsmasq's leases
file, dnsmasq as neutron's DHCP agent (killed between two boots, restarted with its leases, no
guest NAKed), the lease released on delete, and fixed IPs refused end to end through
bootflow.cloud.port. Nothing is mocked. The tests run in file order and share the instances."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from conftest import console, host_session, wait_console

HOST_N = int(os.environ.get("BOOTFLOW_IT_NET_HOST", "51"))
LEASE_TIME = 120   # dnsmasq's minimum: guests renew after 60 s, so a renewal is seen within the test
NAME_A = "Net Test_A"       # -> hostname net-test-a
NAME_B = "net-test-b"
NAME_FIXED = "net-fixed"
USER_DATA = "#cloud-config\nruncmd:\n  - echo hello from bootflow\n"
INSTANCES = "/var/lib/bootflow/instances"
DHCP = "/var/lib/bootflow/dhcp"


@pytest.fixture(scope="module")
def net_env(tmp_path_factory):
    """Test host bfhv51 with the hypervisor role applied and its own controller state dir."""
    with host_session(tmp_path_factory, HOST_N, "bootflow-net") as env:
        env.empty = env.host_snapshot()
        yield env


def boot(env, name, **extra):
    t0 = time.monotonic()
    extra_vars = dict(bootflow_instance_name=name, bootflow_dhcp_lease_time=LEASE_TIME, **extra)
    res = env.play("boot.yml", "-e", json.dumps(extra_vars))
    inst = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)[0]
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    return dict(out=res.out, inst=inst, port=port, uuid=inst["uuid"], seconds=time.monotonic() - t0)


def delete(env, name):
    res = env.play("delete.yml", "-e", json.dumps(dict(bootflow_instance_name=name)))
    assert env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name) == [], res.out[-3000:]
    return res


def leases(env, network_id):
    text = env.ssh("cat %s/%s/leases 2>/dev/null || true" % (DHCP, network_id))
    return {parts[1]: dict(expiry=int(parts[0]), ip=parts[2], client_id=parts[4])
            for parts in (line.split() for line in text.splitlines()) if len(parts) >= 5}


def dnsmasq_log(env, network_id):
    return env.ssh("cat %s/%s/dnsmasq.log 2>/dev/null || true" % (DHCP, network_id)).splitlines()


def dnsmasq_pid(env, network_id):
    """The network's dnsmasq pid if that process runs (pid file + its command line), else None."""
    d = "%s/%s" % (DHCP, network_id)
    out = env.ssh("p=$(cat %s/pid 2>/dev/null) && tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -- "
                  "'--dhcp-hostsfile=%s/host' && echo $p || true" % (d, d)).strip()
    return int(out) if out else None


def lease_lines(text):
    return re.findall(r"^GUEST-DHCP-LEASE: .*$", text, re.M)


@pytest.fixture(scope="module")
def vm_a(net_env):
    return boot(net_env, NAME_A, bootflow_user_data=USER_DATA)


def test_guest_prints_the_port_ip_and_the_config_drive_hostname(net_env, vm_a):
    env, port = net_env, vm_a["port"]
    m = wait_console(env, vm_a["uuid"], r"GUEST-DHCP-LEASE: iface=eth0 ip=(\S+) mask=(\S+) router=(\S*) hostname=")
    assert m.group(1) == port["ip"], m.group(0)
    sub = env.query("SELECT * FROM subnets WHERE network_id=?", port["network_id"])[0]
    assert m.group(3) == sub["gateway_ip"]
    cons = console(env, vm_a["uuid"])
    assert re.findall(r"^GUEST-HOSTNAME: (.*)$", cons, re.M) == ["net-test-a"], cons[-2000:]
    assert re.findall(r"^GUEST-INSTANCE-ID: (.*)$", cons, re.M) == [vm_a["uuid"]]
    assert len(lease_lines(cons)) == 1, cons[-2000:]
    # the wait step saw the lease appear and says which address it observed
    assert re.search(r"\[bfhv%d\] %s holds %s \(after [0-9.]+ s\)" % (HOST_N, port["mac"], re.escape(port["ip"])),
                     vm_a["out"]), vm_a["out"][-3000:]
    steps = env.query("SELECT seed_steps, action FROM instance_steps WHERE instance_uuid=? ORDER BY id", vm_a["uuid"])
    assert [s["action"] for s in steps][-2:] == ["config_drive", "domain"], steps


def test_the_lease_in_dnsmasqs_file_comes_from_the_guest(net_env, vm_a):
    env, port = net_env, vm_a["port"]
    lease = leases(env, port["network_id"])[port["mac"]]
    assert lease["ip"] == port["ip"]
    # udhcpc sends its MAC as client id: a lease written by dnsmasq for the guest, not a pre-seeded one
    assert lease["client_id"] == "01:" + port["mac"], lease
    assert 0 < lease["expiry"] - time.time() <= LEASE_TIME + 5
    assert any("DHCPACK(br-bootflow) %s %s" % (port["ip"], port["mac"]) in line
               for line in dnsmasq_log(env, port["network_id"]))


def test_config_drive_on_the_host(net_env, vm_a):
    env, port = net_env, vm_a["port"]
    path = "%s/%s/disk.config" % (INSTANCES, vm_a["uuid"])
    assert env.ssh("blkid -o value -s LABEL %s" % path).strip() == "cidata"
    meta = env.ssh("isoinfo -J -i %s -x /meta-data" % path)
    assert meta == "instance-id: %s\nlocal-hostname: net-test-a\n" % vm_a["uuid"]
    assert env.ssh("isoinfo -J -i %s -x /user-data" % path) == USER_DATA
    netcfg = env.ssh("isoinfo -J -i %s -x /network-config" % path)
    assert 'macaddress: "%s"' % port["mac"] in netcfg and "dhcp4: true" in netcfg
    xml = env.ssh("virsh -c qemu:///system dumpxml bootflow-%s" % vm_a["uuid"])
    cdrom = re.search(r"<disk type='file' device='cdrom'>.*?</disk>", xml, re.S)
    assert cdrom and path in cdrom.group(0) and "<readonly/>" in cdrom.group(0), xml


def test_guest_serves_its_page_inside_the_host_namespace(net_env, vm_a):
    env, ip = net_env, vm_a["port"]["ip"]
    wait_console(env, vm_a["uuid"], r"GUEST-HTTP: up")
    page = env.ssh("timeout 10 busybox wget -qO- http://%s/" % ip)
    assert page.strip() == "bootflow guest net-test-a %s" % ip


def test_second_run_changes_nothing(net_env, vm_a):
    extra_vars = dict(bootflow_instance_name=NAME_A, bootflow_dhcp_lease_time=LEASE_TIME, bootflow_user_data=USER_DATA)
    again = net_env.play("boot.yml", "-e", json.dumps(extra_vars))
    recap = again.recap()
    assert recap and all(v["changed"] == 0 and v["failed"] == 0 for v in recap.values()), again.out[-3000:]


@pytest.fixture(scope="module")
def killed_then_b(net_env, vm_a):
    """Kill the network's dnsmasq (by its pid file), then boot a second instance."""
    env, net = net_env, vm_a["port"]["network_id"]
    old_pid = dnsmasq_pid(env, net)
    assert old_pid
    before = leases(env, net)
    env.ssh("kill %d" % old_pid)
    deadline = time.monotonic() + 10
    while dnsmasq_pid(env, net) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert dnsmasq_pid(env, net) is None
    log_mark = len(dnsmasq_log(env, net))
    t_kill = time.time()
    vm_b = boot(env, NAME_B)
    return dict(old_pid=old_pid, before=before, log_mark=log_mark, t_kill=t_kill, b=vm_b, net=net)


def test_next_boot_restarts_dnsmasq_with_the_leases(net_env, vm_a, killed_then_b):
    env, k = net_env, killed_then_b
    b = k["b"]
    new_pid = dnsmasq_pid(env, k["net"])
    assert new_pid and new_pid != k["old_pid"]
    # restarted by B's dhcp_lease step (the only thing that starts dnsmasq)
    assert re.search(r"22-24 \| neutron DHCP agent \+ L2: reservation in dnsmasq on the host\] \**\n"
                     r"changed: \[bfhv%d\]" % HOST_N, b["out"]), b["out"][-4000:]
    # A's lease survived the restart; B's was written by dnsmasq for B's guest (not pre-seeded)
    now = leases(env, k["net"])
    a_mac, b_mac = vm_a["port"]["mac"], b["port"]["mac"]
    assert now[a_mac]["ip"] == vm_a["port"]["ip"] and now[a_mac]["client_id"] == "01:" + a_mac
    assert now[b_mac]["ip"] == b["port"]["ip"] and now[b_mac]["client_id"] == "01:" + b_mac
    m = wait_console(env, b["uuid"], r"GUEST-DHCP-LEASE: iface=eth0 ip=(\S+) ")
    assert m.group(1) == b["port"]["ip"]
    assert re.findall(r"^GUEST-HOSTNAME: (.*)$", console(env, b["uuid"]), re.M) == [NAME_B]
    assert "holds %s" % b["port"]["ip"] in b["out"]


def test_both_guests_keep_their_leases_no_nak(net_env, vm_a, killed_then_b):
    env, k = net_env, killed_then_b
    a_ip, a_mac = vm_a["port"]["ip"], vm_a["port"]["mac"]
    ack_a = "DHCPACK(br-bootflow) %s %s" % (a_ip, a_mac)
    # A renews after half its lease time; the restarted dnsmasq must acknowledge, not NAK
    deadline = time.monotonic() + LEASE_TIME
    while True:
        after = dnsmasq_log(env, k["net"])[k["log_mark"]:]
        if any(ack_a in line for line in after) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert any("started, version" in line for line in after), after[:20]
    assert any(ack_a in line for line in after), "A never renewed with the restarted dnsmasq:\n" + "\n".join(after)
    assert any("DHCPACK(br-bootflow) %s %s" % (k["b"]["port"]["ip"], k["b"]["port"]["mac"]) in line for line in after)
    everything = dnsmasq_log(env, k["net"])
    assert not [line for line in everything if "DHCPNAK" in line], "\n".join(everything)
    lease_a = leases(env, k["net"])[a_mac]
    assert lease_a["ip"] == a_ip and lease_a["expiry"] > k["before"][a_mac]["expiry"]   # renewed
    # neither guest had to start over: one lease line each on its console, with its own address
    for vm in (vm_a, k["b"]):
        assert [ln.split()[2] for ln in lease_lines(console(env, vm["uuid"]))] == ["ip=%s" % vm["port"]["ip"]]
    page = env.ssh("timeout 10 busybox wget -qO- http://%s/" % a_ip)
    assert page.strip() == "bootflow guest net-test-a %s" % a_ip


def test_delete_releases_the_ip_the_host_line_and_the_lease(net_env, vm_a, killed_then_b):
    env, port, net = net_env, vm_a["port"], vm_a["port"]["network_id"]
    b_port = killed_then_b["b"]["port"]
    pid = dnsmasq_pid(env, net)
    delete(env, NAME_A)
    assert env.query("SELECT * FROM ports WHERE instance_uuid=?", vm_a["uuid"]) == []   # the IP is free again
    hosts = env.ssh("cat %s/%s/host" % (DHCP, net))
    assert port["mac"] not in hosts and port["ip"] + "\n" not in hosts
    assert "%s,host-%s,%s" % (b_port["mac"], b_port["ip"].replace(".", "-"), b_port["ip"]) in hosts
    assert port["mac"] not in env.ssh("cat %s/%s/ports" % (DHCP, net))
    now = leases(env, net)
    assert port["mac"] not in now and b_port["mac"] in now       # released by dhcp_release, B untouched
    assert any("DHCPRELEASE(br-bootflow) %s %s" % (port["ip"], port["mac"]) in line
               for line in dnsmasq_log(env, net))
    assert dnsmasq_pid(env, net) == pid                          # reloaded, not restarted
    gone = env.ssh("ls %s/%s 2>&1 || true" % (INSTANCES, vm_a["uuid"]))
    assert "No such file" in gone                                # overlay, console log and disk.config
    assert "net-test-b" in env.ssh("timeout 10 busybox wget -qO- http://%s/" % b_port["ip"])


FIXED_PLAYBOOK = """
- name: Fixed IPs through bootflow.cloud.port
  hosts: localhost
  gather_facts: false
  roles:
    - role: bootflow.cloud.identity
  tasks:
    - name: Port requests
      module_defaults:
        group/bootflow.cloud.bootflow:
          auth_token: "{{ bootflow_token }}"
      block:
        - name: Instance record
          bootflow.cloud.instance:
            name: %(name)s
            flavor: m1.tiny
            image: bootflow-guest
            networks: [private]
            volume_size_gb: 0
          register: inst

        - name: Scheduled
          bootflow.cloud.schedule:
            instance: "{{ inst.instance.uuid }}"
            # no liveness check: this play sends no heartbeat (boot.yml's scheduler role does), and the
            # host may have been idle longer than the 60 s default while the earlier tests ran
            service_down_time: 0

        - name: Refused fixed IP
          bootflow.cloud.port:
            instance: "{{ inst.instance.uuid }}"
            fixed_ips:
              private: "{{ item }}"
          loop: %(refused)s
          register: refused
          ignore_errors: true

        - name: Show the answers
          ansible.builtin.debug:
            msg: "REFUSED {{ item.item }} failed={{ item.failed }} msg={{ item.msg | default('') }}"
          loop: "{{ refused.results }}"
          loop_control:
            label: "{{ item.item }}"

        - name: Free fixed IP
          bootflow.cloud.port:
            instance: "{{ inst.instance.uuid }}"
            fixed_ips:
              private: %(free)s
          register: granted

        - name: Show the port
          ansible.builtin.debug:
            msg: "GRANTED {{ granted.ports | map(attribute='ip') | join(',') }}"

- name: The lease wait when no guest asks (no domain was started for this instance)
  hosts: bfhv%(n)d
  gather_facts: false
  module_defaults:
    group/bootflow.cloud.bootflow:
      auth_token: "{{ hostvars['localhost']['bootflow_token'] }}"
  vars:
    port: "{{ hostvars['localhost']['granted'].ports[0] }}"
  tasks:
    - name: Without a reservation the wait fails at once
      bootflow.cloud.dhcp_lease:
        port_id: "{{ port.id }}"
        state: leased
        wait_timeout: 60
      register: no_reservation
      ignore_errors: true

    - name: Reservation
      bootflow.cloud.dhcp_lease:
        port_id: "{{ port.id }}"
        lease_time: %(lease_time)d

    - name: With a reservation but no guest the wait times out
      bootflow.cloud.dhcp_lease:
        port_id: "{{ port.id }}"
        state: leased
        wait_timeout: 8
      register: timed_out
      ignore_errors: true

    - name: Without waiting it only looks
      bootflow.cloud.dhcp_lease:
        port_id: "{{ port.id }}"
        state: leased
        wait: false
      register: looked

    - name: Show the answers
      ansible.builtin.debug:
        msg: "{{ item }}"
      loop:
        - "NORESERVATION failed={{ no_reservation.failed }} msg={{ no_reservation.msg }}"
        - "TIMEDOUT failed={{ timed_out.failed }} msg={{ timed_out.msg }}"
        - "LOOKED failed={{ looked.failed }} leased={{ looked.leased }}"

    - name: Reservation removed again
      bootflow.cloud.dhcp_lease:
        port_id: "{{ port.id }}"
        state: absent
"""


def test_fixed_ips_taken_outside_or_gateway_are_refused(net_env, vm_a, killed_then_b, tmp_path):
    env = net_env
    b_ip = killed_then_b["b"]["port"]["ip"]
    sub = env.query("SELECT * FROM subnets WHERE network_id=?", vm_a["port"]["network_id"])[0]
    refused = [b_ip, "10.98.%d.5" % HOST_N, sub["gateway_ip"], sub["dhcp_ip"], "not-an-ip"]
    free = vm_a["port"]["ip"]    # released by the delete above
    book = tmp_path / "fixed.yml"
    book.write_text(FIXED_PLAYBOOK % dict(name=NAME_FIXED, refused=json.dumps(refused), free=free, n=HOST_N,
                                          lease_time=LEASE_TIME))
    res = env.play(str(book))
    answers = dict(re.findall(r'"msg": "REFUSED (\S+) failed=(\w+) msg=', res.out))
    assert answers == {ip: "True" for ip in refused}, res.out[-4000:]
    msgs = dict(re.findall(r'"msg": "REFUSED (\S+) failed=True msg=(.*)"', res.out))
    assert "already allocated" in msgs[b_ip]
    assert "is not in subnet %s" % sub["cidr"] in msgs["10.98.%d.5" % HOST_N]
    assert "gateway" in msgs[sub["gateway_ip"]]
    assert "DHCP server" in msgs[sub["dhcp_ip"]]
    assert "not-an-ip" in msgs["not-an-ip"]
    assert "GRANTED %s" % free in res.out
    inst = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME_FIXED)[0]
    assert [p["ip"] for p in env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])] == [free]
    assert len(env.query("SELECT * FROM ports WHERE ip=?", b_ip)) == 1
    # the lease wait through the action plugin, without a guest: clear errors, progress while waiting
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    what = "%s (%s)" % (port["mac"], port["ip"])
    assert re.search(r'"msg": "NORESERVATION failed=True msg=%s cannot get a DHCP lease on network %s: '
                     r'MAC %s has no reservation' % (re.escape(what), port["network_id"], port["mac"]), res.out), \
        res.out[-4000:]
    m = re.search(r'"msg": "TIMEDOUT failed=True msg=no DHCP lease for %s in \S+/leases after 8 s: (.*)"'
                  % re.escape(what), res.out)
    assert m and "dnsmasq has not heard from MAC %s" % port["mac"] in m.group(1), res.out[-4000:]
    assert "waiting for %s to hold its DHCP lease" % what in res.out
    assert re.search(r"still waiting for %s: [5-7] s of 8 s" % re.escape(what), res.out)
    assert '"msg": "LOOKED failed=False leased=False"' in res.out
    assert port["mac"] not in env.ssh("cat %s/%s/host" % (DHCP, port["network_id"]))
    delete(env, NAME_FIXED)
    assert env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"]) == []


def test_deleting_the_last_guest_leaves_the_host_as_it_was(net_env, killed_then_b):
    env, b = net_env, killed_then_b["b"]
    delete(env, NAME_B)
    assert env.host_snapshot() == env.empty
    assert b["port"]["mac"] not in leases(env, b["port"]["network_id"])
    assert env.query("SELECT * FROM ports") == []
