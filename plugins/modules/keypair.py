#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: keypair
short_description: Import, generate or delete an SSH key pair (Nova's os-keypairs)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's key pairs. A key pair is an SSH public key with a name. An instance created with
    O(bootflow.cloud.instance#module:key_name) gets a copy of the key, and M(bootflow.cloud.config_drive) writes it
    into the C(public-keys) of the config drive's C(meta-data). cloud-init in the guest then adds it to the
    default user's C(authorized_keys).
  - A key pair belongs to a user, not to a project. The user sees the same key pairs from every project. Names are
    unique per user, so two users can each have a key pair called C(default).
  - With O(state=present) and O(public_key), imports the key. When the user already has a key pair of that name
    with the same key, nothing changes. With another key, the task fails, as in Nova (a key pair cannot be changed).
  - With O(state=present) and no O(public_key), generates a new ed25519 key pair and returns its private key once,
    in RV(private_key). The private key is never stored. When the user already has a key pair of that name, it is
    returned as it is, without a private key. Nova itself no longer generates key pairs since API microversion
    2.92; this module still does.
  - With O(state=absent), deletes the key pair. Instances created with it keep their copy of the key.
  - Needs a token with the V(admin) or V(member) role (policy rules C(os_compute_api:os-keypairs:create) and
    C(os_compute_api:os-keypairs:delete)). Acting on another user's key pairs with O(user) also needs the V(admin)
    role (C(os_compute_api:os-keypairs:other_user)).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  name:
    description:
      - Name of the key pair, unique among the key pairs of its user.
      - 1 to 255 characters. Only ASCII letters, digits, C(@), C(.), C(_), C(-) and blanks are allowed (Nova's rule
        since API microversion 2.92), and no leading or trailing blank. Any other name fails the task with
        RV(error=invalid).
    type: str
    required: true
  public_key:
    description:
      - The public key to import, as one line in OpenSSH format, C(<type> <base64 key data> [comment]). This is the
        content of an C(id_ed25519.pub) file, for example with
        C(lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub')).
      - The types V(ssh-ed25519), V(ssh-rsa) (at least 2048 bits), V(ecdsa-sha2-nistp256), V(ecdsa-sha2-nistp384)
        and V(ecdsa-sha2-nistp521) are accepted. The type inside the key data must be the one the line starts with.
      - Refused with RV(error=invalid) before anything is written are several lines, C(authorized_keys) options
        before the type, certificates, DSA and security-key (C(sk-)) keys, key data that is not valid base64 or
        is not a valid key, and an RSA key of fewer than 2048 bits.
      - Blanks around the line are dropped. The key is stored as C(<type> <base64> [comment]) with one blank between
        the fields.
      - When the key pair exists, only the key data is compared. The same key with another comment changes nothing,
        and the stored comment stays. Another key fails with RV(error=conflict).
      - Omit it to generate a key pair. Ignored with O(state=absent).
    type: str
  user:
    description:
      - The user whose key pair this is (Nova's C(user_id) parameter). Defaults to the user of O(auth_token).
      - Naming another user needs the V(admin) role, anyone else gets RV(error=auth) (also for a user that does
        not exist, so that a member learns nothing about other users).
      - With the local identity (O(auth_backend=local)) a user ID, or a user name in the C(Default) domain. An
        unknown user fails with RV(error=not_found). With O(auth_backend=keystone), a Keystone user ID, taken as it
        is (as Nova does).
    type: str
  state:
    description:
      - V(present) imports O(public_key), or generates a key pair when it is omitted.
      - V(absent) deletes the key pair; nothing happens when it does not exist.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: full
    details:
      - Reports whether the key pair would be imported, generated or deleted, without doing it. The name and the
        key are checked as usual. A key pair that would be generated has no key yet, so RV(keypair.public_key) and
        the fingerprints are V(null), and no RV(private_key) is returned.
  diff_mode:
    support: full
    details:
      - Shows the key pair's name, user, fingerprint and public key before and after.
notes:
  - Idempotent. The same O(name) with the same key reports no change. Without O(public_key), an existing key pair
    of that name is returned unchanged, so a task that generates a key pair can run again. Only its first run
    returns the private key. Save it then (see the examples), or delete the key pair and generate a new one.
  - The task result of a generation holds the private key. The action plugin marks that result as C(no_log), so
    Ansible shows it as censored in its output and logs. The registered variable still holds RV(private_key).
  - M(bootflow.cloud.instance) looks O(bootflow.cloud.instance#module:key_name) up among the key pairs of the user
    of its token only, as Nova does. An admin booting an instance cannot use another user's key pair.
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.config_drive
  - name: Nova key pairs API
    description: The API this module follows.
    link: https://docs.openstack.org/api-ref/compute/#keypairs-keypairs
"""

EXAMPLES = r"""
- name: Import my public key
  bootflow.cloud.keypair:
    auth_token: "{{ bootflow_auth.token }}"
    name: mykey
    public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"

- name: Boot an instance with it (playbooks/boot.yml takes -e bootflow_key_name=mykey)
  bootflow.cloud.instance:
    auth_token: "{{ bootflow_auth.token }}"
    name: web1
    flavor: m1.small
    image: debian-12
    networks: [public]
    key_name: mykey

- name: Generate a key pair (the private key is returned by this first run only)
  bootflow.cloud.keypair:
    auth_token: "{{ bootflow_auth.token }}"
    name: deploy
  register: deploy_key

- name: Keep the private key
  ansible.builtin.copy:
    content: "{{ deploy_key.private_key }}"
    dest: ~/.ssh/bootflow-deploy
    mode: "0600"
  when: deploy_key.private_key is defined
  no_log: true

- name: An admin imports a key for user alice
  bootflow.cloud.keypair:
    auth_token: "{{ bootflow_auth.token }}"
    name: alice-laptop
    user: alice
    public_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 alice@laptop

- name: Delete a key pair
  bootflow.cloud.keypair:
    auth_token: "{{ bootflow_auth.token }}"
    name: deploy
    state: absent
"""

RETURN = r"""
keypair:
  description:
    - The key pair. With O(state=present), as it is after the task (in check mode, as it would be). With
      O(state=absent), as it was before it was deleted, V(null) when there was none.
    - Never holds the private key.
  returned: success
  type: dict
  contains:
    id:
      description: Number of the key pair in the database; V(null) in check mode for a key pair that would be created.
      type: int
      returned: success
      sample: 3
    name:
      description: Name of the key pair.
      type: str
      returned: success
      sample: mykey
    user_id:
      description: ID of the user the key pair belongs to.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    project_id:
      description:
        - ID of the project the key pair was created from, for information only (a key pair is the user's in
          every project). V(null) for a key pair an admin created for another user.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    type:
      description: Nova's key pair type, always V(ssh).
      type: str
      returned: success
      sample: ssh
    public_key:
      description:
        - The public key as stored, C(<type> <base64> [comment]). A generated key's comment is
          C(Generated-by-bootflow). V(null) in check mode for a key pair that would be generated.
      type: str
      returned: success
      sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 me@laptop
    fingerprint:
      description:
        - Nova's fingerprint, the MD5 of the key data as colon-separated hex pairs (what
          C(ssh-keygen -l -E md5) prints after C(MD5:)).
      type: str
      returned: success
      sample: "76:18:a1:52:9b:ce:1e:b3:a7:3c:ad:35:b2:98:04:c3"
    fingerprint_sha256:
      description: The SHA-256 fingerprint as C(ssh-keygen -l) prints it by default.
      type: str
      returned: success
      sample: "SHA256:2uPp+mfNbjo1lW3H6Yo4r09vEr8VAYpyqBX+GI/IVx8"
    algorithm:
      description: The SSH key type.
      type: str
      returned: success
      sample: ssh-ed25519
    bits:
      description: Size of the key in bits.
      type: int
      returned: success
      sample: 256
    created_at:
      description: Creation time, UTC, ISO 8601; V(null) in check mode for a key pair that would be created.
      type: str
      returned: success
      sample: "2025-01-10T09:15:02.123456Z"
private_key:
  description:
    - SENSITIVE. The private key of a key pair generated by this task, in OpenSSH format (C(-----BEGIN OPENSSH
      PRIVATE KEY-----)), not encrypted. It is not stored anywhere, and later runs do not return it.
  returned: when O(state=present) generated a new key pair (not in check mode)
  type: str
  sample: "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA...\n-----END OPENSSH PRIVATE KEY-----\n"
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token, a missing role, or O(user) naming another
      user without the V(admin) role, V(invalid) for a bad name or public key, V(conflict) for an existing name
      with another key, V(not_found) for an unknown O(user).
  returned: failure
  type: str
  sample: conflict
"""
