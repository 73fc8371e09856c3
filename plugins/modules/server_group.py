#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: server_group
short_description: Create, show or delete a server group (Nova's os-server-groups, affinity policies)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's server groups. A group has one policy that says where its members may run relative to each other.
    An instance joins a group when it is created, with O(bootflow.cloud.instance#module:server_group) (Nova's
    scheduler hint C(group)), and leaves it when it is deleted.
  - The policies, as in Nova. V(affinity) puts every member on the same host. V(anti-affinity) puts each member on a
    different host, or at most O(rules.max_server_per_host) members on one host. V(soft-affinity) and
    V(soft-anti-affinity) only prefer that, through the scheduler's weighers C(ServerGroupSoftAffinityWeigher) and
    C(ServerGroupSoftAntiAffinityWeigher). When no host suits them, the members go elsewhere instead of failing.
  - M(bootflow.cloud.schedule) enforces the hard policies (V(affinity), V(anti-affinity)) twice. Its filters check
    them on the scheduler's view of the hosts. The claim checks them again, in the claim's own transaction and one
    claim of the group at a time, with the hosts of the members as they are at that moment. Two boots into one
    group that run at the same time therefore cannot both pass. A host the claim refuses for the group is listed in
    RV(bootflow.cloud.schedule#module:claim_failures), and the claim moves on to the next host.
    See C(docs/scheduler.md).
  - With O(state=present) and O(policy), creates the group in the caller's project, or returns it when it exists
    with the same policy and rules. With O(state=present) and no O(policy), only looks the group up.
  - With O(state=absent), deletes the group. As in Nova, a group that still has members can be deleted. The
    members just leave it. The instances stay where they are, and a later reschedule of one of them is no longer
    bound by the policy.
  - Creating or deleting needs a token with the V(admin) or V(member) role (policy rules
    C(compute:server_groups:create) and C(compute:server_groups:delete)); looking a group up also works with
    V(reader) (C(compute:server_groups:show)). A name is looked up in the caller's project. An admin can also
    reach another project's group by its ID. For anyone else, another project's group does not exist.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the group, unique in the caller's project. To look a group up or delete it, the group's ID works
        too.
      - An empty name, a name longer than 255 characters, one with control characters (newline, tab, NUL, C1 controls such as
        \x9b) or format characters (bidi overrides such as U+202E, zero-width spaces), or with
        leading or trailing whitespace fails the task with RV(error=invalid) when a group would be created.
      - Looking up a group that does not exist (or that belongs to another project) fails with
        RV(error=not_found).
    type: str
    required: true
  policy:
    description:
      - The group's policy. V(affinity) and V(anti-affinity) are hard policies, V(soft-affinity) and
        V(soft-anti-affinity) are soft ones (see the description).
      - Required to create a group. Without it, O(state=present) only looks the group up.
      - A group's policy never changes, as in Nova. Giving another policy than the existing group's fails with
        RV(error=conflict). Delete the group and create it again, or pick another name.
    type: str
    choices: [affinity, anti-affinity, soft-affinity, soft-anti-affinity]
  rules:
    description:
      - The group's rules, as in Nova's API microversion 2.64. The only rule is O(rules.max_server_per_host), and
        only an V(anti-affinity) group may have it. Rules for another policy, or an unknown rule, fail the task
        with RV(error=invalid).
      - Rules never change either. Rules that differ from the existing group's fail with RV(error=conflict).
        Omitted means no rules, also when comparing with an existing group.
    type: dict
    suboptions:
      max_server_per_host:
        description:
          - How many members of an V(anti-affinity) group may run on one host. Without the rule, one.
          - An integer from 1 to 2147483647; anything else fails the task with RV(error=invalid).
        type: int
  state:
    description:
      - V(present) creates the group (with O(policy)) or looks it up (without).
      - V(absent) deletes it; nothing happens when it does not exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the group would be created or deleted, without doing it. The validation and the quota
        check run as usual.
  diff_mode:
    support: full
    details:
      - Shows the group's name, policy, rules and members before and after.
notes:
  - Idempotent, the same O(name) with the same O(policy) and O(rules) reports no change and returns the group.
  - Quotas, as in Nova. A project has at most C(server_groups) groups (default V(10)). A group has at most
    C(server_group_members) members (default V(10); the project's limit applies to each of its groups). A group
    over the first limit fails with RV(error=quota); an instance over the second is refused by
    M(bootflow.cloud.instance) before anything is written. Set them with M(bootflow.cloud.quota).
  - A member's host is where it holds its claim, else the host in its record. A member in ERROR whose build was
    undone is on no host, so it does not count for the policy.
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.quota
"""

EXAMPLES = r"""
- name: Three web servers, each on its own host
  bootflow.cloud.server_group:
    auth_token: "{{ bootflow_auth.token }}"
    name: web
    policy: anti-affinity

- name: Workers, at most two on a host
  bootflow.cloud.server_group:
    auth_token: "{{ bootflow_auth.token }}"
    name: workers
    policy: anti-affinity
    rules:
      max_server_per_host: 2

- name: Spread if possible, never fail for it
  bootflow.cloud.server_group:
    auth_token: "{{ bootflow_auth.token }}"
    name: cache
    policy: soft-anti-affinity

- name: Boot into the group (playbooks/boot.yml takes -e bootflow_server_group=web)
  bootflow.cloud.instance:
    auth_token: "{{ bootflow_auth.token }}"
    name: web1
    flavor: m1.small
    image: debian-12
    networks: [public]
    server_group: web

- name: Where do the members of web run?
  bootflow.cloud.server_group:
    auth_token: "{{ bootflow_auth.token }}"
    name: web
  register: web

- name: Show the hosts
  ansible.builtin.debug:
    msg: "{{ web.server_group.members | map(attribute='name') | join(', ') }} on {{ web.server_group.hosts | join(', ') }}"

- name: Delete the group (members, if any, just leave it)
  bootflow.cloud.server_group:
    auth_token: "{{ bootflow_auth.token }}"
    name: web
    state: absent
"""

RETURN = r"""
server_group:
  description:
    - The group. With O(state=present), as it is after the task (in check mode, as it would be; a group that
      would be created has no C(id) yet). With O(state=absent), as it was before it was deleted, V(null) when
      there was none.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the group (Nova's server group UUID); V(null) in check mode for a group that would be created.
      type: str
      returned: success
      sample: 4b7d2c1e-8f3a-4e6b-9c0d-1a2b3c4d5e6f
    name:
      description: Name of the group.
      type: str
      returned: success
      sample: web
    policy:
      description: The group's policy.
      type: str
      returned: success
      sample: anti-affinity
    rules:
      description: The group's rules, V({}) for none.
      type: dict
      returned: success
      sample: {"max_server_per_host": 2}
    project_id:
      description: ID of the project that owns the group.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    user_id:
      description: ID of the user that created the group.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    created_at:
      description: Creation time, UTC, ISO 8601; V(null) in check mode for a group that would be created.
      type: str
      returned: success
      sample: "2025-01-10T09:15:02.123456Z"
    members:
      description: The live (not deleted) members, oldest first.
      type: list
      elements: dict
      returned: success
      contains:
        instance_uuid:
          description: UUID of the instance.
          type: str
          returned: success
          sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
        name:
          description: Name of the instance.
          type: str
          returned: success
          sample: web1
        vm_state:
          description: The instance's vm_state.
          type: str
          returned: success
          sample: active
        host:
          description:
            - The host the member is on - where it holds its claim, else the host in its record. V(null) when it
              has neither (not scheduled yet, or in ERROR after its build was undone).
          type: str
          returned: success
          sample: hv2
    hosts:
      description: The hosts the members are on, sorted, each once.
      type: list
      elements: str
      returned: success
      sample: [hv1, hv2, hv3]
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role, V(not_found) for a group
      looked up that does not exist (or is another project's), V(invalid) for a bad name, rule or rule with a
      policy other than anti-affinity, V(conflict) for an existing name with another policy or other rules,
      V(quota) when the project has as many groups as its C(server_groups) quota allows.
  returned: failure
  type: str
  sample: conflict
"""
