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
  - On a fresh identity (no user in the database yet), creates project O(project), user O(username) (with
    O(project) as its default project) and assigns O(role) to that user on that project.
  - Once the identity exists (the database has a user), a run B(without) O(auth_token) changes nothing in it. A
    run that matches the identity (same user, same password, the role already assigned) reports no change, and a
    run that would create a user or a project, reset a password or assign a role fails with RV(error=auth)
    (C(The identity is already bootstrapped ... this run would reset the password of user admin ...)) before
    anything is written. This is stricter than C(keystone-manage bootstrap), which resets the admin's password
    for whoever runs it; here a tokenless run may never change an existing user's password or roles, nor add an
    admin.
  - With O(auth_token) (it must be an V(admin)'s, policy rules C(identity:user) and C(identity:role_assignment);
    anyone else fails with RV(error=auth)), the missing project, user and role assignment are created and an
    existing user's password is reset to O(password), which revokes the tokens already issued to that user.
    The default project and the enabled flag of an existing user are not changed. Role assignments are only
    added, never removed.
  - When O(password) is omitted, the operator's E(BOOTFLOW_ADMIN_PASSWORD) on the controller is used (for
    example injected by the C(bootflow.cloud) AWX credential type, see C(docs/awx.md)); without it, the password
    stored in the C(admin-password) file of O(state_dir); if that file does not exist yet, a random password is
    generated and written there (mode 0600), so that M(bootflow.cloud.token) can later log in as V(admin)
    without a password.
  - Also creates the Fernet key repository when it is missing - C(fernet-keys/) in O(state_dir), or in the
    database when E(BOOTFLOW_KEY_SECRET) is set (see M(bootflow.cloud.identity_keys)) - and the database
    schema on first use.
  - Needs no token to bootstrap a fresh identity (whoever can write O(state_dir) and the database on the
    controller, as with C(keystone-manage) on a Keystone host); an admin's O(auth_token) to change an existing
    one. An O(auth_token) given is always validated.
  - Passwords are stored as scrypt hashes (N=2^17, r=8, p=1); see M(bootflow.cloud.user) for the rehash of older
    hashes at login, and M(bootflow.cloud.token) for the token lifetime cap and the revocation of tokens.
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
      - When omitted, E(BOOTFLOW_ADMIN_PASSWORD) of the controller; without it, the content of
        C(<state_dir>/admin-password) is used, and that file is generated with a
        random password when missing (on an existing identity that would reset the password, so without an
        admin's O(auth_token) the run is refused and no file is written). This file is meant for the V(admin)
        user; M(bootflow.cloud.token) only reads it when logging in as V(admin).
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
      - When there is no bootflow database yet, nothing at all is written (no state dir, database, key repository
        or password file) and RV(new_state=true) says that everything would be created.
      - With an existing database, the Fernet key repository is still created when missing, and its schema is
        upgraded to the collection's revision.
  diff_mode:
    support: none
notes:
  - With O(auth_backend=keystone) nothing is done and C(skipped=true) is returned, since users, projects and roles are Keystone's.
  - Running it again with the same arguments changes nothing (playbooks/bootstrap.yml may run any number of
    times). With O(password) omitted it is idempotent as long as the C(admin-password) file is kept.
  - Keep the C(admin-password) file and the C(fernet-keys/) directory private; they are created with mode 0600 and
    0700. Losing the key repository invalidates every token already issued.
  - Failures are reported with RV(error) V(invalid) (for example an empty password), or V(auth) (a change of an
    existing identity without an admin's O(auth_token)).
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

- name: Add a member user on project demo (an existing identity, so an admin's token is needed)
  bootflow.cloud.identity_bootstrap:
    username: alice
    password: "{{ vault_alice_password }}"
    project: demo
    role: member
    auth_token: "{{ bootflow_token }}"

- name: Reset the admin's password (revokes the admin's tokens; an admin's token is needed)
  bootflow.cloud.identity_bootstrap:
    password: "{{ vault_new_admin_password }}"
    auth_token: "{{ bootflow_token }}"
"""

RETURN = r"""
user:
  description: Name of the bootstrapped user (O(username)).
  returned: success
  type: str
  sample: admin
project:
  description: Name of the project (O(project)).
  returned: success
  type: str
  sample: admin
role:
  description: The role assigned on the project (O(role)).
  returned: success
  type: str
  sample: admin
password_file:
  description:
    - Path of the C(admin-password) file on the controller that holds the password used.
    - The password itself is never returned.
  returned: when O(password) was not given and E(BOOTFLOW_ADMIN_PASSWORD) is not set, except in check mode on a
    fresh state dir
  type: str
  sample: /root/.bootflow/admin-password
password_from:
  description:
    - V(BOOTFLOW_ADMIN_PASSWORD) when the admin's password came from that environment variable of the controller.
  returned: when O(password) was not given and E(BOOTFLOW_ADMIN_PASSWORD) is set
  type: str
  sample: BOOTFLOW_ADMIN_PASSWORD
new_state:
  description:
    - V(true) in check mode when there is no bootflow database yet (a new state dir, or an empty O(db_url) database).
      Nothing is created to find out - no state dir, database, key repository or password file; the task reports
      V(changed) and its C(msg) says what would be created. C(playbooks/bootstrap.yml) then reports the registries
      it would create without asking for a token (there is no user to issue one for yet).
  returned: check mode on a new database
  type: bool
  sample: true
error:
  description: Kind of failure, V(invalid) for a refused argument (empty password), V(auth) for a change of an
    existing identity without an admin's O(auth_token), or a bad token.
  returned: failure
  type: str
  sample: invalid
"""
