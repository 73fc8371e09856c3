#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_member
short_description: Share an image with other projects, and accept or reject a shared image (Glance image members)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Glance's image sharing (image API v2 C(/v2/images/<id>/members)), the C(openstack image add project),
    C(openstack image remove project) and C(openstack image set --accept) of the OpenStack tools. An image whose
    visibility is V(shared) (see M(bootflow.cloud.image)) is visible to its owner's project and to the projects it
    is shared with, its members, each with a member status.
  - The image's owner project (or an admin) adds a member project with O(state=present) (the membership starts
    V(pending)) and removes it with O(state=absent).
  - The member project sets its own status with O(member_status), V(accepted) to take the image, V(rejected) to
    decline it, V(pending) to leave the choice open. As in Glance, only the member project (or an admin) may
    change the status, and only the owner (or an admin) may add or remove members.
  - "What the status changes, as in Glance: a member project finds a shared image B(by name) (in nova-api's create,
    C(bootflow_image) of C(playbooks/boot.yml)) only once it has V(accepted) it. B(By ID) it finds and boots the image
    whatever its status, pending and rejected included, as Glance shows a shared image to every member that knows its
    ID. A removed member finds it no more; instances it already booted keep running."
  - Only shared images have members. Adding a member to an image of another visibility fails with
    RV(error=conflict) and changes nothing.
  - With O(image_backend=glance), the members are Glance's. With O(auth_backend=keystone) the caller's token goes to
    Glance (openstacksdk's C(add_member), C(remove_member), C(update_member)), and Glance enforces its own rules as
    well. With O(auth_backend=local) (a Glance without authentication) bootflow's rules decide, and Glance's members
    list is copied into the bootflow database at every lookup of the image.
  - Needs a token with the V(admin) or V(member) role (policy rules C(image:member_manage) to add or remove,
    C(image:member_status) to set a status); a reader fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.image_backend
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  image:
    description:
      - Name or ID of the image, as the caller sees it. Another project's image that is not shared with the caller's
        project fails with RV(error=not_found), exactly like an image that does not exist.
      - A member project finds by name the images shared with it whatever its member status, so that it can accept a
        pending one by name.
      - A name that matches several images the caller sees fails with RV(error=conflict); give the ID.
    type: str
    required: true
  project:
    description:
      - Name or ID of the member project.
      - Required to add or remove a member (O(state=absent) always needs it).
      - With O(member_status), the caller's own project when omitted. A project other than the caller's own fails
        with RV(error=auth) unless the caller is an admin.
      - With O(auth_backend=local), the project is looked up in the identity tables (by ID, or by name in
        O(project_domain)); an unknown project fails with RV(error=not_found).
      - With O(auth_backend=keystone), it is looked up in Keystone with the caller's token. Keystone lets a member read
        only its own project, so a member adding another project must give that project's ID (32 hexadecimal
        digits), which is used as given (as the OpenStack client does); a name Keystone does not show the caller
        fails with RV(error=not_found).
      - The owner project cannot be a member of its own image (RV(error=invalid)).
    type: str
  project_domain:
    description:
      - Name or ID of the domain O(project) is looked up in by name.
    type: str
    default: Default
  member_status:
    description:
      - The member project's answer. V(accepted) lists the image for it (by name), V(rejected) and V(pending) do not.
      - Set by the member project itself (or an admin). The owner project fails with RV(error=auth). A project that is
        not a member fails with RV(error=not_found).
      - An admin giving it for a project that is not a member yet adds the member first.
      - When omitted, the task adds (O(state=present)) or removes (O(state=absent)) the member.
      - Not allowed with O(state=absent).
    type: str
    choices: [accepted, rejected, pending]
  state:
    description:
      - V(present) makes O(project) a member of the image (with O(member_status), sets its status).
      - V(absent) removes the member; nothing happens when it is no member.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Every check runs (the image lookup, the project lookup, who may do what, the image's visibility), then the
        change is predicted and nothing is written, in the bootflow database or in Glance.
  diff_mode:
    support: full
    details:
      - Shows the membership (image ID, member ID, status) before and after; an empty one when there is none.
notes:
  - Idempotent. Adding a member twice, removing one that is no member, or setting the status it already has reports
    no change.
  - A refused task changes nothing.
  - Changing an image's visibility away from V(shared) keeps its members (they take effect again when it is shared
    again), as Glance does. Deleting the image removes its members.
  - The memberships are kept in the C(image_members) table (image ID, member project ID, status, times).
seealso:
  - module: bootflow.cloud.image
  - module: bootflow.cloud.instance
  - name: Glance image sharing (image API v2)
    description: The image members API this module follows.
    link: https://docs.openstack.org/api-ref/image/v2/index.html#sharing
"""

EXAMPLES = r"""
- name: Share a shared image with project team-b (the owner project's member token)
  bootflow.cloud.image_member:
    auth_token: "{{ team_a_auth.token }}"
    image: appliance
    project: team-b

- name: Team B accepts it; from now on it can boot the image by name
  bootflow.cloud.image_member:
    auth_token: "{{ team_b_auth.token }}"
    image: appliance
    member_status: accepted

- name: Team B declines another image (it stays bootable by its ID, as in Glance, but is no longer listed)
  bootflow.cloud.image_member:
    auth_token: "{{ team_b_auth.token }}"
    image: 7a1c4e02-1d3b-4f5e-9a6b-8c7d6e5f4a3b
    member_status: rejected

- name: The owner stops sharing the image with team-b
  bootflow.cloud.image_member:
    auth_token: "{{ team_a_auth.token }}"
    image: appliance
    project: team-b
    state: absent

- name: With Keystone, a member gives the other project's ID
  bootflow.cloud.image_member:
    auth_token: "{{ team_a_auth.token }}"
    auth_backend: keystone
    image_backend: glance
    image: appliance
    project: 4c6f2a7e9b1d4e3f8a5b6c7d8e9f0a1b
"""

RETURN = r"""
member:
  description:
    - The membership after the task; V(null) when there is none (O(state=absent), or in check mode when it would be
      removed).
    - In check mode, when the membership would be created or changed, only C(image_id), C(member_id) and C(status).
  returned: success
  type: dict
  contains:
    image_id:
      description: ID of the image.
      type: str
      returned: success
      sample: 7a1c4e02-1d3b-4f5e-9a6b-8c7d6e5f4a3b
    member_id:
      description: ID of the member project.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    status:
      description: V(pending), V(accepted) or V(rejected).
      type: str
      returned: success
      sample: accepted
    created_at:
      description: When the project became a member, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the membership would be created or changed
      sample: "2025-01-10T09:15:02.123456Z"
    updated_at:
      description: Time of the last status change, UTC, ISO 8601.
      type: str
      returned: success, except in check mode when the membership would be created or changed
      sample: "2025-01-10T09:17:40.654321Z"
image:
  description: The image the task worked on.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the image.
      type: str
      returned: success
      sample: 7a1c4e02-1d3b-4f5e-9a6b-8c7d6e5f4a3b
    name:
      description: Name of the image.
      type: str
      returned: success
      sample: appliance
    owner:
      description: ID of the project that owns the image.
      type: str
      returned: success
      sample: 2b9e7d51-0c4a-4f8e-b6d3-91a2c5e7f804
    visibility:
      description: Visibility of the image (V(shared) when it has members).
      type: str
      returned: success
      sample: shared
    status:
      description: Status of the image.
      type: str
      returned: success
      sample: active
image_backend:
  description: The image backend used, V(local) or V(glance).
  returned: success
  type: str
  sample: local
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token, a reader's token, a project that is not the
      image's owner adding or removing members, the owner or another project setting a member's status;
      V(not_found) for an image the caller does not see or an unknown project; V(conflict) for an image that is
      not shared or a name that matches several images; V(invalid) for bad options.
  returned: failure
  type: str
  sample: conflict
"""
