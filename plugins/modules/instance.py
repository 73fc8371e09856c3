#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance
short_description: Create, fail or delete the instance record (nova-api, seed steps 3-7)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - nova-api's part of the OpenStack Nova boot request flow. In seed step 3 the client turns the boot request into a
    REST call to nova-api; in seed steps 4-5 nova-api has the auth token validated and gets the caller's roles; in
    seed steps 6-7 it checks the request against the database and creates the initial instance record.
  - With O(state=present), validates the whole request before writing anything (name, O(flavor), O(image) visible
    to the caller and V(active), the flavor against the image's C(min_disk), C(min_ram) and size, every network
    and its subnet, O(volume_size_gb), O(user_data)), then creates the instance record in the caller's project with
    C(vm_state=building), C(task_state=scheduling) and, when O(volume_size_gb) is set, the record of a blank volume
    to be attached as C(vdb). The step is recorded in the instance's step log (seed steps V(3-7), service
    V(nova-api)).
  - With O(state=error), puts the instance in C(vm_state=error) with O(fault) recorded as its fault, like Nova does
    when a build fails; for example from the C(rescue) section of a boot play when a later step failed.
  - With O(state=absent), soft-deletes the record (C(vm_state=deleted)), which frees the name. This is the last
    step of C(playbooks/delete.yml); the compute side must have released everything first.
  - Needs a token with the V(admin) or V(member) role. Names are looked up in the caller's project; an admin can
    also reach an instance of another project by UUID.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.image_backend
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the instance, unique among the live instances of the caller's project. With O(state=absent) or
        O(state=error) it can also be the instance UUID.
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task with RV(error=invalid).
    type: str
    required: true
  flavor:
    description:
      - Name or ID of the flavor (see M(bootflow.cloud.flavor)).
      - Required when O(state=present). An unknown flavor fails with RV(error=not_found); a flavor whose disk
        or memory is smaller than the image's C(min_disk), C(min_ram) or virtual size fails with RV(error=invalid).
    type: str
  image:
    description:
      - Name or ID of the image (see M(bootflow.cloud.image)). It must be visible to the caller's project (public,
        its own, another project's community image by ID only, or shared with it - by name only once it accepted the
        share, by ID whatever its member status; see M(bootflow.cloud.image_member)) and V(active) (a deactivated
        image is refused).
      - Required when O(state=present). An unknown image fails with RV(error=not_found), an image that is not
        active with RV(error=invalid), a name shared by several images with RV(error=conflict).
    type: str
  networks:
    description:
      - Names or IDs of the networks to connect the instance to, one port on each, in this order (see
        M(bootflow.cloud.network)).
      - Required and non-empty when O(state=present). An unknown network or a network without a subnet fails with
        RV(error=not_found).
    type: list
    elements: str
  volume_size_gb:
    description:
      - Size in GiB of a blank data volume to create and attach as C(vdb) (a block device mapping, seed steps
        25-27), deleted together with the instance unless O(volume_delete_on_termination=false).
      - V(0) means no volume. Values outside 0 to 16384 fail with RV(error=invalid).
    type: int
    default: 0
  availability_zone:
    description:
      - Where to boot, as Nova's C(--availability-zone) - V(ZONE), V(ZONE:HOST) or V(:HOST). The scheduler then
        keeps only hosts of that zone (every host is in zone V(nova) for now) or only the named host.
      - Naming a host needs the V(admin) role (policy rule C(compute:force_host)); a member gets RV(error=auth).
        A forced host that does not fit the flavor still fails with C(No valid host).
    type: str
  boot_from_volume:
    description:
      - Boot from a volume, like C(nova boot --block-device source=image,dest=volume,size=N,bootindex=0) - nova-api
        records a root volume (device C(vda), status C(creating)) that the compute side creates in the host's
        storage pool from the image (M(bootflow.cloud.volume) with O(bootflow.cloud.volume#module:source_path)); the
        domain's C(vda) is that pool volume and no qcow2 overlay is made in the instance directory.
      - The root volume counts against the C(volumes) and C(gigabytes) quotas. A data volume (O(volume_size_gb))
        stays C(vdb).
    type: bool
    default: false
  root_volume_size_gb:
    description:
      - Size in GiB of the root volume with O(boot_from_volume=true). Defaults to the flavor's disk.
      - A size smaller than the flavor's disk, the image's C(min_disk) or the image's virtual size, or outside 1 to
        16384, fails with RV(error=invalid) before anything is written; so does giving it without
        O(boot_from_volume).
    type: int
  root_volume_delete_on_termination:
    description:
      - Delete the root volume when the instance is deleted. With V(false), C(playbooks/delete.yml) keeps it
        C(available), and M(bootflow.cloud.volume_attach) can attach it to another instance (as a data disk).
    type: bool
    default: true
  volume_delete_on_termination:
    description:
      - Delete the O(volume_size_gb) volume when the instance is deleted (Nova's C(delete_on_termination)).
      - With V(false), C(playbooks/delete.yml) detaches the volume and keeps it C(available), so
        M(bootflow.cloud.volume_attach) can attach it to another instance on the same host.
    type: bool
    default: true
  user_data:
    description:
      - User data for cloud-init in the guest, as plain text (not base64). Nova's limit counts it base64-encoded
        (65535 bytes), so at most 49149 bytes of user data are accepted; more fails with RV(error=invalid)
        before anything is written.
      - A C(no_log) option. It is stored in the instance record (the config drive step reads it there) but never
        returned, RV(instance.request) holds only its size and sha256.
      - Not compared for idempotency, a different O(user_data) for an existing instance is ignored.
    type: str
  server_group:
    description:
      - Name or ID of the server group the instance joins (Nova's scheduler hint C(group); see
        M(bootflow.cloud.server_group)). The membership is written in the same transaction as the instance record.
      - The scheduler then keeps the group's policy - V(affinity) and V(anti-affinity) by its filters and again when
        it claims the host, V(soft-affinity) and V(soft-anti-affinity) by its weighers.
      - Checked before anything is written. A group that does not exist, or that belongs to another project (an
        admin may name another project's group by its ID), fails with RV(error=not_found). A group that already has
        as many live members as the C(server_group_members) quota allows fails with RV(error=quota).
      - An existing instance of the same name in another group (or in none) is refused with RV(error=conflict).
      - The instance leaves the group when its record is deleted (O(state=absent), the end of
        C(playbooks/delete.yml)).
    type: str
  key_name:
    description:
      - Name of a key pair of the caller (see M(bootflow.cloud.keypair)) whose public key the guest gets. nova-api
        copies the key into the instance's request (RV(instance.request.public_keys)), as Nova copies it into the
        instance, and M(bootflow.cloud.config_drive) writes it into the C(public-keys) of the config drive's
        C(meta-data), where cloud-init finds it.
      - Looked up among the key pairs of the user of O(auth_token) only, as in Nova; an admin cannot use another
        user's key pair either. An unknown key pair fails with RV(error=not_found) (C(Invalid key_name provided))
        before anything is written.
      - Deleting the key pair later does not change the instance; it keeps its copy of the key.
      - An existing instance of the same name created with another key pair (or with none) is refused with
        RV(error=conflict).
    type: str
  state:
    description:
      - V(present) creates the instance record (seed steps 3-7).
      - V(error) marks the instance as failed with O(fault).
      - V(absent) deletes the record.
      - With V(error) and V(absent), an instance that does not exist is not an error (no change, RV(instance) is
        V(null)).
    type: str
    default: present
    choices: [present, absent, error]
  fault:
    description:
      - Message recorded as the instance's fault (with step V(boot) and the instance's host) when O(state=error).
      - Required when O(state=error), ignored otherwise.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
notes:
  - Idempotent, as long as the name exists with the same O(flavor), O(image), O(networks), O(volume_size_gb),
    root volume size, O(server_group) and O(key_name),
    O(state=present) reports no change and returns the existing instance, whatever state it is in. The same name
    with a different flavor, image, networks or volume size is refused with RV(error=conflict); delete the
    instance first or pick another name.
  - O(state=absent) is refused with RV(error=conflict) while the instance still holds a host allocation, ports or
    volumes that exist on a host. Run C(playbooks/delete.yml), which releases them first (M(bootflow.cloud.schedule),
    M(bootflow.cloud.port) and the volume modules with O(state=absent)) and deletes the record last.
  - With O(state=absent), a volume record that never reached a host (still V(creating) or V(attaching)) is marked
    deleted together with the instance, and an V(available) or V(attaching) volume that is not
    C(delete_on_termination) is detached and kept for later use.
  - O(state=error) on an instance already in C(vm_state=error) changes nothing.
seealso:
  - module: bootflow.cloud.token
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.instance_info
  - module: bootflow.cloud.port
  - module: bootflow.cloud.server_group
  - module: bootflow.cloud.keypair
"""

EXAMPLES = r"""
# The boot flow's first controller steps, with the token set once for the play:
#
# - hosts: localhost
#   gather_facts: false
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"
#   tasks:
#     - name: Create the instance record (seed steps 3-7)
#       bootflow.cloud.instance:
#         name: web1
#         flavor: m1.small
#         image: debian-12
#         networks: [public]
#
#     - name: Pick a host (seed steps 8-12)
#       bootflow.cloud.schedule:
#         instance: web1

- name: Create the instance record with a 10 GiB data volume and cloud-init user data
  bootflow.cloud.instance:
    auth_token: "{{ bootflow_auth.token }}"
    name: web1
    flavor: m1.small
    image: debian-12
    networks:
      - public
    volume_size_gb: 10
    user_data: |
      #cloud-config
      hostname: web1
      packages:
        - nginx
  register: web1

- name: Show the new instance's UUID and status
  ansible.builtin.debug:
    msg: "{{ web1.instance.uuid }} is {{ web1.instance.status }}"

- name: Mark the instance as failed when a later boot step fails
  bootflow.cloud.instance:
    auth_token: "{{ bootflow_auth.token }}"
    name: web1
    state: error
    fault: "domain did not start on {{ web1_host }}"

- name: Delete the record once the compute side released everything
  bootflow.cloud.instance:
    auth_token: "{{ bootflow_auth.token }}"
    name: web1
    state: absent
"""

RETURN = r"""
instance:
  description:
    - The instance record.
    - V(null) when O(state=absent) or O(state=error) and the instance does not exist.
    - In check mode, when the instance would be created, only C(name), C(vm_state) and C(task_state) are returned.
    - With O(state=error), the record as it was before the fault was recorded.
    - With O(state=absent), C(vm_state) is V(deleted).
  returned: success
  type: dict
  contains:
    uuid:
      description: UUID of the instance; also the libvirt domain UUID.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    name:
      description: Name of the instance.
      type: str
      returned: success
      sample: web1
    project_id:
      description: ID of the project that owns the instance.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    user_id:
      description: ID of the user that created the instance.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    flavor_id:
      description: ID of the flavor.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: 0f5e9c2a-6b1d-4a7e-8c3f-2d1e0b9a8c7d
    image_id:
      description: ID of the image.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    vm_state:
      description: Nova vm_state, V(building) after creation.
      type: str
      returned: success
      sample: building
    task_state:
      description: Nova task_state, V(scheduling) after creation.
      type: str
      returned: success
      sample: scheduling
    power_state:
      description: Power state, V(NOSTATE) until the domain runs.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: NOSTATE
    status:
      description: The status the API shows, derived from the states (V(BUILD), V(ACTIVE), V(ERROR), V(DELETED)).
      type: str
      returned: success, except in check mode when the instance would be created
      sample: BUILD
    host:
      description: Hypervisor host the instance is scheduled to, V(null) before M(bootflow.cloud.schedule).
      type: str
      returned: success, except in check mode when the instance would be created
      sample: null
    domain_name:
      description: Name of the libvirt domain on the host, C(bootflow-<uuid>).
      type: str
      returned: success, except in check mode when the instance would be created
      sample: bootflow-2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    request:
      description: The boot request as stored by nova-api.
      type: dict
      returned: success, except in check mode when the instance would be created
      contains:
        flavor:
          description: Name of the flavor.
          type: str
          returned: success
          sample: m1.small
        image:
          description: ID of the image.
          type: str
          returned: success
          sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
        networks:
          description: IDs of the networks, in request order.
          type: list
          elements: str
          returned: success
          sample: [3b0c6e1f-9a2d-4c5b-8e7f-1a2b3c4d5e6f]
        volume_size_gb:
          description: Size of the data volume in GiB, V(0) for none.
          type: int
          returned: success
          sample: 10
        boot_from_volume:
          description: V(true) for a boot-from-volume request.
          type: bool
          returned: when O(boot_from_volume=true)
          sample: true
        root_volume_size_gb:
          description: Size of the root volume in GiB.
          type: int
          returned: when O(boot_from_volume=true)
          sample: 1
        user_data_size:
          description: Size in bytes (UTF-8) of the user data; the data itself is never returned (it may hold secrets).
            V(null) without user data.
          type: int
          returned: success
          sample: 27
        user_data_sha256:
          description: SHA-256 of the user data (hex), to compare it with what was meant; V(null) without user data.
          type: str
          returned: success
          sample: 9f2c1e5b7d3a4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6
        key_name:
          description: The O(key_name) the instance was created with.
          type: str
          returned: when O(key_name) was given
          sample: mykey
        public_keys:
          description: The public key of O(key_name) as it was when the instance was created (one OpenSSH line).
          type: list
          elements: str
          returned: when O(key_name) was given
          sample: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 me@laptop"]
    fault:
      description: The recorded fault, V(null) unless the instance went to C(vm_state=error).
      type: dict
      returned: success, except in check mode when the instance would be created
      contains:
        message:
          description: What failed.
          type: str
          returned: when a fault is recorded
          sample: "No valid host was found. There are no compute nodes: run playbooks/hypervisors.yml."
        step:
          description: The step that recorded it (V(boot), V(schedule), V(port) ...).
          type: str
          returned: when a fault is recorded
          sample: schedule
        host:
          description: Host involved, if any.
          type: str
          returned: when a fault is recorded
          sample: null
        at:
          description: When it was recorded, UTC, ISO 8601.
          type: str
          returned: when a fault is recorded
          sample: "2025-01-10T09:15:03.456789Z"
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: "2025-01-10T09:15:02.123456Z"
    updated_at:
      description: Time of the last state change, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: "2025-01-10T09:15:02.123456Z"
    launched_at:
      description: When the domain was first started, V(null) until then.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: null
    deleted_at:
      description: When the record was deleted, V(null) for a live instance.
      type: str
      returned: success, except in check mode when the instance would be created
      sample: null
    deleted:
      description: V(0) for a live instance, the deletion timestamp (ms) once deleted.
      type: int
      returned: success, except in check mode when the instance would be created
      sample: 0
bootflow_step:
  description:
    - The row of the seed-style step table the C(bootflow.cloud.request_flow) callback prints.
  returned: when O(state=present) created the instance (not in check mode)
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
      sample: 3-7
    service:
      description: The OpenStack service that plays this step.
      type: str
      returned: always
      sample: nova-api
    action:
      description: What the service did.
      type: str
      returned: always
      sample: create
    host:
      description: Where the step ran, V(controller) for nova-api.
      type: str
      returned: always
      sample: controller
    from:
      description: C(vm_state/task_state) before the step, C(-/none) for a new instance.
      type: str
      returned: always
      sample: "-/none"
    to:
      description: C(vm_state/task_state) after the step.
      type: str
      returned: always
      sample: building/scheduling
    changed:
      description: Whether the step changed anything.
      type: bool
      returned: always
      sample: true
    ms:
      description: Duration of the step in milliseconds.
      type: int
      returned: always
      sample: 14
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role, V(not_found) for an
      unknown flavor, image, network, server group or key pair, V(invalid) for a request that fails validation,
      V(quota) for a request over a quota of the project (instances, cores, ram, volumes, gigabytes, server_group_members),
      V(conflict) for a name taken with a different request, several instances matching O(name), or an instance
      that still holds resources.
  returned: failure
  type: str
  sample: conflict
"""
