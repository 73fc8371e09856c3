#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: subnet
short_description: Manage IPv4 subnets and allocation pools of a network (Neutron subnets)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Registry data of the OpenStack Nova boot request flow. nova-api refuses a boot request on a network without a
    subnet (seed steps 6-7), and in seed steps 22-24 the network service allocates each instance's IP address from
    the subnet's allocation pool and hands the addressing (gateway, DHCP server, DNS servers) back to nova-compute.
  - Creates, updates or deletes a subnet of network O(network) in the bootflow database. Defaults follow Neutron.
    The gateway is the first host address, the DHCP server takes the first address of the allocation pool, and the
    pool is the largest run of host addresses left free.
  - Needs a token with the V(admin) role.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the subnet, unique within O(network).
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task.
    type: str
    required: true
  network:
    description:
      - Name or ID of the network the subnet belongs to (see M(bootflow.cloud.network)).
      - An unknown network fails the task with RV(error=not_found), also with O(state=absent).
    type: str
    required: true
  cidr:
    description:
      - IPv4 network in CIDR notation, for example C(192.168.100.0/24).
      - Required when O(state=present). It must be IPv4, have no host bits set and be a C(/29) or larger;
        otherwise the task fails with RV(error=invalid).
    type: str
  gateway_ip:
    description:
      - Gateway handed to the instances by DHCP. Defaults to the first host address of O(cidr).
      - It must be inside O(cidr), not its network or broadcast address, and outside the allocation pool.
    type: str
  dhcp_ip:
    description:
      - Address of the DHCP server on the bridge. Defaults to the first address of the allocation pool, which
        then starts one address later.
      - It must be inside O(cidr), not the gateway, not the network or broadcast address, and outside an explicit
        allocation pool.
    type: str
  pool_start:
    description:
      - First address of the allocation pool instances get their IP from. Must be given together with O(pool_end).
      - Without O(pool_start) and O(pool_end), the pool is the largest run of host addresses free of the gateway
        (and of an explicit O(dhcp_ip)).
      - The pool must lie inside O(cidr), start before it ends and not contain the gateway or O(dhcp_ip); it must
        still hold at least one address once the DHCP server took its address.
    type: str
  pool_end:
    description:
      - Last address of the allocation pool. Must be given together with O(pool_start).
    type: str
  dns_servers:
    description:
      - DNS servers handed to the instances by DHCP, in order.
      - Each must be an IPv4 address (dnsmasq hands out nothing else); otherwise the task fails with RV(error=invalid).
    type: list
    elements: str
    default: []
  state:
    description:
      - V(present) creates the subnet or updates it to the given values.
      - V(absent) deletes it; nothing happens when it does not exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Idempotent, the same O(name) on the same O(network) with the same (normalised) values reports no change.
  - Changing a subnet and O(state=absent) are refused with RV(error=conflict) while any port is allocated from it.
  - Ports are allocated from the oldest subnet of a network; further subnets on the same network are stored but
    not used for allocation.
  - Only IPv4 is supported.
seealso:
  - module: bootflow.cloud.network
  - module: bootflow.cloud.port
"""

EXAMPLES = r"""
# With an admin token set for the whole play:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"

- name: Create a subnet with Neutron-style defaults (gateway .1, DHCP .2, pool .3-.254)
  bootflow.cloud.subnet:
    auth_token: "{{ bootflow_auth.token }}"
    name: public-v4
    network: public
    cidr: 192.168.100.0/24
    dns_servers:
      - 192.168.100.1

- name: Create a subnet with an explicit gateway, DHCP address and pool
  bootflow.cloud.subnet:
    auth_token: "{{ bootflow_auth.token }}"
    name: lab-v4
    network: lab
    cidr: 10.20.0.0/24
    gateway_ip: 10.20.0.254
    dhcp_ip: 10.20.0.2
    pool_start: 10.20.0.100
    pool_end: 10.20.0.199
    dns_servers:
      - 9.9.9.9
      - 1.1.1.1

- name: Remove a subnet no port uses
  bootflow.cloud.subnet:
    auth_token: "{{ bootflow_auth.token }}"
    name: lab-v4
    network: lab
    state: absent
"""

RETURN = r"""
subnet:
  description:
    - The subnet after the task, with the defaults filled in.
    - V(null) when O(state=absent).
    - C(id) and C(created_at) are only returned when the subnet already existed and was left unchanged.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the subnet.
      type: str
      returned: when the subnet existed and was not changed
      sample: 7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f
    network_id:
      description: ID of the network.
      type: str
      returned: success
      sample: 3b0c6e1f-9a2d-4c5b-8e7f-1a2b3c4d5e6f
    name:
      description: Name of the subnet.
      type: str
      returned: success
      sample: public-v4
    cidr:
      description: The network in CIDR notation.
      type: str
      returned: success
      sample: 192.168.100.0/24
    gateway_ip:
      description: Gateway address.
      type: str
      returned: success
      sample: 192.168.100.1
    dhcp_ip:
      description: Address of the DHCP server.
      type: str
      returned: success
      sample: 192.168.100.2
    pool_start:
      description: First allocatable address.
      type: str
      returned: success
      sample: 192.168.100.3
    pool_end:
      description: Last allocatable address.
      type: str
      returned: success
      sample: 192.168.100.254
    dns_servers:
      description: DNS servers handed out by DHCP.
      type: list
      elements: str
      returned: success
      sample: [192.168.100.1]
    enable_dhcp:
      description: Always V(true), instances get their address by DHCP.
      type: bool
      returned: success
      sample: true
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: when the subnet existed and was not changed
      sample: "2025-01-10T09:15:02.123456Z"
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a caller without the V(admin) role,
      V(not_found) for an unknown network, V(invalid) for bad addressing, V(conflict) when the subnet has ports.
  returned: failure
  type: str
  sample: invalid
"""
