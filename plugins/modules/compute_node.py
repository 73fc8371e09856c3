#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: compute_node
short_description: Report a hypervisor host's resources from libvirt, or its heartbeat (nova-compute's resource tracker)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Reads the host's resources from libvirt on the hypervisor host, like the resource tracker of
    nova-compute does at start-up - vCPUs, memory, local disk of the instances directory, CPU
    architecture, hypervisor type and version, libvirt version, host name.
  - Memory is the host's total memory as the kernel counts it (C(MemTotal), libvirt's C(getMemoryStats)).
    If libvirt's C(getInfo) reports more, that figure is used. C(getInfo) adds up the NUMA nodes' memory, and that
    sum can be far smaller, for example on kernels that set up memory lazily (C(deferred_init=lazy)). See
    RV(compute_node.numa_memory_mb).
  - The controller stores what the host has, together with the configured reservation, allocation ratios,
    O(availability_zone), O(aggregates) and O(traits). With O(placement_backend=placement) it also updates the
    host's resource provider in Placement.
  - With O(heartbeat=true), only proves that the host and its libvirt answer. This is the compute service's
    heartbeat. The controller refreshes the node's last-seen time and leaves its inventory and its Placement
    provider alone. M(bootflow.cloud.schedule) treats a node as down after O(bootflow.cloud.schedule#module:service_down_time)
    seconds without a report or heartbeat. C(playbooks/boot.yml) sends heartbeats for the candidate hosts whose last
    one is older than O(report_interval), just before scheduling. A successful M(bootflow.cloud.domain) step with
    O(bootflow.cloud.domain#module:auth_token) also counts as the host's heartbeat (its libvirt answered).
  - Also reports the virtualisation type a domain would get with O(bootflow.cloud.domain#module:virt_type=auto) -
    C(kvm) only when the CPU has the vmx/svm flags B(and) C(/dev/kvm) exists, else C(qemu) (TCG).
  - The action plugin of the same name records the result in the C(compute_nodes) table on the
    controller; the module itself never touches the database.
  - Nothing changes on the host. The task reports a change when the stored inventory, zone, aggregates or traits
    change, or when the Placement provider is updated. A heartbeat never reports a change.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.placement
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
      - Mark the compute service disabled (V(true)) or enabled (V(false)). The scheduler's ComputeFilter rejects a disabled
        host. Used on the controller only.
      - When not given, the node keeps its state, so a report does not enable a host an admin disabled. A new node is
        enabled.
    type: bool
  availability_zone:
    description:
      - The availability zone the host is in (Nova's default zone is V(nova)). A boot with
        O(bootflow.cloud.instance#module:availability_zone=ZONE) only lands on hosts of that zone (AvailabilityZoneFilter;
        in Placement, C(member_of) the zone's aggregate).
      - 1 to 255 characters, without V(:), V(,) or control characters. Used on the controller only.
    type: str
    default: nova
  aggregates:
    description:
      - Names of the host aggregates the host belongs to. A flavor with the extra spec C(member_of=NAME) or
        C(member_of=in:NAME1,NAME2) only lands on hosts of one of those aggregates (AggregateFilter). In Placement, each
        name becomes an aggregate UUID derived from the name.
      - Names are 1 to 255 characters, without V(:), V(,) or control characters. Used on the controller only.
    type: list
    elements: str
    default: []
  traits:
    description:
      - Traits of the host, for example V(CUSTOM_SSD) or V(HW_CPU_X86_AVX2). A flavor with the extra spec
        C(trait:NAME=required) only lands on hosts with that trait, and C(trait:NAME=forbidden) only on hosts without
        it (TraitsFilter; in Placement, C(required=NAME,!OTHER)).
      - Upper-case letters, digits and V(_). Placement knows the standard traits (os-traits). Custom traits must start
        with V(CUSTOM_), and they are created in Placement when needed. Used on the controller only.
    type: list
    elements: str
    default: []
  heartbeat:
    description:
      - Only send the compute service's heartbeat. The module runs on the host (libvirt must answer) and the
        controller refreshes the node's last-seen time. The stored inventory, overrides and the Placement provider are
        left as the last full report made them.
      - The node must already be registered by a full report, else the task fails with RV(error=not_found).
      - A full report needs the V(admin) role; a heartbeat needs V(admin) or V(member) (policy
        C(compute:heartbeat)), because C(playbooks/boot.yml) sends it with the booting user's token.
      - Used on the controller only.
    type: bool
    default: false
  report_interval:
    description:
      - With O(heartbeat=true), skip the host round trip when the node's last report or heartbeat is younger than this
        many seconds, and return RV(heartbeat=fresh). V(0) always contacts the host. Used on the controller only.
    type: int
    default: 0
notes:
  - Memory and vCPUs are the host totals; allocation ratios and reserved memory are applied by the
    scheduler on the controller (or, with O(placement_backend=placement), by Placement from the provider's inventory).
  - Run it with C(delegate_to) a hypervisor host from a play on C(localhost) to report or heartbeat that host. The compute
    node's name is the delegated inventory host name.
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

- name: Register a host in zone az1 with a trait, as a resource provider of a real Placement
  bootflow.cloud.compute_node:
    auth_token: "{{ bootflow_token }}"
    availability_zone: az1
    aggregates: [ssd-hosts]
    traits: [CUSTOM_SSD]
    placement_backend: placement
    placement_url: http://127.0.0.1:8778

- name: Heartbeats of every hypervisor host whose last one is older than 30 s (from a play on localhost)
  bootflow.cloud.compute_node:
    auth_token: "{{ bootflow_token }}"
    heartbeat: true
    report_interval: 30
  delegate_to: "{{ item }}"
  loop: "{{ groups['hypervisors'] }}"
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
      description: Host memory in MiB (the kernel's C(MemTotal), or libvirt's C(getInfo) figure when that is larger).
      type: int
      sample: 24104
    numa_memory_mb:
      description:
        - The memory libvirt's C(getInfo) reports, which is the sum of the NUMA nodes' memory. For information only.
        - On kernels that set up memory lazily (C(deferred_init=lazy)), this counts only the memory set up so far,
          and it grows while the host runs.
      type: int
      sample: 8537
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
    availability_zone:
      description: The stored availability zone (when the report was recorded on the controller).
      type: str
      sample: nova
    aggregates:
      description: The stored aggregate names, sorted.
      type: list
      elements: str
      sample: [ssd-hosts]
    traits:
      description: The stored traits, sorted.
      type: list
      elements: str
      sample: [CUSTOM_SSD]
    resource_provider:
      description: UUID of the host's resource provider in Placement (the compute node's ID), with O(placement_backend=placement).
      type: str
      sample: 3f0c6b8e-2d4a-4c1e-9b7a-5e6f7a8b9c0d
    updated_at:
      description: The node's last-seen time, UTC, after a heartbeat.
      type: str
      sample: "2025-01-10T09:15:02.123456Z"
heartbeat:
  description: V(sent) when a heartbeat reached the host, V(fresh) when it was skipped because of O(report_interval).
  returned: with O(heartbeat=true) and O(auth_token)
  type: str
  sample: sent
report_age:
  description: Seconds since the last report or heartbeat, when the heartbeat was skipped.
  returned: when RV(heartbeat=fresh)
  type: float
  sample: 12.5
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role (also when Placement refuses
      the token), V(not_found) for a heartbeat of a host that was never registered, V(invalid) for a bad option,
      V(placement) when Placement cannot be reached or refuses the provider's inventories, traits or aggregates.
  returned: failure
  type: str
  sample: not_found
placement:
  description: What was updated in Placement (V(provider), V(name), V(inventories), V(traits), V(aggregates)); empty when
    it already matched.
  returned: with O(placement_backend=placement) and O(auth_token), except for heartbeats
  type: list
  elements: str
  sample: [inventories]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.compute_node import compute_node_info
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("compute_node"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    run_libvirt_step(module, lambda conn: dict(changed=False, compute_node=compute_node_info(conn, module.params["instances_path"])),
                     "cannot read the host's resources from libvirt at %s" % module.params["uri"])


if __name__ == "__main__":
    main()
