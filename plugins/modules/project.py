#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: project
short_description: Manage projects of the embedded bootflow identity service (Keystone projects)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's projects, the tenants of the OpenStack Nova boot request flow. Every token issued in seed steps 1-2
    is scoped to a project, and the instances, ports and volumes a member creates belong to that project and
    count against its quotas (see M(bootflow.cloud.quota)).
  - Creates, updates (description, enabled) or deletes a project in the bootflow database.
  - Needs a token with the V(admin) role (policy rule C(identity:project)); the project the token is scoped to
    does not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the project, unique within its O(domain) (two domains can each have a project of the same name).
        An existing project can also be given by its ID.
      - An empty or whitespace-only name, a name longer than 255 characters or one with control characters
        (newline, tab, NUL, C1 controls) or format characters (bidi overrides, zero-width spaces) fails the task
        with RV(error=invalid), also with O(state=absent).
    type: str
    required: true
  description:
    description:
      - Free-text description of the project.
      - When omitted, the description of an existing project is left as it is, and a new project gets an
        empty description.
    type: str
  enabled:
    description:
      - Whether the project is enabled.
      - When omitted, an existing project is left as it is and a new project is created enabled.
      - Tokens scoped to a disabled project are refused by every module from then on (RV(error=auth),
        C(the token's project is disabled or gone)); enabling it again makes them valid again until they expire.
    type: bool
  domain:
    description:
      - Name or ID of the Keystone domain the project is in (see M(bootflow.cloud.identity_domain)); O(name) is
        looked up in it and a new project is created in it. The default domain has the ID C(default).
      - An unknown domain fails the task with RV(error=not_found) (C(Domain ... could not be found.)), except
        with O(state=absent), where nothing happens.
      - A project cannot be moved to another domain.
      - Tokens scoped to a project of a disabled domain are refused like those of a disabled project.
    type: str
    default: Default
  state:
    description:
      - V(present) creates the project or updates it to the given values.
      - V(absent) deletes the project together with its role assignments and its quota limits; nothing happens
        when it does not exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the project would be created, changed or deleted without writing anything.
      - When a project would be created, RV(project) only holds the given values; when one would be changed,
        it holds the project as it is now.
  diff_mode:
    support: none
notes:
  - Manages the embedded (local) identity only. With O(auth_backend=keystone) the task fails with RV(error=invalid);
    manage Keystone's users, projects, role assignments and keys in Keystone itself.
  - Idempotent, the same O(name) with the same values reports no change; options left out are never reset.
  - O(state=absent) is refused with RV(error=conflict) (C(Project ... still has N instance(s); delete them
    first.)) while live (not deleted) instances belong to the project. Volumes of the project are not checked
    and are left in the database.
  - O(state=absent) also fails (with a database foreign key error) while the project is the default project of a
    user; give those users another O(bootflow.cloud.user#module:default_project) or delete them first.
  - Deleting or disabling the project the caller's own token is scoped to makes that token invalid for the next
    tasks.
seealso:
  - module: bootflow.cloud.user
  - module: bootflow.cloud.role_assignment
  - module: bootflow.cloud.quota
  - module: bootflow.cloud.token
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

- name: Create project demo
  bootflow.cloud.project:
    auth_token: "{{ bootflow_auth.token }}"
    name: demo
    description: Demo tenant for the web team

- name: Disable project demo (its tokens are refused from now on)
  bootflow.cloud.project:
    auth_token: "{{ bootflow_auth.token }}"
    name: demo
    enabled: false

- name: Create project web in domain Partners (created with bootflow.cloud.identity_domain)
  bootflow.cloud.project:
    auth_token: "{{ bootflow_auth.token }}"
    name: web
    domain: Partners

- name: Delete project old-demo once its instances are gone
  bootflow.cloud.project:
    auth_token: "{{ bootflow_auth.token }}"
    name: old-demo
    state: absent
"""

RETURN = r"""
project:
  description:
    - The project after the task.
    - V(null) when O(state=absent).
    - In check mode, only C(name), C(enabled) and C(description) (when given) for a project that would be
      created, and the current project for one that would be changed.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the project.
      type: str
      returned: success, except in check mode for a project that would be created
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    name:
      description: Name of the project.
      type: str
      returned: success
      sample: demo
    description:
      description: Description of the project.
      type: str
      returned: success, except in check mode for a project that would be created without O(description)
      sample: Demo tenant for the web team
    enabled:
      description: Whether the project is enabled.
      type: bool
      returned: success
      sample: true
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode for a project that would be created
      sample: "2025-01-10T09:15:02.123456Z"
    domain_id:
      description: ID of the project's domain.
      type: str
      returned: success
      sample: default
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(invalid) for a bad name, V(conflict) when a project with live instances would be deleted,
      V(not_found) for an unknown O(domain).
  returned: failure
  type: str
  sample: conflict
"""
