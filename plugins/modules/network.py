#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: network
short_description: Manage networks on a provider bridge (Neutron networks)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Registry data of the OpenStack Nova boot request flow. The networks named in the boot request are checked by
    nova-api in seed steps 6-7, and in seed steps 22-24 nova-compute asks the network service (quantum-server,
    now Neutron) for a port on each of them.
  - Creates, updates or deletes a network record in the bootflow database. A network is a flat provider network on
    a Linux bridge of the hypervisor hosts; its addressing comes from the subnet created with
    M(bootflow.cloud.subnet).
  - This module does not create the bridge on the hosts; it only records its name. Instances' interfaces are
    plugged into that bridge on whatever host they are scheduled to.
  - Needs a token with the V(admin) role.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the network, unique in the database.
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task.
    type: str
    required: true
  bridge:
    description:
      - Name of the Linux bridge on the hypervisor hosts, for example C(br0).
      - Required when O(state=present). It must be 1 to 15 characters of letters, digits, C(_), C(.) and C(-)
        (the kernel's interface name limit), otherwise the task fails.
      - Changing the bridge of an existing network is allowed only while the network has no ports.
    type: str
  state:
    description:
      - V(present) creates the network or moves it to O(bridge).
      - V(absent) deletes the network together with its subnets; nothing happens when it does not exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Idempotent, the same O(name) with the same O(bridge) reports no change.
  - O(state=absent) and a change of O(bridge) are refused with RV(error=conflict) while any port (of any instance)
    is allocated on the network. Delete those instances first (C(playbooks/delete.yml)).
seealso:
  - module: bootflow.cloud.subnet
  - module: bootflow.cloud.port
  - module: bootflow.cloud.instance
"""

EXAMPLES = r"""
# With an admin token set for the whole play:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"

- name: Create the provider network on bridge br0
  bootflow.cloud.network:
    auth_token: "{{ bootflow_auth.token }}"
    name: public
    bridge: br0

- name: Remove an unused network and its subnets
  bootflow.cloud.network:
    auth_token: "{{ bootflow_auth.token }}"
    name: lab
    state: absent
"""

RETURN = r"""
network:
  description:
    - The network after the task.
    - V(null) when O(state=absent).
    - In check mode, when the network would be created, only C(name) and C(bridge) are returned.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the network.
      type: str
      returned: success, except in check mode when the network would be created
      sample: 3b0c6e1f-9a2d-4c5b-8e7f-1a2b3c4d5e6f
    name:
      description: Name of the network.
      type: str
      returned: success
      sample: public
    bridge:
      description: Linux bridge on the hypervisor hosts.
      type: str
      returned: success
      sample: br0
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the network would be created
      sample: "2025-01-10T09:15:02.123456Z"
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a caller without the V(admin) role,
      V(invalid) for a bad name or bridge, V(conflict) when the network still has ports.
  returned: failure
  type: str
  sample: conflict
"""
