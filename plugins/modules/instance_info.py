#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_info
short_description: Get everything the compute side needs to build an instance (nova-conductor, seed steps 13-18)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - nova-conductor's part of the OpenStack Nova boot request flow. In seed step 13 nova-compute picks up the build
    request; in seed step 14 it asks nova-conductor for the instance information (host, flavor with RAM, CPU and
    disk); in seed steps 15-17 the conductor reads it from the database and returns it, and in seed step 18
    nova-compute picks the answer up.
  - Returns the instance record together with its flavor, image metadata, ports with their network addressing,
    volumes, host allocation, user data, libvirt domain name, console log path and step log, in one
    RV(instance) dict. The host-side steps (M(bootflow.cloud.image_fetch), M(bootflow.cloud.dhcp_lease),
    M(bootflow.cloud.volume), M(bootflow.cloud.domain)) are fed from it.
  - Read-only, it never changes anything and never records a step in the database.
  - Needs a token with the V(admin), V(member) or V(reader) role. Names are looked up in the caller's project;
    an admin can also reach an instance of another project by UUID.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  instance:
    description:
      - Name or UUID of the instance. Deleted instances are not found.
      - An unknown instance fails with RV(error=not_found) unless O(missing_ok=true); a name matching several
        instances fails with RV(error=conflict).
    type: str
    required: true
  missing_ok:
    description:
      - When V(true), an unknown instance is not an error; RV(exists) is V(false) and RV(instance) is V(null).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    details:
      - Read-only, it runs normally in check mode.
  diff_mode:
    support: none
notes:
  - The user data is not returned, only RV(instance.user_data_size) and RV(instance.user_data_sha256).
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.port
"""

EXAMPLES = r"""
# A reader token is enough; set it once for the play:
#
# - hosts: localhost
#   gather_facts: false
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"
#   tasks:
#     - name: Ask the conductor about web1
#       bootflow.cloud.instance_info:
#         instance: web1
#       register: web1

- name: Get the instance spec for the compute side (seed steps 13-18)
  bootflow.cloud.instance_info:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web1
  register: web1

- name: Show where it runs and its addresses
  ansible.builtin.debug:
    msg: >-
      {{ web1.instance.name }} is {{ web1.instance.status }} on {{ web1.instance.host }},
      IPs {{ web1.instance.ports | map(attribute='ip') | join(', ') }}

- name: Look an instance up by UUID without failing when it is gone
  bootflow.cloud.instance_info:
    auth_token: "{{ bootflow_auth.token }}"
    instance: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    missing_ok: true
  register: maybe

- name: Report a missing instance
  ansible.builtin.debug:
    msg: The instance does not exist (any more).
  when: not maybe.exists
"""

RETURN = r"""
exists:
  description: Whether the instance exists. V(false) only with O(missing_ok=true).
  returned: success
  type: bool
  sample: true
instance:
  description:
    - The conductor's answer, everything the compute side needs about the instance.
    - V(null) when the instance does not exist and O(missing_ok=true).
  returned: success
  type: dict
  contains:
    uuid:
      description: UUID of the instance; also the libvirt domain UUID.
      type: str
      returned: success
      sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    name:
      description: Name of the instance.
      type: str
      returned: success
      sample: web1
    project_id:
      description: ID of the owning project.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    user_id:
      description: ID of the user that created the instance.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    flavor_id:
      description: ID of the flavor.
      type: str
      returned: success
      sample: 0f5e9c2a-6b1d-4a7e-8c3f-2d1e0b9a8c7d
    image_id:
      description: ID of the image.
      type: str
      returned: success
      sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    host:
      description: The hypervisor host the instance is scheduled to, V(null) before M(bootflow.cloud.schedule).
      type: str
      returned: success
      sample: hv1
    vm_state:
      description: Nova vm_state (V(building), V(active), V(error)).
      type: str
      returned: success
      sample: building
    task_state:
      description: Nova task_state (V(scheduling), V(networking), V(block_device_mapping), V(spawning) or V(null)).
      type: str
      returned: success
      sample: scheduling
    power_state:
      description: Power state of the domain.
      type: str
      returned: success
      sample: NOSTATE
    status:
      description: The status the API shows (V(BUILD), V(ACTIVE), V(ERROR)).
      type: str
      returned: success
      sample: BUILD
    domain_name:
      description: Name of the libvirt domain on the host, C(bootflow-<uuid>).
      type: str
      returned: success
      sample: bootflow-2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    console_log:
      description:
        - Path of the serial console log on the host, as the host's M(bootflow.cloud.image_fetch) reported it when it
          made the instance's directory (under that host's C(instances_path)).
        - Before the build got that far, the path under the default C(/var/lib/bootflow/instances).
      type: str
      returned: success
      sample: /var/lib/bootflow/instances/2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b/console.log
    user_data_size:
      description: Size in bytes (UTF-8) of the boot request's user data, V(null) when none was given. The data
        itself is never returned (it may hold secrets); M(bootflow.cloud.config_drive) reads it from the record.
      type: int
      returned: success
      sample: 27
    user_data_sha256:
      description: SHA-256 (hex) of the user data, V(null) when none was given.
      type: str
      returned: success
      sample: 9f2c1e5b7d3a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6
    key_name:
      description:
        - The key pair the instance was created with (M(bootflow.cloud.instance)'s C(key_name)), V(null) for none.
      type: str
      returned: success
      sample: mykey
    public_keys:
      description:
        - The public keys for the guest, the key pair's key as nova-api copied it at create (one OpenSSH line each),
          V([]) for none. M(bootflow.cloud.config_drive) writes them into the drive's C(public-keys).
      type: list
      elements: str
      returned: success
      sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 me@laptop"]
    fault:
      description:
        - The recorded fault, V(null) unless the instance went to error.
        - C(message), C(step) (the failed task's name or the failed step), C(host) and C(at) (UTC, ISO 8601) are always
          there.
        - A build that failed on its host (see M(bootflow.cloud.reschedule)) adds C(action) (the failed module),
          C(category) (what failed, for example V(host), V(host_resources), V(image), V(no_ips)), C(reschedulable),
          C(reason) (why the build ended in ERROR, for example Nova's C(Exceeded maximum number of retries) or why
          the failure is not reschedulable) and C(attempts) (every failed build - host, step, action, message,
          category, reschedulable, at).
      type: dict
      returned: success
      sample: {"message": "cannot start domain bootflow-6f1c...: Hook script execution failed", "host": "hv3",
               "step": "28 | nova-compute -> libvirt: define and start the domain, wait until it runs",
               "action": "domain", "at": "2025-01-10T09:15:40.5Z", "category": "host", "reschedulable": true,
               "reason": "Exceeded maximum number of retries. Exhausted all hosts available for retrying build
                          failures for instance 6f1c... (3 of max_attempts=3 builds tried; tried hv1, hv2, hv3)",
               "attempts": []}
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T09:15:02.123456Z"
    updated_at:
      description: Time of the last state change, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T09:15:03.234567Z"
    launched_at:
      description: When the domain was first started, V(null) until then.
      type: str
      returned: success
      sample: null
    deleted_at:
      description: Always V(null), deleted instances are not returned.
      type: str
      returned: success
      sample: null
    deleted:
      description: Always V(0), deleted instances are not returned.
      type: int
      returned: success
      sample: 0
    flavor:
      description: The flavor.
      type: dict
      returned: success
      contains:
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
          description: Extra specs.
          type: dict
          returned: success
          sample: {}
    image:
      description: Metadata of the image (Glance's answer of seed steps 19-21), V(null) if the image record is gone.
      type: dict
      returned: success
      contains:
        id:
          description: ID of the image.
          type: str
          returned: success
          sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
        name:
          description: Name of the image.
          type: str
          returned: success
          sample: debian-12
        disk_format:
          description: V(qcow2) or V(raw).
          type: str
          returned: success
          sample: qcow2
        container_format:
          description: Container format.
          type: str
          returned: success
          sample: bare
        size:
          description: Size of the image file in bytes.
          type: int
          returned: success
          sample: 343736320
        virtual_size:
          description: Size of the disk the image describes, in bytes.
          type: int
          returned: success
          sample: 3221225472
        checksum:
          description: MD5 of the image file.
          type: str
          returned: success
          sample: 5d41402abc4b2a76b9719d911017c592
        os_hash_algo:
          description: Algorithm of C(os_hash_value).
          type: str
          returned: success
          sample: sha512
        os_hash_value:
          description: SHA-512 of the image file; the host verifies the fetched file against it.
          type: str
          returned: success
          sample: 9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043
        min_disk:
          description: Smallest root disk in GiB.
          type: int
          returned: success
          sample: 3
        min_ram:
          description: Smallest memory in MiB.
          type: int
          returned: success
          sample: 512
    ports:
      description: The instance's ports with their network addressing (empty before M(bootflow.cloud.port)).
      type: list
      elements: dict
      returned: success
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
          description: V(DOWN) until the DHCP lease is in place, then V(ACTIVE).
          type: str
          returned: success
          sample: DOWN
    volumes:
      description: The instance's volumes that are not deleted, by device.
      type: list
      elements: dict
      returned: success
      contains:
        id:
          description: ID of the volume.
          type: str
          returned: success
          sample: 1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f
        name:
          description: Name of the volume, C(volume-<id>).
          type: str
          returned: success
          sample: volume-1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f
        project_id:
          description: ID of the owning project.
          type: str
          returned: success
          sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
        size_gb:
          description: Size in GiB.
          type: int
          returned: success
          sample: 10
        status:
          description: Cinder status (V(creating), V(available), V(attaching), V(in-use) ...).
          type: str
          returned: success
          sample: creating
        host:
          description: Host the volume lives on, V(null) until created.
          type: str
          returned: success
          sample: null
        pool:
          description: libvirt storage pool on the host.
          type: str
          returned: success
          sample: bootflow
        instance_uuid:
          description: UUID of the instance.
          type: str
          returned: success
          sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
        device:
          description: Guest device name.
          type: str
          returned: success
          sample: vdb
        delete_on_termination:
          description: Whether the volume is deleted together with the instance.
          type: bool
          returned: success
          sample: true
        created_at:
          description: Creation time, UTC, ISO 8601.
          type: str
          returned: success
          sample: "2025-01-10T09:15:02.123456Z"
        updated_at:
          description: Time of the last status change, UTC, ISO 8601.
          type: str
          returned: success
          sample: null
    retry:
      description:
        - The reschedule bookkeeping (Nova's C(RequestSpec.retry)), V(null) while no build of the instance failed.
        - A rescheduled instance that ended C(active) keeps it, it says where and why the earlier builds failed.
      type: dict
      returned: success
      contains:
        num_attempts:
          description: Builds tried, the current one included.
          type: int
          returned: success
          sample: 2
        hosts:
          description: Hosts a build failed on, in order.
          type: list
          elements: str
          returned: success
          sample: [hv1]
        failures:
          description: One entry per failed build - host, step, action, message, category, reschedulable, at.
          type: list
          elements: dict
          returned: success
    allocation:
      description: The resources claimed on the host by M(bootflow.cloud.schedule), V(null) before scheduling.
      type: dict
      returned: success
      contains:
        host:
          description: Host of the allocation.
          type: str
          returned: success
          sample: hv1
        vcpus:
          description: Claimed vCPUs.
          type: int
          returned: success
          sample: 1
        memory_mb:
          description: Claimed memory in MiB.
          type: int
          returned: success
          sample: 2048
        disk_gb:
          description: Claimed disk in GiB.
          type: int
          returned: success
          sample: 20
    steps:
      description: The instance's step log, oldest first; the seed-style table of its boot so far.
      type: list
      elements: dict
      returned: success
      contains:
        id:
          description: Sequence number of the row.
          type: int
          returned: success
          sample: 2
        instance_uuid:
          description: UUID of the instance.
          type: str
          returned: success
          sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
        seed_steps:
          description: Seed steps performed.
          type: str
          returned: success
          sample: 8-12
        service:
          description: OpenStack service that played the step.
          type: str
          returned: success
          sample: nova-scheduler
        action:
          description: What the service did.
          type: str
          returned: success
          sample: select_destinations
        host:
          description: Host involved, V(null) for the controller.
          type: str
          returned: success
          sample: hv1
        vm_state_from:
          description: vm_state before the step.
          type: str
          returned: success
          sample: building
        task_state_from:
          description: task_state before the step.
          type: str
          returned: success
          sample: scheduling
        vm_state:
          description: vm_state after the step.
          type: str
          returned: success
          sample: building
        task_state:
          description: task_state after the step.
          type: str
          returned: success
          sample: scheduling
        changed:
          description: Whether the step changed anything.
          type: bool
          returned: success
          sample: true
        ms:
          description: Duration in milliseconds.
          type: int
          returned: success
          sample: 21
        created_at:
          description: When the step was recorded, UTC, ISO 8601.
          type: str
          returned: success
          sample: "2025-01-10T09:15:03.234567Z"
bootflow_step:
  description:
    - The row of the seed-style step table the C(bootflow.cloud.request_flow) callback prints.
    - It is returned only, not stored in the instance's step log.
  returned: when the instance exists
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
      sample: 13-18
    service:
      description: The OpenStack service that plays this step.
      type: str
      returned: always
      sample: nova-conductor
    action:
      description: What the service did.
      type: str
      returned: always
      sample: instance_info
    host:
      description: The instance's host.
      type: str
      returned: always
      sample: hv1
    from:
      description: C(vm_state/task_state) of the instance.
      type: str
      returned: always
      sample: building/scheduling
    to:
      description: Same as RV(bootflow_step.from), the step changes nothing.
      type: str
      returned: always
      sample: building/scheduling
    changed:
      description: Always V(false).
      type: bool
      returned: always
      sample: false
    ms:
      description: Duration of the step in milliseconds.
      type: int
      returned: always
      sample: 6
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a caller without any role,
      V(not_found) for an unknown instance, V(conflict) when the name matches several instances.
  returned: failure
  type: str
  sample: not_found
"""
