#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: token
short_description: Issue or validate a bootflow identity token (Keystone, seed steps 1-2 and 4-5)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's part of the OpenStack Nova boot request flow. In seed steps 1-2 the client sends the user's
    credentials to Keystone, which authenticates them and hands back an auth token; in seed steps 4-5
    nova-api asks Keystone to validate that token and gets the caller's roles back.
  - With O(state=issued), authenticates O(username) with O(password) against the bootflow database and
    issues a Fernet token scoped to O(project), valid for O(ttl) seconds. The token carries the user ID, the
    project ID, the user's roles on that project and the expiry time; nothing is stored per token. Any
    O(auth_token) (for example one set through C(module_defaults)) is ignored.
  - With O(state=validated), only validates O(auth_token) (seed steps 4-5) and returns what it says about the
    caller; O(username), O(password), O(project) and O(ttl) are then ignored.
  - Every other module of the collection takes the token as O(auth_token), usually set once per play
    through C(module_defaults) for C(group/bootflow.cloud.bootflow).
  - No role is required; any user with at least one role (V(admin), V(member) or V(reader)) on the
    project can get a token.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  username:
    description:
      - Name of the user to authenticate.
      - An unknown user, a disabled user or a wrong password fails the task with
        C(The request you have made requires authentication. (wrong user name or password)).
    type: str
    default: admin
  password:
    description:
      - Password of O(username). Treated as a secret (C(no_log)), it is never shown in logs or output.
      - When omitted and O(username=admin), the password that M(bootflow.cloud.identity_bootstrap) generated
        is read from the C(admin-password) file in O(state_dir); the task fails if that file does not exist
        (run C(playbooks/bootstrap.yml) first).
      - When omitted for any other user, authentication fails.
    type: str
  project:
    description:
      - Name of the project to scope the token to.
      - Defaults to the user's default project (the one it was bootstrapped with).
      - An unknown project fails with C(unknown project); a project on which the user has no role fails with
        C(User ... has no role on project ...).
    type: str
  ttl:
    description:
      - Lifetime of the issued token in seconds. Tasks that present the token after it expired fail.
      - Must be 1 or more; a smaller value fails the task with RV(error=auth) before the credentials are checked.
      - Ignored when O(state=validated).
    type: int
    default: 3600
  state:
    description:
      - V(issued) authenticates with O(username) and O(password) and issues a new token.
      - V(validated) validates the token given in O(auth_token) instead; a missing, malformed, tampered,
        unknown-key or expired token fails the task with RV(error=auth).
    type: str
    default: issued
    choices: [issued, validated]
attributes:
  check_mode:
    support: full
    details:
      - Issuing or validating a token changes nothing in the database, so the module runs normally in check mode
        and returns a usable token. It never reports a change.
  diff_mode:
    support: none
notes:
  - The returned RV(token) is a bearer secret. The action plugin does not mask it in the task result, so set
    C(no_log=true) on the task that registers it (as in the examples) to keep it out of the output and logs.
  - Tokens are Fernet tokens signed with the key repository C(fernet-keys/) in O(state_dir). The repository is
    created on first use; a token signed by a key that is no longer in the repository is refused.
  - Failures are reported with RV(error=auth) and a message saying why authentication or validation was refused
    (wrong password, unknown project, no role, malformed/tampered/unknown-key token, expired token).
seealso:
  - module: bootflow.cloud.identity_bootstrap
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.instance_info
"""

EXAMPLES = r"""
# Typical play: issue a token once, then hand it to every bootflow module with module_defaults.
#
# - hosts: localhost
#   gather_facts: false
#   tasks:
#     - name: Get a token for the admin user
#       bootflow.cloud.token:
#       register: bootflow_auth
#       no_log: true
#
#     - name: Boot steps
#       module_defaults:
#         group/bootflow.cloud.bootflow:
#           auth_token: "{{ bootflow_auth.token }}"
#       block:
#         - name: Make sure flavor m1.small exists
#           bootflow.cloud.flavor:
#             name: m1.small
#             vcpus: 1
#             ram_mb: 2048

- name: Get a token for the admin user (password read from the state dir)
  bootflow.cloud.token:
  register: bootflow_auth
  no_log: true

- name: Get a short-lived token for a member of project demo
  bootflow.cloud.token:
    username: alice
    password: "{{ vault_alice_password }}"
    project: demo
    ttl: 600
  register: alice_auth
  no_log: true

- name: Use a PostgreSQL database instead of the SQLite file
  bootflow.cloud.token:
    db_url: postgresql+psycopg2://bootflow@127.0.0.1/bootflow
    password: "{{ vault_admin_password }}"
  register: bootflow_auth
  no_log: true

- name: Check that a token is still valid
  bootflow.cloud.token:
    auth_token: "{{ bootflow_auth.token }}"
    state: validated
  register: token_check

- name: Show what the token grants
  ansible.builtin.debug:
    msg: "roles {{ token_check.auth.roles | join(', ') }} on project {{ token_check.auth.project_id }} until {{ token_check.expires_at }}"
"""

RETURN = r"""
token:
  description:
    - The issued Fernet token, to pass as O(auth_token) to the other modules.
    - SENSITIVE. This is a bearer credential for the user and project until RV(expires_at). Set C(no_log) on the
      task that registers it.
  returned: when O(state=issued)
  type: str
  sample: gAAAAABnXh2c8l3bQ4xZ...
valid:
  description: V(true) when O(auth_token) is valid. An invalid token fails the task instead.
  returned: when O(state=validated)
  type: bool
  sample: true
expires_at:
  description: When the token expires, UTC, ISO 8601.
  returned: success
  type: str
  sample: "2025-01-10T10:15:02Z"
auth:
  description: What the token says about the caller (Keystone's token validation answer).
  returned: success
  type: dict
  contains:
    user_id:
      description: ID of the user.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    user:
      description:
        - Name of the user.
        - V(null) when O(state=validated); names are not carried in the token, only IDs.
      type: str
      returned: success
      sample: admin
    project_id:
      description: ID of the project the token is scoped to.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    project:
      description:
        - Name of the project the token is scoped to.
        - V(null) when O(state=validated); names are not carried in the token, only IDs.
      type: str
      returned: success
      sample: admin
    roles:
      description: The user's roles on that project.
      type: list
      elements: str
      returned: success
      sample: [admin]
    expires_at:
      description: Expiry time, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T10:15:02Z"
    audit_id:
      description: Random ID of the token, for audit logs (it is not the token).
      type: str
      returned: success
      sample: 3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6
error:
  description: Kind of failure. V(auth) for every authentication or validation refusal.
  returned: failure
  type: str
  sample: auth
"""
