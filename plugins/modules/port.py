#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: port
short_description: Allocate or release an instance's ports and IP addresses (Neutron, seed steps 22-24)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - The network service's part of the OpenStack Nova boot request flow. In seed step 22 nova-compute asks the
    network API, with the auth token, to allocate and configure the network so that the instance gets an IP
    address; in seed step 23 quantum-server (now neutron-server) validates the token; in seed step 24 nova-compute
    gets the network info back.
  - With O(state=present), allocates one port on each network of the instance's boot request, in request order,
    on the instance's host. Each port gets a random MAC under C(fa:16:3e) and an IP address from the allocation
    pool of the network's subnet (or the address given in O(fixed_ips)). Address and MAC uniqueness is enforced by
    the database, so parallel boots never share an address. When a port is created and the instance is
    C(building), its task_state becomes C(networking), and the step is recorded in its step log (seed steps
    V(22-24), service V(neutron-server)).
  - When a subnet's pool is exhausted, the instance goes to C(vm_state=error) with the reason as its fault and the
    task fails with RV(error=invalid).
  - With O(state=absent), deletes all ports of the instance (used by C(playbooks/delete.yml)). The instance's state
    is not changed.
  - The ports start with status V(DOWN); M(bootflow.cloud.dhcp_lease) writes the DHCP reservation on the host and
    marks them V(ACTIVE).
  - Needs a token with the V(admin) or V(member) role.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  instance:
    description:
      - Name or UUID of the instance (see M(bootflow.cloud.instance)).
      - An unknown instance fails with RV(error=not_found). With O(state=present), an instance that has no host
        yet fails with RV(error=invalid); schedule it first with M(bootflow.cloud.schedule).
    type: str
    required: true
  fixed_ips:
    description:
      - Fixed IPv4 address to use per network, as a mapping of network ID or name to address. A network the
        instance is not on fails the task with RV(error=invalid).
      - Only an V(admin) may give it (Neutron's policy C(create_port:fixed_ips:ip_address), policy rule
        C(network:create_port:fixed_ips:ip_address)); a member's task fails with RV(error=auth) before anything
        is changed, whether the address is inside the allocation pool or not.
      - Fixed IPs asked for in the boot request (C(networks) items with C(fixed_ip) in M(bootflow.cloud.boot_request))
        are used without being repeated here; an address given here for the same network wins.
      - The address may lie outside the allocation pool but must be inside the subnet and must not be its network,
        broadcast, gateway or DHCP address, nor an address already allocated; otherwise the task fails with
        RV(error=invalid). Every address is checked before the first port is created, so a bad one leaves no port
        behind.
      - An existing port keeps its address; asking for another address on a network where the instance already
        has a port fails the task with RV(error=conflict).
    type: dict
    default: {}
  state:
    description:
      - V(present) allocates the missing ports.
      - V(absent) deletes all ports of the instance; nothing happens when it has none.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: partial
    details:
      - Predicts whether ports would be created (and fails when a pool is exhausted or a fixed IP is invalid), but
        RV(ports) lists only the ports that already exist.
  diff_mode:
    support: none
notes:
  - Idempotent, an instance that already has a port on a network keeps it; the task reports no change when every
    network already has its port. A port whose host differs from the instance's host is moved to that host without
    reporting a change.
seealso:
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.dhcp_lease
  - module: bootflow.cloud.network
  - module: bootflow.cloud.subnet
  - module: bootflow.cloud.instance_info
"""

EXAMPLES = r"""
# With the token set for the whole play:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"

- name: Allocate the ports of web1 (seed steps 22-24)
  bootflow.cloud.port:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web1
  register: web1_ports

- name: Show the addresses
  ansible.builtin.debug:
    msg: "{{ item.network_name }}: {{ item.ip }} ({{ item.mac }})"
  loop: "{{ web1_ports.ports }}"

- name: Look up the ID of network public
  bootflow.cloud.network:
    auth_token: "{{ bootflow_auth.token }}"
    name: public
    bridge: br0
  register: public_net

- name: Give db1 a fixed address on network public
  bootflow.cloud.port:
    auth_token: "{{ bootflow_auth.token }}"
    instance: db1
    fixed_ips: "{{ {public_net.network.id: '192.168.100.10'} }}"

- name: Release the ports of a deleted instance
  bootflow.cloud.port:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web1
    state: absent
"""

RETURN = r"""
ports:
  description: The instance's ports after the task, with their network addressing.
  returned: when O(state=present) succeeded
  type: list
  elements: dict
  contains:
    id:
      description: ID of the port.
      type: str
      returned: success
      sample: 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
    mac:
      description: MAC address of the interface.
      type: str
      returned: success
      sample: fa:16:3e:4c:2a:91
    ip:
      description: Fixed IPv4 address.
      type: str
      returned: success
      sample: 192.168.100.17
    hostname:
      description: Host name the DHCP server hands out for the address.
      type: str
      returned: success
      sample: host-192-168-100-17
    network_id:
      description: ID of the network.
      type: str
      returned: success
      sample: 3b0c6e1f-9a2d-4c5b-8e7f-1a2b3c4d5e6f
    network_name:
      description: Name of the network.
      type: str
      returned: success
      sample: public
    bridge:
      description: Linux bridge on the host the interface is plugged into.
      type: str
      returned: success
      sample: br0
    subnet_id:
      description: ID of the subnet the address comes from.
      type: str
      returned: success
      sample: 7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f
    cidr:
      description: The subnet in CIDR notation.
      type: str
      returned: success
      sample: 192.168.100.0/24
    prefixlen:
      description: Prefix length of the subnet.
      type: int
      returned: success
      sample: 24
    gateway_ip:
      description: Gateway of the subnet.
      type: str
      returned: success
      sample: 192.168.100.1
    dhcp_ip:
      description: Address of the DHCP server.
      type: str
      returned: success
      sample: 192.168.100.2
    dns_servers:
      description: DNS servers handed out by DHCP.
      type: list
      elements: str
      returned: success
      sample: [192.168.100.1]
    status:
      description: V(DOWN) until M(bootflow.cloud.dhcp_lease) ran, then V(ACTIVE).
      type: str
      returned: success
      sample: DOWN
released:
  description: The port records that were deleted (or, in check mode, would be).
  returned: when O(state=absent)
  type: list
  elements: dict
  contains:
    id:
      description: ID of the port.
      type: str
      returned: success
      sample: 6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d
    network_id:
      description: ID of the network.
      type: str
      returned: success
      sample: 3b0c6e1f-9a2d-4c5b-8e7f-1a2b3c4d5e6f
    subnet_id:
      description: ID of the subnet.
      type: str
      returned: success
      sample: 7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f
    instance_uuid:
      description: UUID of the instance.
      type: str
      returned: success
      sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    device_owner:
      description: Owner of the port.
      type: str
      returned: success
      sample: compute:nova
    mac:
      description: MAC address.
      type: str
      returned: success
      sample: fa:16:3e:4c:2a:91
    ip:
      description: IPv4 address.
      type: str
      returned: success
      sample: 192.168.100.17
    host:
      description: Host the port was bound to.
      type: str
      returned: success
      sample: hv1
    status:
      description: V(DOWN) or V(ACTIVE).
      type: str
      returned: success
      sample: ACTIVE
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T09:15:04.345678Z"
bootflow_step:
  description:
    - The row of the seed-style step table the C(bootflow.cloud.request_flow) callback prints.
    - The step is stored in the instance's step log only when a port was created (not in check mode).
  returned: when O(state=present) succeeded
  type: dict
  contains:
    instance:
      description: Name of the instance.
      type: str
      returned: always
      sample: web1
    seed_steps:
      description: The seed steps of the request flow this task performed.
      type: str
      returned: always
      sample: 22-24
    service:
      description: The OpenStack service that plays this step.
      type: str
      returned: always
      sample: neutron-server
    action:
      description: What the service did.
      type: str
      returned: always
      sample: allocate_ports
    host:
      description: The instance's host.
      type: str
      returned: always
      sample: hv1
    from:
      description: C(vm_state/task_state) before the step.
      type: str
      returned: always
      sample: building/scheduling
    to:
      description: C(vm_state/task_state) after the step.
      type: str
      returned: always
      sample: building/networking
    changed:
      description: Whether a port was created.
      type: bool
      returned: always
      sample: true
    ms:
      description: Duration of the step in milliseconds.
      type: int
      returned: always
      sample: 18
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role, V(not_found) for an
      unknown instance or a network that vanished, V(invalid) for an instance without a host, a bad fixed IP or an
      exhausted pool, V(conflict) when a port could not be allocated under heavy contention.
  returned: failure
  type: str
  sample: invalid
"""
