#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: identity_domain
short_description: Manage domains of the embedded bootflow identity service (Keystone domains)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's domains, the containers of projects and users. Project and user names are unique within a
    domain, so two domains can each have a user C(alice); they are different users, with their own passwords
    and roles.
  - The domain C(Default) (ID C(default)) always exists; M(bootflow.cloud.identity_bootstrap) puts the admin
    in it, and M(bootflow.cloud.project), M(bootflow.cloud.user), M(bootflow.cloud.role_assignment) and
    M(bootflow.cloud.token) use it unless told otherwise.
  - Creates, updates (description, enabled) or deletes a domain in the bootflow database.
  - Not to be confused with M(bootflow.cloud.domain), the libvirt domain (guest) of an instance.
  - Needs a token with the V(admin) role (policy rule C(identity:domain)); the project the token is scoped to
    does not matter. Any other caller fails with RV(error=auth).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the domain, unique in the database. An existing domain can also be given by its ID.
      - An empty or whitespace-only name, a name longer than 255 characters or one with control characters
        (newline, tab, NUL, C1 controls) or format characters (bidi overrides, zero-width spaces) fails the task
        with RV(error=invalid), also with O(state=absent).
    type: str
    required: true
  description:
    description:
      - Free-text description of the domain.
      - When omitted, the description of an existing domain is left as it is, and a new domain gets an
        empty description.
    type: str
  enabled:
    description:
      - Whether the domain is enabled.
      - When omitted, an existing domain is left as it is and a new domain is created enabled.
      - The users of a disabled domain cannot get tokens, and every module refuses the tokens of its users and
        the tokens scoped to its projects (RV(error=auth), C(the token's user's domain is disabled or gone) or
        C(the token's project's domain is disabled or gone)); enabling it again makes them valid again until
        they expire.
      - The default domain cannot be disabled (RV(error=invalid)).
    type: bool
  state:
    description:
      - V(present) creates the domain or updates it to the given values.
      - V(absent) deletes the domain; nothing happens when it does not exist. As in Keystone, it must be
        disabled first, and it must have no projects and no users left; otherwise the task fails with
        RV(error=conflict). The default domain cannot be deleted (RV(error=invalid)).
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the domain would be created, changed or deleted without writing anything.
      - When a domain would be created, RV(domain) only holds the given values; when one would be changed,
        it holds the domain as it is now.
  diff_mode:
    support: none
notes:
  - Manages the embedded (local) identity only. With O(auth_backend=keystone) the task fails with RV(error=invalid);
    manage Keystone's domains in Keystone itself.
  - Idempotent, the same O(name) with the same values reports no change; options left out are never reset.
  - Domains are identity containers only; there are no domain-scoped tokens or domain roles, and an admin of
    any project is admin everywhere, as with the default policy table.
seealso:
  - module: bootflow.cloud.project
  - module: bootflow.cloud.user
  - module: bootflow.cloud.role_assignment
  - module: bootflow.cloud.token
"""

EXAMPLES = r"""
- name: Create domain Partners
  bootflow.cloud.identity_domain:
    auth_token: "{{ bootflow_auth.token }}"
    name: Partners
    description: Users and projects of our partners

- name: Create user alice in Partners (another alice may exist in Default)
  bootflow.cloud.user:
    auth_token: "{{ bootflow_auth.token }}"
    name: alice
    domain: Partners
    password: "{{ vault_partner_alice_password }}"

- name: Disable Partners (its users' tokens are refused from now on)
  bootflow.cloud.identity_domain:
    auth_token: "{{ bootflow_auth.token }}"
    name: Partners
    enabled: false

- name: Delete Partners once it is disabled and empty
  bootflow.cloud.identity_domain:
    auth_token: "{{ bootflow_auth.token }}"
    name: Partners
    state: absent
"""

RETURN = r"""
domain:
  description:
    - The domain after the task.
    - V(null) when O(state=absent).
    - In check mode, only C(name), C(enabled) and C(description) (when given) for a domain that would be
      created, and the current domain for one that would be changed.
  returned: success
  type: dict
  contains:
    id:
      description: ID of the domain (32 hexadecimal characters as in Keystone; C(default) for the default domain).
      type: str
      returned: success, except in check mode for a domain that would be created
      sample: 3c5e8a0f2b6d4e1a9c7b5d3f1e0a2b4c
    name:
      description: Name of the domain.
      type: str
      returned: success
      sample: Partners
    description:
      description: Description of the domain.
      type: str
      returned: success, except in check mode for a domain that would be created without O(description)
      sample: Users and projects of our partners
    enabled:
      description: Whether the domain is enabled.
      type: bool
      returned: success
      sample: true
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success, except in check mode for a domain that would be created
      sample: "2025-01-10T09:15:02.123456Z"
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid, revoked or expired token or a caller without the V(admin)
      role, V(invalid) for a bad name or when the default domain would be disabled or deleted, V(conflict) when
      an enabled or non-empty domain would be deleted.
  returned: failure
  type: str
  sample: conflict
"""
