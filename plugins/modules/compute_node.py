#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compute_node
short_description: Report a hypervisor host's resources from libvirt (like nova-compute's resource tracker)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Reads the host's resources from libvirt on the hypervisor host, like the resource tracker of
    nova-compute does at start-up - vCPUs, memory, local disk of the instances directory, CPU
    architecture, hypervisor type and version, libvirt version, host name.
  - Also reports the virtualisation type a domain would get with O(bootflow.cloud.domain#module:virt_type=auto) -
    C(kvm) only when the CPU has the vmx/svm flags B(and) C(/dev/kvm) exists, else C(qemu) (TCG).
  - The action plugin of the same name records the result in the C(compute_nodes) table on the
    controller; the module itself never touches the database.
  - Read-only; never reports a change.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  instances_path:
    description:
      - Directory holding the instance disks and the image cache on the host. RV(compute_node.local_gb) and the free
        disk space are those of the filesystem holding it (or its nearest existing parent).
    type: path
    default: /var/lib/bootflow/instances
  reserved_host_memory_mb:
    description:
      - Memory in MiB kept for the host itself; the scheduler offers C(memory_mb - reserved_host_memory_mb).
      - Used on the controller only (stored with the report when O(auth_token) is given).
    type: int
    default: 512
  cpu_allocation_ratio:
    description:
      - vCPU overcommit ratio (Nova's C(initial_cpu_allocation_ratio)); capacity is C((vcpus - reserved) * ratio).
      - Used on the controller only.
    type: float
    default: 4.0
  ram_allocation_ratio:
    description: Memory overcommit ratio. Used on the controller only.
    type: float
    default: 1.0
  disk_allocation_ratio:
    description: Local disk overcommit ratio. Used on the controller only.
    type: float
    default: 1.0
  vcpus:
    description:
      - Offer this many vCPUs instead of what libvirt reports (for hosts that should offer less than they have,
        and for tests). Used on the controller only.
    type: int
  memory_mb:
    description: Offer this much memory (MiB) instead of what libvirt reports. Used on the controller only.
    type: int
  local_gb:
    description: Offer this much local disk (GiB) instead of the size of O(instances_path)'s filesystem. Used on the controller only.
    type: int
  disabled:
    description:
      - Mark the compute service disabled; the scheduler's ComputeFilter then rejects the host. Used on the controller only.
    type: bool
    default: false
notes:
  - Memory and vCPUs are the host totals; allocation ratios and reserved memory are applied by the
    scheduler on the controller.
seealso:
  - module: bootflow.cloud.schedule
"""

EXAMPLES = r"""
- name: Register the hypervisor host
  bootflow.cloud.compute_node:
    uri: qemu:///system
  register: node

- name: Show what the scheduler will see
  ansible.builtin.debug:
    msg: "{{ node.compute_node.vcpus }} vCPUs, {{ node.compute_node.memory_mb }} MiB, {{ node.compute_node.virt_type }}"
"""

RETURN = r"""
compute_node:
  description: The host's resources.
  returned: success
  type: dict
  contains:
    hostname:
      description: Host name as libvirt reports it (C(getHostname)).
      type: str
      sample: hv1.example.org
    arch:
      description: CPU architecture.
      type: str
      sample: x86_64
    vcpus:
      description: Number of host CPUs.
      type: int
      sample: 2
    memory_mb:
      description: Host memory in MiB.
      type: int
      sample: 24031
    local_gb:
      description: Size in GiB of the filesystem holding O(instances_path).
      type: int
      sample: 98
    free_disk_gb:
      description: Free GiB on that filesystem (for unprivileged users).
      type: int
      sample: 60
    hypervisor_type:
      description: libvirt driver type (C(getType)).
      type: str
      sample: QEMU
    hypervisor_version:
      description: Hypervisor version as an integer (major * 1000000 + minor * 1000 + micro).
      type: int
      sample: 7002022
    libvirt_version:
      description: libvirt library version as an integer.
      type: int
      sample: 9000000
    virt_type:
      description: Domain type chosen for O(bootflow.cloud.domain#module:virt_type=auto) on this host.
      type: str
      sample: qemu
    kvm_device:
      description: Whether C(/dev/kvm) exists.
      type: bool
      sample: true
    running_vms:
      description: Number of active domains on this libvirt connection.
      type: int
      sample: 0
    instances_path:
      description: The O(instances_path) option.
      type: str
      sample: /var/lib/bootflow/instances
    disk_stat_path:
      description: The existing directory whose filesystem was measured.
      type: str
      sample: /var/lib/bootflow/instances
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils._argspec import (
    AUTH_ARGSPEC,
    LIBVIRT_ARGSPEC,
    argspec,
)
from ansible_collections.bootflow.cloud.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    run_libvirt_step,
    compute_node_info,
)


def main():
    module = AnsibleModule(
        argument_spec=argspec(
            AUTH_ARGSPEC,
            LIBVIRT_ARGSPEC,
            instances_path=dict(type="path", default="/var/lib/bootflow/instances"),
            # consumed by the action plugin on the controller (stored with the report), not here
            reserved_host_memory_mb=dict(type="int", default=512),
            cpu_allocation_ratio=dict(type="float", default=4.0),
            ram_allocation_ratio=dict(type="float", default=1.0),
            disk_allocation_ratio=dict(type="float", default=1.0),
            vcpus=dict(type="int"),
            memory_mb=dict(type="int"),
            local_gb=dict(type="int"),
            disabled=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    run_libvirt_step(module, lambda conn: dict(changed=False, compute_node=compute_node_info(conn, module.params["instances_path"])),
                     "cannot read the host's resources from libvirt at %s" % module.params["uri"])


if __name__ == "__main__":
    main()
