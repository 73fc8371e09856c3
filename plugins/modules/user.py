#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: user
short_description: Manage users of the embedded bootflow identity service (Keystone users)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's users, who send their credentials in seed step 1 of the OpenStack Nova boot request flow to get
    a token from M(bootflow.cloud.token).
  - Creates, updates (password, default project, enabled) or deletes a user in the bootflow database.
  - A user can only get a token for a project on which it has a role; assign one with
    M(bootflow.cloud.role_assignment).
  - Needs a token with the V(admin) role (policy rule C(identity:user)); the project the token is scoped to
    does not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the user, unique within its O(domain) (two domains can each have a user of the same name, and
        they are different users). An existing user can also be given by its ID.
      - An empty or whitespace-only name, a name longer than 255 characters or one with control characters
        (newline, tab, NUL, C1 controls) or format characters (bidi overrides, zero-width spaces) fails the task
        with RV(error=invalid), also with O(state=absent).
    type: str
    required: true
  password:
    description:
      - Password of the user. Treated as a secret (C(no_log)), it is never shown in logs or output.
      - Required to create a user; creating one without it (or with an empty string) fails with RV(error=invalid)
        (C(password is required to create user ...)).
      - For an existing user it is only used with O(update_password=always).
    type: str
  update_password:
    description:
      - V(on_create) sets O(password) only when the user is created; the password of an existing user is left
        as it is.
      - V(always) also sets it on an existing user whose stored password differs from O(password). The check
        is made against the stored hash, so the same password reports no change.
      - Changing the password revokes every token already issued to the user, as Keystone does (a revocation
        event by user and time, so that tokens issued at or before the change are refused by every module with
        RV(error=auth), C(the token has been revoked)); the user gets a new token with the new password.
    type: str
    default: on_create
    choices: [always, on_create]
  default_project:
    description:
      - Name or ID of the project M(bootflow.cloud.token) scopes the user's tokens to when no
        O(bootflow.cloud.token#module:project) is given. A name is looked up in the user's O(domain); give the
        ID of a project of another domain.
      - It does not give the user a role on that project; use M(bootflow.cloud.role_assignment) for that.
      - When omitted, an existing user keeps its default project and a new user gets none (its token
        requests must then name a project). It cannot be unset.
      - An unknown project fails the task with RV(error=not_found) (C(Project ... could not be found.)).
    type: str
  enabled:
    description:
      - Whether the user is enabled.
      - When omitted, an existing user is left as it is and a new user is created enabled.
      - A disabled user cannot get a token, and the tokens it already holds are refused by every module
        (RV(error=auth), C(the token's user is disabled or gone)). Disabling also revokes them, so they stay
        refused when the user is enabled again. Deleting a user revokes its tokens too.
    type: bool
  domain:
    description:
      - Name or ID of the Keystone domain the user is in (see M(bootflow.cloud.identity_domain)); O(name) is
        looked up in it and a new user is created in it. The default domain has the ID C(default).
      - An unknown domain fails the task with RV(error=not_found) (C(Domain ... could not be found.)), except
        with O(state=absent), where nothing happens.
      - The user gets tokens with O(bootflow.cloud.token#module:user_domain) set to this domain. Users of a
        disabled domain cannot get tokens, and the tokens they hold are refused.
    type: str
    default: Default
  state:
    description:
      - V(present) creates the user or updates it to the given values.
      - V(absent) deletes the user and all its role assignments; nothing happens when it does not exist. The
        tokens it holds are refused from then on.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the user would be created, changed or deleted without writing anything.
      - When a user would be created, RV(user) only holds its C(name); when one would be changed, it holds the
        user as it is now.
  diff_mode:
    support: none
notes:
  - Manages the embedded (local) identity only. With O(auth_backend=keystone) the task fails with RV(error=invalid);
    manage Keystone's users, projects, role assignments and keys in Keystone itself.
  - Idempotent, the same O(name) with the same values reports no change; options left out are never reset.
  - Passwords are stored only as salted scrypt hashes (N=2^17, r=8, p=1, OWASP's minimum; each hash records its
    parameters). A hash made with older, weaker parameters stays valid and is rehashed with the current ones at
    the user's next successful login. Neither the password nor its hash is ever returned.
  - Nothing stops an admin from disabling or deleting its own user, which makes its own token invalid for the
    next tasks.
seealso:
  - module: bootflow.cloud.project
  - module: bootflow.cloud.role_assignment
  - module: bootflow.cloud.token
  - module: bootflow.cloud.identity_bootstrap
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

- name: Create user alice with demo as her default project
  bootflow.cloud.user:
    auth_token: "{{ bootflow_auth.token }}"
    name: alice
    password: "{{ vault_alice_password }}"
    default_project: demo

- name: Give alice the member role on demo so that she can get a token
  bootflow.cloud.role_assignment:
    auth_token: "{{ bootflow_auth.token }}"
    user: alice
    project: demo
    role: member

- name: Reset alice's password to the one in the vault
  bootflow.cloud.user:
    auth_token: "{{ bootflow_auth.token }}"
    name: alice
    password: "{{ vault_alice_password }}"
    update_password: always

- name: Lock out bob (his tokens are refused from now on)
  bootflow.cloud.user:
    auth_token: "{{ bootflow_auth.token }}"
    name: bob
    enabled: false

- name: Delete user bob
  bootflow.cloud.user:
    auth_token: "{{ bootflow_auth.token }}"
    name: bob
    state: absent
"""

RETURN = r"""
user:
  description:
    - The user after the task, without its password.
    - V(null) when O(state=absent).
    - In check mode, only C(name) and C(domain_id) for a user that would be created, and the current user for
      one that would be changed.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the user.
      type: str
      returned: success, except in check mode for a user that would be created
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    name:
      description: Name of the user.
      type: str
      returned: success
      sample: alice
    default_project_id:
      description: ID of the user's default project, V(null) when it has none.
      type: str
      returned: success, except in check mode for a user that would be created
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    enabled:
      description: Whether the user is enabled.
      type: bool
      returned: success, except in check mode for a user that would be created
      sample: true
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode for a user that would be created
      sample: "2025-01-10T09:15:02.123456Z"
    domain_id:
      description: ID of the user's domain.
      type: str
      returned: success
      sample: default
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(invalid) for a bad name or a missing password on creation, V(not_found) for an unknown
      O(default_project) or O(domain).
  returned: failure
  type: str
  sample: not_found
"""
