#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: role_assignment
short_description: Grant or revoke a role of a user on a project (Keystone role assignments)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's role assignments. In seed steps 1-2 of the OpenStack Nova boot request flow a user only gets a
    token for a project on which it has a role, and in seed steps 4-5 the roles it has on that project are what
    nova-api checks its policy against.
  - Adds or removes one role of one user on one project in the bootflow database.
  - V(admin) may do everything, on every project; V(member) may create and delete instances, ports, volumes and
    private images in its project; V(reader) may only look. A user can hold several roles on the same project.
  - Needs a token with the V(admin) role (policy rule C(identity:role_assignment)); the project the token is
    scoped to does not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  user:
    description:
      - Name or ID of the user. A name is looked up in O(user_domain).
      - An unknown user fails the task with RV(error=not_found) (C(User ... could not be found.)).
    type: str
    required: true
  project:
    description:
      - Name or ID of the project. A name is looked up in O(project_domain).
      - An unknown project fails the task with RV(error=not_found) (C(Project ... could not be found.)).
    type: str
    required: true
  role:
    description:
      - The role to grant or revoke. Other roles of the user on the project are not touched.
      - The V(admin) role on any project gives admin rights on all projects.
    type: str
    required: true
    choices: [admin, member, reader]
  user_domain:
    description:
      - Name or ID of the domain O(user) is looked up in when it is a name.
      - An unknown domain fails the task with RV(error=not_found) (C(Domain ... could not be found.)).
    type: str
    default: Default
  project_domain:
    description:
      - Name or ID of the domain O(project) is looked up in when it is a name. The user and the project can be
        in different domains.
      - An unknown domain fails the task with RV(error=not_found) (C(Domain ... could not be found.)).
    type: str
    default: Default
  state:
    description:
      - V(present) grants the role; nothing happens when the user already has it.
      - V(absent) revokes it; nothing happens when the user does not have it. As in Keystone, removing a role
        also revokes the tokens the user was issued for the project until then (also when another role is left);
        the user gets a new token.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the role would be granted or revoked without writing anything. The user and the project
        must exist.
  diff_mode:
    support: none
notes:
  - Manages the embedded (local) identity only. With O(auth_backend=keystone) the task fails with RV(error=invalid);
    manage Keystone's users, projects, role assignments and keys in Keystone itself.
  - Idempotent, granting a role the user has or revoking one it does not have reports no change.
  - Takes effect at once, also for tokens already issued. Tokens are checked against the roles the user has
    now, so a revoked role is no longer usable with an existing token, and a user left with no role on the
    project has its tokens for that project refused (RV(error=auth)).
  - Nothing stops an admin from revoking its own V(admin) role.
seealso:
  - module: bootflow.cloud.user
  - module: bootflow.cloud.project
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

- name: Let alice boot instances in project demo
  bootflow.cloud.role_assignment:
    auth_token: "{{ bootflow_auth.token }}"
    user: alice
    project: demo
    role: member

- name: Give the monitoring user read-only access to project demo
  bootflow.cloud.role_assignment:
    auth_token: "{{ bootflow_auth.token }}"
    user: monitor
    project: demo
    role: reader

- name: Take the admin role away from bob
  bootflow.cloud.role_assignment:
    auth_token: "{{ bootflow_auth.token }}"
    user: bob
    project: admin
    role: admin
    state: absent
"""

RETURN = r"""
user:
  description: The user, as given in O(user) (name or ID).
  returned: success
  type: str
  sample: alice
project:
  description: The project, as given in O(project) (name or ID).
  returned: success
  type: str
  sample: demo
role:
  description: The role granted or revoked (O(role)).
  returned: success
  type: str
  sample: member
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(not_found) for an unknown user or project.
  returned: failure
  type: str
  sample: not_found
"""
