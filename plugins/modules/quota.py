#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: quota
short_description: Set and show the quota limits and usage of a project (Nova and Cinder quotas)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's and Cinder's per-project quotas, Nova's server group quotas included, and Glance's image quotas
    (unified limits C(image_count_total) and C(image_size_total)). In seed steps 6-7 of the OpenStack Nova boot request flow nova-api
    checks the request against the project's limits before it writes anything; a request that would go over
    a limit fails with RV(bootflow.cloud.instance#module:error=quota) and C(Quota exceeded for ...).
  - Sets the hard limits given and returns the project's limits and current usage. With no limit given, it only
    reports them.
  - Limits that were never set have Nova's and Cinder's defaults; V(-1) means unlimited.
  - Needs a token with the V(admin) role (policy rule C(identity:quota)); the project the token is scoped to
    does not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  project:
    description:
      - Name or ID of the project.
      - An unknown project fails the task with RV(error=not_found) (C(Project ... could not be found.)).
    type: str
    required: true
  instances:
    description:
      - Maximum number of live (not deleted) instances in the project. The default limit is V(10).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  cores:
    description:
      - Maximum number of vCPUs (sum of the flavors' C(vcpus)) of the project's live instances. The default limit
        is V(20).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  ram:
    description:
      - Maximum memory in MiB (sum of the flavors' C(ram_mb)) of the project's live instances. The default limit
        is V(51200).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  volumes:
    description:
      - Maximum number of volumes (not deleted) in the project. The default limit is V(10).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  gigabytes:
    description:
      - Maximum total size in GiB of the project's volumes (not deleted). Root disks of flavors do not count.
        The default limit is V(1000).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  server_groups:
    description:
      - Maximum number of server groups of the project (see M(bootflow.cloud.server_group)). The default limit is
        V(10), Nova's.
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  server_group_members:
    description:
      - Maximum number of live members of each server group of the project, as Nova's per-group quota. The default
        limit is V(10), Nova's. M(bootflow.cloud.instance) refuses an instance that would join a full group
        (O(bootflow.cloud.instance#module:server_group)).
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  image_count_total:
    description:
      - Maximum number of images (M(bootflow.cloud.image)) the project owns, every status but V(deleted) and
        V(killed), as Glance's unified limit C(image_count_total). The default limit is V(100).
      - Glance's unified limits have no default (a limit not registered in Keystone lets nothing be uploaded);
        bootflow gives each project 100 images so that the image store on the controller is bounded per project.
      - Checked when an image is registered with O(bootflow.cloud.image#module:filename) or
        O(bootflow.cloud.image#module:url) (with a URL before anything is downloaded); re-registering an existing
        image is not a new one. With O(bootflow.cloud.image#module:image_backend=glance), Glance's own limits apply
        instead.
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
  image_size_total:
    description:
      - Maximum total size in MiB of the project's images (every status but V(deleted) and V(killed)), counting the
        image being added, as Glance's unified limit C(image_size_total). The default limit is V(1024000)
        (1000 GiB, the same as Cinder's default O(gigabytes)).
      - An upload that would go over it fails with RV(bootflow.cloud.image#module:error=quota) and leaves nothing; a
        download from O(bootflow.cloud.image#module:url) is stopped as soon as it passes what is left of it.
        With O(bootflow.cloud.image#module:image_backend=glance), Glance's own limits apply instead.
      - V(-1) for unlimited; omitted leaves the limit as it is. A value below V(-1) or above V(2147483647) fails the task with
        RV(error=invalid).
    type: int
attributes:
  check_mode:
    support: full
    details:
      - Reports whether a limit would change and returns the limits as they would be, without writing them.
  diff_mode:
    support: none
notes:
  - Idempotent, setting a limit to the value it already has reports no change.
  - A limit can be set below the current usage. Nothing that exists is removed; new requests that need more of
    that resource fail until the usage is back under the limit.
  - Limits are checked when M(bootflow.cloud.instance) creates an instance (one instance, its flavor's vCPUs and
    RAM, and its data volume when O(bootflow.cloud.instance#module:volume_size_gb) is set, one more member of its
    server group), when M(bootflow.cloud.server_group) creates a group, and when M(bootflow.cloud.image) registers
    an image (one image, its size).
  - The limits of a project are deleted with it (M(bootflow.cloud.project) with
    O(bootflow.cloud.project#module:state=absent)).
seealso:
  - module: bootflow.cloud.project
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.flavor
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

- name: Limit project demo to 4 instances, 8 vCPUs and 16 GiB of RAM
  bootflow.cloud.quota:
    auth_token: "{{ bootflow_auth.token }}"
    project: demo
    instances: 4
    cores: 8
    ram: 16384

- name: Remove the volume size limit of project ci
  bootflow.cloud.quota:
    auth_token: "{{ bootflow_auth.token }}"
    project: ci
    gigabytes: -1

- name: Read the limits and usage of project demo
  bootflow.cloud.quota:
    auth_token: "{{ bootflow_auth.token }}"
    project: demo
  register: demo_quota

- name: Show how many instances demo can still boot
  ansible.builtin.debug:
    msg: "{{ demo_quota.quota.instances - demo_quota.usage.instances }} instance(s) left"
  when: demo_quota.quota.instances != -1
"""

RETURN = r"""
project_id:
  description: ID of the project.
  returned: success
  type: str
  sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
quota:
  description:
    - The project's hard limits after the task (in check mode, as they would be). V(-1) means unlimited.
  returned: success
  type: dict
  contains:
    instances:
      description: Maximum number of instances.
      type: int
      returned: success
      sample: 4
    cores:
      description: Maximum number of vCPUs.
      type: int
      returned: success
      sample: 8
    ram:
      description: Maximum memory in MiB.
      type: int
      returned: success
      sample: 16384
    volumes:
      description: Maximum number of volumes.
      type: int
      returned: success
      sample: 10
    gigabytes:
      description: Maximum total volume size in GiB.
      type: int
      returned: success
      sample: 1000
    server_groups:
      description: Maximum number of server groups.
      type: int
      returned: success
      sample: 10
    server_group_members:
      description: Maximum number of members of each server group.
      type: int
      returned: success
      sample: 10
    image_count_total:
      description: Maximum number of images.
      type: int
      returned: success
      sample: 100
    image_size_total:
      description: Maximum total image size in MiB.
      type: int
      returned: success
      sample: 1024000
usage:
  description: What the project uses now.
  returned: success
  type: dict
  contains:
    instances:
      description: Number of live (not deleted) instances, whatever their state.
      type: int
      returned: success
      sample: 2
    cores:
      description: vCPUs of those instances (sum of their flavors' C(vcpus)).
      type: int
      returned: success
      sample: 3
    ram:
      description: Memory of those instances in MiB (sum of their flavors' C(ram_mb)).
      type: int
      returned: success
      sample: 6144
    volumes:
      description: Number of volumes not deleted.
      type: int
      returned: success
      sample: 1
    gigabytes:
      description: Total size of those volumes in GiB.
      type: int
      returned: success
      sample: 20
    server_groups:
      description: Number of server groups of the project.
      type: int
      returned: success
      sample: 2
    server_group_members:
      description:
        - Live members of the project's fullest server group (the limit applies to each group; this is the one
          closest to it). V(0) without groups.
      type: int
      returned: success
      sample: 3
    image_count_total:
      description: Number of the project's images, every status but V(deleted) and V(killed).
      type: int
      returned: success
      sample: 2
    image_size_total:
      description: Total size of those images in MiB (rounded up).
      type: int
      returned: success
      sample: 40
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(not_found) for an unknown project, V(invalid) for a limit below V(-1).
  returned: failure
  type: str
  sample: invalid
"""
