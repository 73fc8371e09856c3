#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: flavor
short_description: Manage flavors in the bootflow compute registry (Nova flavors)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Registry data of the OpenStack Nova boot request flow. The flavor named in the boot request is checked by
    nova-api in seed steps 6-7, its RAM, CPU and disk are what nova-scheduler filters and weighs hosts on in seed
    steps 10-11, and nova-conductor returns it to nova-compute in seed steps 16-17.
  - Creates, updates or deletes a flavor (vCPUs, RAM, root disk, extra specs) in the bootflow database.
  - Needs a token with the V(admin) role.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the flavor, unique in the database.
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task.
    type: str
    required: true
  vcpus:
    description:
      - Number of virtual CPUs.
      - Required when O(state=present). Must be between 1 and 2147483647 (Nova's limit), otherwise the task fails.
    type: int
  ram_mb:
    description:
      - Memory in MiB.
      - Required when O(state=present). Must be between 1 and 2147483647 (Nova's limit), otherwise the task fails.
    type: int
  disk_gb:
    description:
      - Size of the root disk in GiB; the scheduler claims this much disk on the chosen host.
      - V(0) claims no disk and skips the checks of the image's C(min_disk) and size when an instance is created.
      - A negative value, or one over 2147483647, fails the task.
    type: int
    default: 1
  extra_specs:
    description:
      - Flavor extra specs, matched by the scheduler's C(ComputeCapabilitiesFilter) against what the compute nodes
        report, as in Nova. Keys are C(capabilities:<attribute>) or a bare host attribute name (a bare key the
        host does not know is ignored); values are a plain string or an operator expression such as
        C(>= 4), C(s== x86_64) or C(<or> kvm <or> qemu).
      - Keys with another scope (for example C(hw:cpu_policy)) are stored but not used by the scheduler.
    type: dict
    default: {}
  state:
    description:
      - V(present) creates the flavor or updates it to the given values.
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
  - Idempotent, the same O(name) with the same values reports no change.
  - Unlike Nova, whose flavors are immutable, a flavor can be changed in place as long as no live instance uses it.
    While a live (not deleted) instance uses the flavor, changing it or deleting it with O(state=absent) is refused
    with RV(error=conflict); create a flavor with a new name instead.
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.image
"""

EXAMPLES = r"""
# All tasks need an admin token; set it once for the play:
#
# - hosts: localhost
#   gather_facts: false
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"
#   tasks: ...

- name: Create the m1.small flavor
  bootflow.cloud.flavor:
    auth_token: "{{ bootflow_auth.token }}"
    name: m1.small
    vcpus: 1
    ram_mb: 2048
    disk_gb: 20

- name: Create a flavor for x86_64 KVM hosts only
  bootflow.cloud.flavor:
    auth_token: "{{ bootflow_auth.token }}"
    name: m1.kvm
    vcpus: 2
    ram_mb: 4096
    disk_gb: 40
    extra_specs:
      capabilities:arch: x86_64
      capabilities:hypervisor_type: "<or> QEMU <or> KVM"

- name: Remove a flavor no instance uses any more
  bootflow.cloud.flavor:
    auth_token: "{{ bootflow_auth.token }}"
    name: m1.tiny
    state: absent
"""

RETURN = r"""
flavor:
  description:
    - The flavor after the task.
    - V(null) when O(state=absent).
    - C(id) and C(created_at) are only returned when the flavor already existed and was left unchanged.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the flavor.
      type: str
      returned: when the flavor existed and was not changed
      sample: 0f5e9c2a-6b1d-4a7e-8c3f-2d1e0b9a8c7d
    name:
      description: Name of the flavor.
      type: str
      returned: success
      sample: m1.small
    vcpus:
      description: Number of virtual CPUs.
      type: int
      returned: success
      sample: 1
    ram_mb:
      description: Memory in MiB.
      type: int
      returned: success
      sample: 2048
    disk_gb:
      description: Root disk in GiB.
      type: int
      returned: success
      sample: 20
    extra_specs:
      description: Extra specs of the flavor.
      type: dict
      returned: success
      sample: {"capabilities:arch": "x86_64"}
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: when the flavor existed and was not changed
      sample: "2025-01-10T09:15:02.123456Z"
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a caller without the V(admin) role,
      V(invalid) for bad values, V(conflict) when a flavor in use would be changed or deleted.
  returned: failure
  type: str
  sample: conflict
"""
