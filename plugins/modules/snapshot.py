#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: snapshot
short_description: Make an image of an instance's root disk (Nova's createImage), while the guest runs
version_added: 0.2.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's snapshot of a server. The task runs on the instance's hypervisor host (C(playbooks/server_action.yml)
    with C(bootflow_action=snapshot) sends it there).
  - With O(auth_token), nova-api's part runs first on the controller. The token is checked against the policy
    rules C(os_compute_api:servers:create_image) and C(image:upload). The instance must be one of the caller's
    project (or the caller an admin), be on this host, and be active, stopped, paused or suspended with no task
    running (Nova's C(check_instance_state)). An instance that boots from a volume is refused.
  - The image name must be free in the caller's project. A name that is already a snapshot of this instance is
    the image an earlier run made, C(changed=false) (an Ansible re-run; Nova's API would make a second image). A
    name of any other image is a conflict, before anything is done.
  - Then the task_state C(image_snapshot) is saved and the host copies the root disk. A running or paused guest is
    copied with libvirt's backup job (push mode, full). QEMU copies the disk as it was when the job started, and
    the guest keeps running (a block it overwrites meanwhile is copied first), so the image is crash-consistent,
    like Nova's live snapshot. A stopped or suspended guest's disk is copied with C(qemu-img convert) (Nova's cold
    snapshot). Either copy is a self-contained qcow2 (its base image merged in), written into the instance
    directory under a temporary name.
  - The task_state becomes C(image_uploading). The controller fetches the copy over the host's connection and
    uploads it into the image registry (or Glance) as a private qcow2 image of the caller's project, with its
    checksum and os_hash_value, the base image's properties, C(image_type=snapshot), C(instance_uuid),
    C(base_image_ref) and C(user_id), and C(min_disk) the flavor's disk. Then the task_state is none again; the
    vm_state never changes.
  - The copy on the host is removed whatever happens. When the copy or the upload fails, the task_state goes
    back to none and the registry keeps no image of it.
  - Without O(auth_token) the module only makes the copy of instance O(instance_uuid) on the host (at RV(path)),
    or removes it with O(state=absent). No database.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: With O(auth_token) every check runs (policy, state, image name, quota), nothing is copied or saved.
  diff_mode:
    support: none
options:
  instance:
    description:
      - The instance, by name or UUID (names are looked up in the caller's project). Needs O(auth_token).
    type: str
  image_name:
    description:
      - The new image's name. Required with O(auth_token).
    type: str
  instance_uuid:
    description:
      - The instance's UUID on the host. Required without O(auth_token); with it, the instance's.
    type: str
  instances_path:
    description:
      - Directory on the host holding the instance directories.
    type: path
    default: /var/lib/bootflow/instances
  state:
    description:
      - V(present) makes the copy. V(absent) removes a copy left on the host (without O(auth_token) only).
    type: str
    choices: [present, absent]
    default: present
  timeout:
    description:
      - Seconds the copy of a running guest may take; after them the backup job is aborted and the task fails.
    type: int
    default: 600
seealso:
  - module: bootflow.cloud.server_action
  - module: bootflow.cloud.image
"""

EXAMPLES = r"""
- name: Snapshot web-1 into the image web-1-monday (on its hypervisor host)
  bootflow.cloud.snapshot:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    image_name: web-1-monday
"""

RETURN = r"""
path:
  description: The copy's path on the host (removed again once uploaded, with O(auth_token)).
  returned: always
  type: str
method:
  description: How the disk was copied - V(live) (libvirt's backup job, the guest running or paused) or V(cold)
    (C(qemu-img convert)).
  returned: when O(state=present) and the copy was made
  type: str
  sample: live
size:
  description: Bytes of the copy.
  returned: when O(state=present) and the copy was made
  type: int
image:
  description: The new image's record (id, name, status, checksum, os_hash_value, size, properties...).
  returned: with O(auth_token), unless in check mode
  type: dict
uuid:
  description: The instance's UUID.
  returned: with O(auth_token)
  type: str
vm_state:
  description: The instance's vm_state (a snapshot does not change it).
  returned: with O(auth_token)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.snapshot import snapshot_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("snapshot"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not module.params["instance_uuid"]:
        module.fail_json(msg="instance_uuid is required without auth_token")
    run_libvirt_step(module, lambda conn: snapshot_step(conn, module.params, run_argv, check_mode=module.check_mode),
                     "snapshot of instance %s" % module.params["instance_uuid"])


if __name__ == "__main__":
    main()
