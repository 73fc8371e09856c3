#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: volume_attach
short_description: Attach a pool volume to a libvirt domain on the hypervisor host, or detach it
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Attaches the volume O(volume) of the pool O(pool) to the domain O(domain) as the disk O(device)
    (C(<disk type='volume'>)), in the persistent definition and, when the domain runs, live (hot-plug),
    in one libvirt call.
  - Idempotent by the domain's inactive (persistent) and live XML; a volume missing only from the
    running guest is attached live only.
  - Fails when the volume is already attached under another device name, or O(device) is used by
    another disk.
  - O(state=absent) detaches it from the running guest first and waits (see O(wait)) until the guest
    has released it, then removes it from the persistent definition.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.wait
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the domain's disks (persistent and live) before and after.
options:
  domain:
    description:
      - Name of the libvirt domain (C(bootflow-<instance uuid>)). It must exist.
      - With O(auth_token), its instance must exist (else the task fails, not found), and a volume
        that is already attached to another instance fails the task as a conflict (no multiattach).
    type: str
    required: true
  volume:
    description:
      - Name of the volume in O(pool).
    type: str
    required: true
  pool:
    description:
      - Name of the libvirt storage pool holding O(volume).
    type: str
    default: bootflow
  device:
    description:
      - Target device in the guest, for example C(vdb) - C(vdX), C(sdX) or C(hdX); another name fails the task
        before anything is changed.
      - Defaults to the device the volume already has, else the first free C(vdX) after C(vda).
    type: str
  bus:
    description:
      - Disk bus of the new disk.
    type: str
    choices: [virtio, sata, scsi]
    default: virtio
  state:
    description:
      - V(present) attaches, V(absent) detaches.
      - With O(state=absent), O(wait) waits for the guest to release a hot-unplugged disk.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: bootflow.cloud.volume
  - module: bootflow.cloud.domain
"""

EXAMPLES = r"""
- name: Attach the volume as vdb
  bootflow.cloud.volume_attach:
    domain: bootflow-{{ instance.uuid }}
    volume: volume-{{ vol.id }}
    device: vdb

- name: Detach it
  bootflow.cloud.volume_attach:
    domain: bootflow-{{ instance.uuid }}
    volume: volume-{{ vol.id }}
    state: absent
"""

RETURN = r"""
device:
  description: Target device of the volume in the guest (the detached one with O(state=absent)).
  returned: when the volume is or was attached
  type: str
  sample: vdb
live:
  description: Whether the running guest has the volume after the call.
  returned: always
  type: bool
  sample: true
path:
  description: Path of the volume file.
  returned: when the volume exists
  type: str
  sample: /var/lib/bootflow/volumes/volume-0f5e8a4c-6f3d-4e5b-9c1a-2b3c4d5e6f70
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.volume import volume_attach_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("volume_attach"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    run_libvirt_step(module, lambda conn: volume_attach_step(conn, module.params, check_mode=module.check_mode),
                     "volume_attach %s -> %s" % (module.params["volume"], module.params["domain"]))


if __name__ == "__main__":
    main()
