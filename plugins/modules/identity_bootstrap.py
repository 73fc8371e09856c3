#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: identity_bootstrap
short_description: Bootstrap the embedded identity service (keystone-manage bootstrap)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - The one-time setup that makes seed steps 1-2 of the OpenStack Nova boot request flow possible. Before the
    client can send credentials to Keystone and get an auth token back, Keystone needs a project, a user and
    a role assignment; this module is the collection's C(keystone-manage bootstrap).
  - Idempotently creates project O(project), user O(username) (with O(project) as its default project) and
    assigns O(role) to that user on that project. If the user already exists with a different password, its
    password is reset to O(password). Role assignments are only added, never removed.
  - When O(password) is omitted, the password stored in the C(admin-password) file of O(state_dir) is used;
    if that file does not exist yet, a random password is generated and written there (mode 0600), so that
    M(bootflow.cloud.token) can later log in as V(admin) without a password.
  - Also creates the Fernet key repository C(fernet-keys/) in O(state_dir) when it is missing, and the database
    schema on first use.
  - Needs no token and no role, O(auth_token) is ignored. Whoever can write O(state_dir) and the database on
    the controller can bootstrap, as with C(keystone-manage) on a Keystone host.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  username:
    description:
      - Name of the user to create or update.
    type: str
    default: admin
  password:
    description:
      - Password of O(username). Treated as a secret (C(no_log)), it is never shown in logs or output.
        It is stored as an scrypt hash.
      - When omitted, the content of C(<state_dir>/admin-password) is used, and that file is generated with a
        random password when missing. This file is meant for the V(admin) user; M(bootflow.cloud.token) only
        reads it when logging in as V(admin).
      - An empty string fails the task with C(a password is required to bootstrap user ...).
    type: str
  project:
    description:
      - Name of the project to create (if missing) and to assign O(role) on.
      - It becomes the default project of O(username) only when the user is created; the default project of an
        existing user is not changed.
    type: str
    default: admin
  role:
    description:
      - Role to assign to O(username) on O(project). V(admin) may manage flavors, networks, subnets, public images
        and (by UUID) instances of every project; V(member) may boot and delete instances and upload private images in its
        project; V(reader) may only read (for example with M(bootflow.cloud.instance_info)).
      - Other roles the user already holds on the project are kept.
    type: str
    default: admin
    choices: [admin, member, reader]
attributes:
  check_mode:
    support: partial
    details:
      - Predicts whether the project, the user, its password or the role assignment would change, without
        writing them and without generating the C(admin-password) file.
      - The Fernet key repository and the database schema are still created when missing.
      - On a fresh O(state_dir) without O(password), only C(changed=true) is returned.
  diff_mode:
    support: none
notes:
  - With O(auth_backend=keystone) nothing is done and C(skipped=true) is returned, since users, projects and roles are Keystone's.
  - Running it again with the same arguments changes nothing. With O(password) omitted it is idempotent as
    long as the C(admin-password) file is kept.
  - Keep the C(admin-password) file and the C(fernet-keys/) directory private; they are created with mode 0600 and
    0700. Losing the key repository invalidates every token already issued.
  - Failures are reported with RV(error) V(invalid) (for example an empty password).
seealso:
  - module: bootflow.cloud.token
  - module: bootflow.cloud.flavor
"""

EXAMPLES = r"""
# Run once per controller (playbooks/bootstrap.yml), before any other bootflow module.
# Later plays pass the token to every module with:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"
#       state_dir: /srv/bootflow

- name: Bootstrap the admin user with a generated password
  bootflow.cloud.identity_bootstrap:
  register: bootstrap

- name: Show where the generated admin password is kept
  ansible.builtin.debug:
    msg: "admin password file: {{ bootstrap.password_file }}"
  when: bootstrap.password_file is defined

- name: Bootstrap the admin user with a password from the vault, in a custom state dir
  bootflow.cloud.identity_bootstrap:
    password: "{{ vault_bootflow_admin_password }}"
    state_dir: /srv/bootflow

- name: Add a member user on project demo
  bootflow.cloud.identity_bootstrap:
    username: alice
    password: "{{ vault_alice_password }}"
    project: demo
    role: member

- name: Add a read-only user for monitoring
  bootflow.cloud.identity_bootstrap:
    username: monitor
    password: "{{ vault_monitor_password }}"
    project: demo
    role: reader
"""

RETURN = r"""
user:
  description: Name of the bootstrapped user (O(username)).
  returned: success, except in check mode on a fresh state dir without O(password)
  type: str
  sample: admin
project:
  description: Name of the project (O(project)).
  returned: success, except in check mode on a fresh state dir without O(password)
  type: str
  sample: admin
role:
  description: The role assigned on the project (O(role)).
  returned: success, except in check mode on a fresh state dir without O(password)
  type: str
  sample: admin
password_file:
  description:
    - Path of the C(admin-password) file on the controller that holds the password used.
    - The password itself is never returned.
  returned: when O(password) was not given, except in check mode on a fresh state dir
  type: str
  sample: /root/.bootflow/admin-password
error:
  description: Kind of failure, V(invalid) for a refused argument (empty password).
  returned: failure
  type: str
  sample: invalid
"""
