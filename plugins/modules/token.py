#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: token
short_description: Issue, validate or revoke a bootflow identity token (Keystone, seed steps 1-2 and 4-5)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Keystone's part of the OpenStack Nova boot request flow. In seed steps 1-2 the client sends the user's
    credentials to Keystone, which authenticates them and hands back an auth token; in seed steps 4-5
    nova-api asks Keystone to validate that token and gets the caller's roles back.
  - With O(state=issued), authenticates O(username) with O(password) and issues a token scoped to O(project).
    Any O(auth_token) (for example one set through C(module_defaults)) is ignored.
  - With O(auth_backend=local) (the default), the user is checked against the bootflow database and the
    token is a Fernet token valid for O(ttl) seconds. It carries the user ID, the project ID, the user's
    roles on that project, the expiry time and the issue time (in microseconds); nothing is stored when a
    token is issued.
  - No local token lives longer than the operator's C(identity.max_token_expiration) (the operator
    configuration C(bootflow.yml), default 86400 seconds = 1 day, Keystone's cap); a longer O(ttl) is refused
    for everyone, and a token older than the cap is refused whatever its expiry says.
  - Every login runs the password hash (scrypt) exactly once, also for an unknown or disabled user (against a
    dummy hash), so the time a refusal takes does not tell whether the user exists. A successful login with a
    password hash of older, weaker scrypt parameters rehashes the password with the current ones.
  - With O(auth_backend=keystone), the token is issued by the Keystone at O(auth_url) (password
    authentication, identity API v3), and Keystone decides its lifetime. O(cloud) takes O(auth_url) and the
    credentials from a clouds.yaml cloud. Options not given fall back to the cloud's values, then to the
    C(openrc) variables E(OS_USERNAME), E(OS_PASSWORD), E(OS_PROJECT_NAME), E(OS_USER_DOMAIN_NAME) and
    E(OS_PROJECT_DOMAIN_NAME) on the controller.
  - With O(state=validated), only validates O(auth_token) (seed steps 4-5) and returns what it says about the
    caller; O(username), O(password), O(project) and O(ttl) are then ignored.
  - Validation, here and in every other module, is done like Keystone's. With the local backend, the token
    must decrypt with a key of the repository and not be expired, and the database is checked too. The token
    must not be revoked, its user and its project must still exist and be enabled, and the user must still have
    a role on the project. A token is revoked by O(state=revoked), and, as in Keystone, by a change of its
    user's password, by disabling or deleting its user and by removing a role of its user on its project
    (tokens issued at or before the change; a token issued in the same microsecond counts as issued before).
    Validation only reads the Fernet key repository; it never creates or changes a key. The roles the caller
    gets are the ones the user has B(now) on the project, not the
    ones in the token.
  - With O(auth_backend=keystone), Keystone validates the token (C(GET /v3/auth/tokens), the token validating
    itself) and answers with the user, the project and the roles (implied roles included). Other modules reuse
    a validation for up to 30 seconds; this module with O(state=validated) or O(state=revoked) always asks
    Keystone.
  - With O(state=revoked), revokes the token given in O(auth_token) so that every module refuses it from then
    on. Locally that is by its audit ID (Keystone's revocation event); with O(auth_backend=keystone) it is
    Keystone's C(DELETE /v3/auth/tokens). Any role may revoke its own token. O(username), O(password),
    O(project) and O(ttl) are then ignored.
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
      - When omitted, V(admin). With O(auth_backend=keystone), the O(cloud)'s user name or E(OS_USERNAME) first.
      - An unknown user, a disabled user or a wrong password fails the task with
        C(The request you have made requires authentication. (wrong user name or password)). Keystone does not
        say which was wrong, so with O(auth_backend=keystone) the message says that Keystone refused the
        credentials, for a wrong user name or password or no role on the project.
    type: str
  password:
    description:
      - Password of O(username). Treated as a secret (C(no_log)), it is never shown in logs or output.
      - When omitted and O(username=admin) with the local backend, E(BOOTFLOW_ADMIN_PASSWORD) of the controller
        (an AWX credential of type C(bootflow.cloud) injects it), else the password that
        M(bootflow.cloud.identity_bootstrap) generated, read from the C(admin-password) file in O(state_dir);
        the task fails if neither exists (run C(playbooks/bootstrap.yml) first).
      - When omitted with O(auth_backend=keystone), the O(cloud)'s password or E(OS_PASSWORD); the task fails
        without asking Keystone when there is none.
      - When omitted for any other user, authentication fails.
    type: str
  project:
    description:
      - Name of the project to scope the token to.
      - Defaults to the user's default project (the one it was bootstrapped with). With
        O(auth_backend=keystone), the O(cloud)'s project or E(OS_PROJECT_NAME) first, and a token that ends up
        without a project (the user has no default project in Keystone) is refused.
      - An unknown project fails with C(unknown project); a project on which the user has no role fails with
        C(User ... has no role on project ...).
    type: str
  user_domain:
    description:
      - Name of the Keystone domain of O(username).
      - With O(auth_backend=keystone), when omitted, the O(cloud)'s user domain, else E(OS_USER_DOMAIN_NAME),
        else C(Default).
      - With the local backend, a domain name or ID (see M(bootflow.cloud.identity_domain)), C(Default) when
        omitted. An unknown or disabled domain fails with RV(error=auth) (C(unknown or disabled domain)).
    type: str
  project_domain:
    description:
      - Name of the Keystone domain of O(project).
      - With O(auth_backend=keystone), when omitted, the O(cloud)'s project domain, else
        E(OS_PROJECT_DOMAIN_NAME), else C(Default).
      - With the local backend, a domain name or ID, C(Default) when omitted; not used when O(project) is
        omitted (the user's default project). An unknown or disabled domain fails with RV(error=auth).
      - Tokens of a user or scoped to a project whose domain is disabled later are refused by every module.
    type: str
  cloud:
    description:
      - Name of a cloud in C(clouds.yaml), as used by the OpenStack clients. Only with O(auth_backend=keystone).
      - Its C(auth_url) is used when O(auth_url) is not given, and its C(username), C(password),
        C(project_name) (or C(project_id)), C(user_domain_name) (or C(user_domain_id)) and C(project_domain_name)
        (or C(project_domain_id)) when the matching option is not given. Only password authentication is
        supported. Its C(cacert) and C(verify) settings are used for HTTPS.
      - The file is E(OS_CLIENT_CONFIG_FILE), else the first C(clouds.yaml) in the current directory,
        C(~/.config/openstack/) and C(/etc/openstack/). A C(secure.yaml) beside it (or E(OS_CLIENT_SECURE_FILE))
        is merged in.
      - When omitted, the cloud named by E(OS_CLOUD) is used, also beside E(OS_AUTH_URL). Its credentials are
        used, and its C(auth_url) must then be the same Keystone as E(OS_AUTH_URL) (the task fails with
        RV(error=invalid) naming both otherwise).
      - Other modules do not take this option; they find Keystone through O(auth_url), E(OS_AUTH_URL) or
        E(OS_CLOUD).
    type: str
  ttl:
    description:
      - Lifetime of the issued token in seconds. Tasks that present the token after it expired fail.
      - When omitted, the operator's C(identity.token_expiration) (C(bootflow.yml); default 3600, Keystone's
        C([token] expiration)).
      - Any user may ask for 1 second up to C(identity.token_expiration). A longer lifetime is only for a user with
        the V(admin) role on the token's project (policy rule C(config:override)); anyone else fails with
        RV(error=auth) (C(ttl ... is above the operator's token lifetime)), checked before a token is made.
      - Never more than the operator's C(identity.max_token_expiration) (default 86400, 1 day), not even for an
        admin; a longer one, or one below 1, fails the task with RV(error=invalid) before the credentials are
        checked.
      - Ignored when O(state=validated) or O(state=revoked), and with O(auth_backend=keystone), where Keystone's
        C([token] expiration) setting decides (a value above the cap is still refused).
    type: int
  state:
    description:
      - V(issued) authenticates with O(username) and O(password) and issues a new token.
      - V(validated) validates the token given in O(auth_token) instead; a missing, malformed, tampered,
        unknown-key, expired or revoked token, or one whose user or project is disabled or gone or whose user
        no longer has a role on the project, fails the task with RV(error=auth).
      - V(revoked) revokes the token given in O(auth_token). The token must be valid (same checks as
        V(validated)); revoking a token that is already revoked fails with RV(error=auth)
        (C(the token has been revoked); with Keystone C(refused the token)).
    type: str
    default: issued
    choices: [issued, validated, revoked]
attributes:
  check_mode:
    support: full
    details:
      - Issuing or validating a token changes nothing in the database, so the module runs normally in check mode
        and returns a usable token. It never reports a change then.
      - With O(state=revoked), reports a change without recording the revocation (nor asking Keystone to revoke
        it); the token stays valid.
  diff_mode:
    support: none
notes:
  - The returned RV(token) is a bearer secret. The action plugin does not mask it in the task result, so set
    C(no_log=true) on the task that registers it (as in the examples) to keep it out of the output and logs.
  - Tokens are Fernet tokens signed with the key repository C(fernet-keys/) in O(state_dir), or with the
    encrypted repository in the database when E(BOOTFLOW_KEY_SECRET) is set (M(bootflow.cloud.identity_keys)).
    The repository is created on first use; a token signed by a key that is no longer in the repository is refused (see
    M(bootflow.cloud.identity_keys) for key rotation).
  - Revocation is stored in the database until the token would have expired anyway. Revoking is not
    idempotent, the second run with the same token fails because the token is no longer valid.
  - Changing a user's password does not revoke its tokens; revoke them, or disable the user with
    M(bootflow.cloud.user), to cut them off.
  - Failures are reported with RV(error=auth) and a message saying why authentication or validation was refused
    (wrong password, unknown project, no role, malformed/tampered/unknown-key token, expired token, revoked
    token, disabled or deleted user or project).
  - With O(auth_backend=keystone), Keystone's answers become the same kind of message. A 401 gives
    C(The request you have made requires authentication.) followed by which Keystone refused the token (it is
    expired, revoked or not a valid token) or the credentials. A server that cannot be reached gives
    C(cannot reach Keystone at URL (connection refused)), and a URL without Keystone behind it
    C(no Keystone identity v3 API at URL (404 Not Found)).
  - The keystone backend needs the C(keystoneauth1) Python package on the controller.
  - With O(auth_backend=keystone), the users, projects and role assignments are Keystone's. The local identity
    modules (M(bootflow.cloud.identity_bootstrap), M(bootflow.cloud.user), M(bootflow.cloud.project),
    M(bootflow.cloud.role_assignment), M(bootflow.cloud.identity_keys)) manage the embedded backend only.
seealso:
  - module: bootflow.cloud.identity_bootstrap
  - module: bootflow.cloud.identity_keys
  - module: bootflow.cloud.user
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

- name: Get a token from an existing Keystone (auth_backend and auth_url usually come from the environment)
  bootflow.cloud.token:
    auth_backend: keystone
    auth_url: https://keystone.example.com:5000/v3
    username: alice
    password: "{{ vault_alice_password }}"
    project: demo
    user_domain: Default
    project_domain: Default
  register: keystone_auth
  no_log: true

- name: Get a token with the credentials of a clouds.yaml cloud
  bootflow.cloud.token:
    auth_backend: keystone
    cloud: mycloud
  register: keystone_auth
  no_log: true

- name: Check that a token is still valid
  bootflow.cloud.token:
    auth_token: "{{ bootflow_auth.token }}"
    state: validated
  register: token_check

- name: Show what the token grants
  ansible.builtin.debug:
    msg: "roles {{ token_check.auth.roles | join(', ') }} on project {{ token_check.auth.project }} until {{ token_check.expires_at }}"

- name: Revoke the token at the end of the play
  bootflow.cloud.token:
    auth_token: "{{ bootflow_auth.token }}"
    state: revoked
"""

RETURN = r"""
token:
  description:
    - The issued token (a Fernet token, from the local backend or from Keystone), to pass as O(auth_token) to
      the other modules.
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
  returned: when O(state=issued) or O(state=validated)
  type: str
  sample: "2025-01-10T10:15:02Z"
auth:
  description:
    - What the token says about the caller (Keystone's token validation answer).
    - With O(state=validated), checked against the database. The names are the current ones, and C(roles)
      are the roles the user has now on the project, which may differ from those it had when the token was
      issued.
    - With O(auth_backend=keystone), Keystone's answer. IDs are Keystone's (32 hexadecimal digits), C(roles)
      include the implied roles (an admin also gets member and reader, and any other role Keystone defines).
  returned: when O(state=issued) or O(state=validated)
  type: dict
  contains:
    user_id:
      description: ID of the user.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    user:
      description:
        - Name of the user, read from the database (names are not carried in the token, only IDs), or Keystone's.
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
        - Name of the project the token is scoped to, read from the database (names are not carried in the
          token, only IDs), or Keystone's.
      type: str
      returned: success
      sample: admin
    roles:
      description:
        - The user's roles on that project, sorted. When issued, the roles at that time (also carried in the
          token); when validated, the roles the user has now.
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
      description: Random ID of the token, for audit logs and revocation (it is not the token). Keystone's are 22
        characters of URL-safe base64.
      type: str
      returned: success
      sample: 3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6
    user_domain_id:
      description: ID of the user's domain.
      type: str
      returned: success, with the local backend
      sample: default
    project_domain_id:
      description: ID of the project's domain.
      type: str
      returned: success, with the local backend
      sample: default
revoked:
  description: V(true) when the token given in O(auth_token) is revoked (in check mode, would be).
  returned: when O(state=revoked)
  type: bool
  sample: true
audit_id:
  description: Audit ID of the revoked token, the key of its revocation event.
  returned: when O(state=revoked)
  type: str
  sample: 3f9a0c1d2e4b5a6978c0d1e2f3a4b5c6
error:
  description:
    - Kind of failure. V(auth) for every authentication, validation or revocation refusal, and for Keystone
      errors, and for an O(ttl) above C(identity.token_expiration) asked by a non-admin. V(invalid) for an
      O(ttl) below 1 or above C(identity.max_token_expiration), an unknown O(auth_backend), a missing O(auth_url) with
      O(auth_backend=keystone), an unusable O(cloud), or Keystone-only options with the local backend.
  returned: failure
  type: str
  sample: auth
"""
