#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: dhcp_lease
short_description: Reserve a port's IP address in the network's dnsmasq on the hypervisor host (like neutron's DHCP agent)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Runs one dnsmasq per network, the way neutron's DHCP agent does, with its files in
    C(<dhcp_dir>/<network_id>/) (C(host), C(opts), C(leases), C(pid), C(interface), C(dnsmasq.log)), plus
    a C(ports) file recording which port owns which reservation.
    The range is static, so only reserved MAC addresses get an address.
  - With O(state=present), puts O(dhcp_ip) on O(bridge) (like neutron's DHCP port), writes the
    options file (router, DNS servers) and the reservation line C(<mac>,<hostname>,<ip>)
    atomically when they differ, starts dnsmasq when it does not run (after seeding the leases file so
    running guests are not refused), restarts it when its command line must change (bridge, subnet or
    lease time), or sends it C(SIGHUP) to re-read the files.
  - The IP and the MAC may not already be reserved for another port of the network.
  - With O(state=absent), removes the reservation, asks a running dnsmasq to drop the guest's lease
    with C(dhcp_release) (a stopped dnsmasq's leases file is edited directly) and sends C(SIGHUP).
  - With O(state=leased), waits until the guest holds its lease - the port's MAC with its IP (O(ip), when
    given) in dnsmasq's leases file, not expired - and returns the address it observed (RV(leased_ip)).
    The action plugin then runs a shell loop on the host over the task's connection (no module run) that
    looks at the leases file every 0.05 seconds (a C(grep)) and returns when the MAC's lines change, or after
    5 seconds for a progress line; after O(wait_timeout) seconds the task fails with
    what it found (no reservation, dnsmasq not running, another address, an expired lease, dnsmasq's log
    lines for the MAC). It fails at once when nobody can hand out the address (no reservation, or dnsmasq does
    not run). With O(wait=false) or in check mode it looks once and reports RV(leased) without failing. With
    O(auth_token) and O(port_id), the MAC and IP come from the port record; without them, O(port_id) finds
    them in the network's C(ports) file.
  - A reservation that O(state=present) adds is not pre-seeded into the leases file when dnsmasq is
    (re)started (reservations that already existed are, so their running guests are not refused); so a lease
    for it in that file means the guest really asked dnsmasq for its address.
  - A running dnsmasq is recognised by its pid file B(and) its command line naming this network's
    directory, so a recycled PID is never signalled.
  - On failure, the files, the address and the directory this call changed are put back.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.wait
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the hosts file (and the options file when it changes) before and after.
options:
  network_id:
    description:
      - Id of the network; names the directory C(<dhcp_dir>/<network_id>) and the dnsmasq tag
        C(subnet-<network_id>) (one IPv4 subnet per network).
    type: str
    required: true
  bridge:
    description:
      - Linux bridge of the network on this host, where dnsmasq listens. It must exist (the hypervisor
        role creates it).
      - Required with O(state=present). With O(state=absent) it defaults to the bridge recorded in the
        network's C(interface) file.
    type: str
  cidr:
    description:
      - IPv4 subnet of the network, for example C(10.99.1.0/24).
      - Required with O(state=present).
    type: str
  dhcp_ip:
    description:
      - Address of the DHCP server, put on O(bridge) with the prefix length of O(cidr).
      - Required with O(state=present).
    type: str
  gateway_ip:
    description:
      - Router handed to the guests. Without it, no router is announced.
    type: str
  dns_servers:
    description:
      - DNS servers handed to the guests.
    type: list
    elements: str
    default: []
  mac:
    description:
      - MAC address of the port.
      - Required with O(state=present).
    type: str
  ip:
    description:
      - Fixed IP address of the port, inside O(cidr).
      - Required with O(state=present).
    type: str
  hostname:
    description:
      - Host name handed to the guest. Defaults to neutron's C(host-<ip with dashes>).
      - DNS labels of letters, digits and C(-), separated by C(.). Anything else (a newline, a comma, a control or
        format character) fails the task before the host is contacted (with O(auth_token), already on the controller,
        as an invalid request); the writer of dnsmasq's hosts file refuses such a field as well.
    type: str
  port_id:
    description:
      - Id of the port; recorded in the network's C(ports) file, so later calls (also O(state=absent) with
        only O(port_id)) find the port's reservation even when its MAC changed, and conflicts name the port.
      - Without it, the reservation is identified by O(mac).
      - Unlike neutron, the hosts line carries no C(set:port-<port_id>) tag - dnsmasq 2.90 (Debian 12)
        crashes on C(SIGHUP) when a tagged line has an active lease.
    type: str
  lease_time:
    description:
      - Lease time in seconds, from 120 (dnsmasq's minimum) to 2147483647 (dnsmasq reads it as a signed 32-bit
        number).
    type: int
    default: 86400
  dhcp_dir:
    description:
      - Directory holding one sub-directory per network.
    type: path
    default: /var/lib/bootflow/dhcp
  state:
    description:
      - V(present) reserves the address, V(absent) removes the reservation (identified by O(port_id),
        else O(mac), else O(ip)).
      - V(leased) changes nothing, it waits until the guest holds its lease (see the description).
        O(wait) and O(wait_timeout) apply to it only.
    type: str
    choices: [present, absent, leased]
    default: present
requirements:
  - dnsmasq (Debian package C(dnsmasq-base)) and iproute2 on the hypervisor host
  - dhcp_release (Debian package C(dnsmasq-utils)) to release leases with O(state=absent)
notes:
  - Run it in the network namespace of the bridge; dnsmasq is started there.
  - The module never rewrites the leases file while dnsmasq runs; dnsmasq owns it then.
seealso:
  - module: bootflow.cloud.port
"""

EXAMPLES = r"""
- name: Reserve the port's address (after bootflow.cloud.port)
  bootflow.cloud.dhcp_lease:
    network_id: "{{ item.network_id }}"
    bridge: "{{ item.bridge }}"
    cidr: "{{ item.cidr }}"
    dhcp_ip: "{{ item.dhcp_ip }}"
    gateway_ip: "{{ item.gateway_ip }}"
    dns_servers: "{{ item.dns_servers }}"
    mac: "{{ item.mac }}"
    ip: "{{ item.ip }}"
    hostname: "{{ item.hostname }}"
    port_id: "{{ item.id }}"
  loop: "{{ instance.ports }}"

- name: Wait until the guest holds its address (observed in dnsmasq's leases file)
  bootflow.cloud.dhcp_lease:
    port_id: "{{ item.id }}"
    state: leased
    wait_timeout: 120
  loop: "{{ instance.ports }}"
  register: leases

- name: Remove the reservation when the port is deleted
  bootflow.cloud.dhcp_lease:
    network_id: "{{ port.network_id }}"
    port_id: "{{ port.id }}"
    mac: "{{ port.mac }}"
    ip: "{{ port.ip }}"
    state: absent
"""

RETURN = r"""
hosts_line:
  description: The reservation line in the hosts file (the removed one with O(state=absent)).
  returned: when there is one
  type: str
  sample: 52:54:00:00:01:11,host-10-99-1-11,10.99.1.11
dnsmasq_pid:
  description: PID of the network's dnsmasq, if it runs.
  returned: always
  type: int
  sample: 4242
dnsmasq_started:
  description: Whether dnsmasq was started by this call.
  returned: always
  type: bool
  sample: false
dnsmasq_restarted:
  description: Whether dnsmasq was restarted because its command line had to change.
  returned: always
  type: bool
  sample: false
reloaded:
  description: Whether dnsmasq was sent C(SIGHUP) to re-read its files.
  returned: always
  type: bool
  sample: true
lease:
  description: The port's entry in the leases file, if any (for O(state=absent), the lease released).
  returned: always
  type: dict
  sample: {expiry: 1795391513, mac: "52:54:00:00:01:11", ip: 10.99.1.11, hostname: host-10-99-1-11, client_id: "01:52:54:00:00:01:11"}
leased:
  description: Whether the guest holds its lease (O(state=leased)).
  returned: with O(state=leased)
  type: bool
  sample: true
leased_ip:
  description: The address dnsmasq leased to the port's MAC, as observed in the leases file.
  returned: with O(state=leased)
  type: str
  sample: 10.99.1.11
waited:
  description: Seconds spent waiting for the lease.
  returned: with O(state=leased)
  type: float
  sample: 4.2
mac:
  description: The MAC address looked for.
  returned: with O(state=leased)
  type: str
  sample: 52:54:00:00:01:11
ip:
  description: The address looked for (none when only the MAC was known).
  returned: with O(state=leased)
  type: str
  sample: 10.99.1.11
leases_file:
  description: The leases file looked at.
  returned: with O(state=leased)
  type: str
  sample: /var/lib/bootflow/dhcp/5a1c0d9e-2b3f-4c5d-8e9f-0a1b2c3d4e5f/leases
reserved:
  description: Whether the hosts file holds a reservation for the MAC (and IP).
  returned: with O(state=leased)
  type: bool
  sample: true
hopeless:
  description: Whether nobody can hand the address out (no reservation, or dnsmasq does not run), so waiting is pointless.
  returned: with O(state=leased)
  type: bool
  sample: false
diagnosis:
  description: Why there is no lease (empty when there is one).
  returned: with O(state=leased)
  type: list
  elements: str
  sample: ["dnsmasq for network 5a1c0d9e-2b3f-4c5d-8e9f-0a1b2c3d4e5f is not running (pid file ...)"]
conf_dir:
  description: The network's dnsmasq directory.
  returned: always
  type: str
  sample: /var/lib/bootflow/dhcp/5a1c0d9e-2b3f-4c5d-8e9f-0a1b2c3d4e5f
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish
from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.dhcp import dhcp_lease_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("dhcp_lease"))

    finish(module, lambda: dhcp_lease_step(module.params, check_mode=module.check_mode, run=run_argv),
           "dhcp_lease on network %s" % module.params["network_id"])


if __name__ == "__main__":
    main()
