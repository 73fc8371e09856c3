#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: identity_keys
short_description: Show or rotate the Fernet key repository of the embedded identity service
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - The keys behind seed steps 1-2 and 4-5 of the OpenStack Nova boot request flow. The tokens
    M(bootflow.cloud.token) issues are Fernet tokens, encrypted and signed with the keys of the repository
    C(fernet-keys/) in O(state_dir), laid out like Keystone's.
  - When E(BOOTFLOW_KEY_SECRET) is set on the controller, the repository is kept in the bootflow database
    instead (tables C(fernet_keys) and C(fernet_key_wrap)), each key encrypted with a key derived by scrypt from
    that secret, so that every controller and every AWX job sharing the database shares the keys. The secret
    must be at least 32 characters; a secret that does not unlock the stored keys fails every task with
    RV(error=auth), and no new keys are made. The first run with the secret, on a database without keys, takes
    the keys of the directory repository in O(state_dir) when there is one, so tokens issued before stay valid.
    Without the secret, a database that holds the repository fails every task with RV(error=auth).
  - With O(state=present), reports the keys of the repository and changes nothing. The repository itself is
    created by M(bootflow.cloud.identity_bootstrap) or the first token issued (staged key C(0) and primary key
    C(1)), which has to happen before this module can run anyway, since it needs a token.
  - With O(state=rotated), rotates the keys like C(keystone-manage fernet_rotate).
  - Needs a token with the V(admin) role (policy rule C(identity:keys)); the project the token is scoped to does
    not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  state:
    description:
      - V(present) only reports the repository; it never reports a change.
      - V(rotated) rotates the keys and always reports a change. The staged key C(0) becomes the new primary
        key (its file or row is renamed to the highest index plus one), a new staged key C(0) is generated, and
        the oldest secondary keys (lowest indexes) are deleted until at most O(max_active_keys) keys are left.
        In the database this is one transaction under the repository's lock.
    type: str
    default: present
    choices: [present, rotated]
  max_active_keys:
    description:
      - Number of keys to keep after a rotation, counting all of them, the staged key C(0) and the primary key
        included, so V(3) keeps one secondary key.
      - Must be V(2) or more; a smaller value fails the task with RV(error=invalid) (not checked in check mode).
      - V(2) keeps no secondary key, so every token issued before the rotation, the one used for this task
        included, stops working at once.
      - As in Keystone, make it at least (token lifetime / rotation interval) + 2 so that tokens do not stop
        working before they expire.
      - Only used with O(state=rotated).
    type: int
    default: 3
attributes:
  check_mode:
    support: full
    details:
      - With O(state=rotated), reports a change and returns the keys as they are now, without rotating;
        RV(removed) is not returned. O(max_active_keys) is checked as a real run would.
  diff_mode:
    support: none
notes:
  - Manages the embedded (local) identity only. With O(auth_backend=keystone) the task fails with RV(error=invalid);
    manage Keystone's users, projects, role assignments and keys in Keystone itself.
  - Key roles, as in Keystone. The primary key (highest index) encrypts and signs new tokens. Secondary keys
    (indexes between C(0) and the primary) only decrypt tokens issued before they were replaced. The staged key
    C(0) only decrypts too; it is the next primary, so it can be copied to other controllers before it is used.
  - A token stays valid (until it expires) as long as the key that signed it is in the repository. With the
    default O(max_active_keys=3), a token survives one rotation and stops working at the second.
  - Not idempotent with O(state=rotated), every run rotates again. The action runs once per host of the play,
    so rotate from a play on C(localhost) or with C(run_once=true).
  - Deleting the repository invalidates every token already issued; a new one is created with the next token.
seealso:
  - module: bootflow.cloud.token
  - module: bootflow.cloud.identity_bootstrap
  - name: Keystone Fernet key rotation
    description: How Keystone rotates its Fernet keys, which this module follows.
    link: https://docs.openstack.org/keystone/latest/admin/fernet-token-faq.html
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

- name: Show the Fernet keys
  bootflow.cloud.identity_keys:
    auth_token: "{{ bootflow_auth.token }}"
  register: fernet

- name: Show which key signs new tokens
  ansible.builtin.debug:
    msg: "primary key {{ fernet.fernet_keys.primary }} of {{ fernet.fernet_keys.indexes | join(', ') }}"

- name: Rotate the Fernet keys, keeping two secondary keys
  bootflow.cloud.identity_keys:
    auth_token: "{{ bootflow_auth.token }}"
    state: rotated
    max_active_keys: 4
  run_once: true
  register: rotation

- name: Get a new token signed with the new primary key
  bootflow.cloud.token:
  register: bootflow_auth
  no_log: true
"""

RETURN = r"""
fernet_keys:
  description:
    - The key repository after the task (in check mode, as it is now).
  returned: success
  type: dict
  contains:
    primary:
      description: Index of the primary key, the one that signs new tokens. V(null) when the repository is empty.
      type: int
      returned: success
      sample: 3
    indexes:
      description: Indexes of all keys in the repository, ascending; C(0) is the staged key.
      type: list
      elements: int
      returned: success
      sample: [0, 2, 3]
    repository:
      description:
        - Where the keys are. V(files) for the directory C(fernet-keys/) of O(state_dir), V(database) for the
          encrypted repository in the bootflow database (E(BOOTFLOW_KEY_SECRET) set).
      type: str
      returned: success
      sample: database
removed:
  description:
    - Indexes of the secondary keys deleted by the rotation. Tokens they signed are no longer valid.
  returned: when O(state=rotated), except in check mode
  type: list
  elements: int
  sample: [1]
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(invalid) for O(max_active_keys) below V(2).
  returned: failure
  type: str
  sample: invalid
"""
