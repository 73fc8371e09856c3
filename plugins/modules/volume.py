#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume
short_description: Create, extend or delete a volume in a libvirt directory pool on the hypervisor host
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - The host side of a Cinder-style volume, a file in a libvirt C(dir) storage pool.
  - Makes sure the pool O(pool) exists at O(pool_path) (defined, built, started, autostarted) and the
    volume O(name) exists with O(size_gb) GiB.
  - A bigger O(size_gb) than the volume has extends it (online, with C(blockResize), when a running
    domain uses it); a smaller one fails, shrinking is not supported.
  - O(state=absent) deletes the volume, and fails while any domain on the host (running or only
    defined) still references it. The pool is kept.
  - When creating the volume fails, a pool this call created is removed again.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the volume's format and capacity before and after.
options:
  name:
    description:
      - Volume name, the file name in the pool, for example C(volume-<volume id>).
    type: str
    required: true
  pool:
    description:
      - Name of the libvirt directory pool.
    type: str
    default: bootflow
  pool_path:
    description:
      - Directory of the pool (created with mode 0755 when the pool is defined).
      - An existing pool O(pool) with another path is an error.
    type: path
    default: /var/lib/bootflow/volumes
  size_gb:
    description:
      - Size of the volume in GiB.
      - Required with O(state=present).
    type: int
  format:
    description:
      - Volume format. An existing volume of another format is an error.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  state:
    description:
      - V(present) creates or extends the volume, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: bootflow.cloud.volume_attach
"""

EXAMPLES = r"""
- name: Create a 1 GiB volume
  bootflow.cloud.volume:
    name: volume-{{ vol.id }}
    size_gb: 1

- name: Delete it (after volume_attach state=absent)
  bootflow.cloud.volume:
    name: volume-{{ vol.id }}
    state: absent
"""

RETURN = r"""
path:
  description: Path of the volume file.
  returned: when the volume exists (or would, in check mode)
  type: str
  sample: /var/lib/bootflow/volumes/volume-0f5e8a4c-6f3d-4e5b-9c1a-2b3c4d5e6f70
capacity_bytes:
  description: Capacity of the volume in bytes.
  returned: when O(state=present)
  type: int
  sample: 1073741824
format:
  description: Format of the volume.
  returned: when O(state=present)
  type: str
  sample: qcow2
actions:
  description: What was done (would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["define pool bootflow at /var/lib/bootflow/volumes", "create qcow2 volume volume-1 of 1 GiB"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils._argspec import (
    AUTH_ARGSPEC,
    LIBVIRT_ARGSPEC,
    argspec,
)
from ansible_collections.bootflow.cloud.plugins.module_utils._libvirt import (
    HAS_LIBVIRT,
    LIBVIRT_IMPORT_ERROR,
    run_libvirt_step,
    volume_step,
)


def main():
    module = AnsibleModule(
        argument_spec=argspec(
            AUTH_ARGSPEC,
            LIBVIRT_ARGSPEC,
            name=dict(type="str", required=True),
            pool=dict(type="str", default="bootflow"),
            pool_path=dict(type="path", default="/var/lib/bootflow/volumes"),
            size_gb=dict(type="int"),
            format=dict(type="str", choices=["qcow2", "raw"], default="qcow2"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
        ),
        required_if=[("state", "present", ("size_gb",))],
        supports_check_mode=True,
    )
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    run_libvirt_step(module, lambda conn: volume_step(conn, module.params, check_mode=module.check_mode),
                     "volume %s" % module.params["name"])


if __name__ == "__main__":
    main()
