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
  - With O(source_path), a volume that does not exist yet is created with the content of that image file
    (boot from volume - the root volume made from the image cached by M(bootflow.cloud.image_fetch)), with
    C(qemu-img convert -n) into the new pool volume of O(size_gb) GiB. The file's content must be its declared
    O(source_format) and it must not have a backing or data file; its virtual size must fit O(size_gb).
    An existing volume is never overwritten.
  - When creating the volume fails, a pool this call created is removed again (and a half-made volume
    deleted).
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
      - Required with O(state=present) when O(auth_token) is not given; with it, the volume record's size is the
        default.
      - With O(auth_token), a new size is checked on the controller before the host is asked - between 1 and 16384
        (Cinder-style limit), not smaller than the volume (no shrinking), and the growth within the project's
        C(gigabytes) quota (M(bootflow.cloud.quota)); otherwise the task fails with an error of kind C(invalid) or
        C(quota) and nothing is changed.
    type: int
  format:
    description:
      - Volume format. An existing volume of another format is an error.
    type: str
    choices: [qcow2, raw]
    default: qcow2
  source_path:
    description:
      - Path B(on the hypervisor host) of an image file the new volume is made from, for example the cached base
        C(<instances_path>/_base/<sha1(image_id)>) that M(bootflow.cloud.image_fetch) returns as C(base_path).
      - Only used when the volume is created. It must be a file in an image cache directory named C(_base)
        (symbolic links resolved); with a token, the action plugin also requires it to be the cache file of the
        image of the volume's instance.
    type: path
  source_format:
    description:
      - Declared format of O(source_path) (the image's C(disk_format)). Required with O(source_path).
    type: str
    choices: [raw, qcow2]
  state:
    description:
      - V(present) creates or extends the volume, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - qemu-img (Debian package C(qemu-utils)) on the hypervisor host, with O(source_path)
seealso:
  - module: bootflow.cloud.volume_attach
  - module: bootflow.cloud.image_fetch
"""

EXAMPLES = r"""
- name: Create a 1 GiB volume
  bootflow.cloud.volume:
    name: volume-{{ vol.id }}
    size_gb: 1

- name: Create the root volume of a boot-from-volume instance from the cached image
  bootflow.cloud.volume:
    name: volume-{{ root.id }}
    size_gb: 1
    source_path: "{{ fetched.base_path }}"
    source_format: qcow2

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
source_path:
  description: The image file the volume was made from.
  returned: when this call created the volume from O(source_path)
  type: str
  sample: /var/lib/bootflow/instances/_base/0b2c5d0e8a1f4f6c9f2b3a4d5e6f708192a3b4c5
actions:
  description: What was done (would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["define pool bootflow at /var/lib/bootflow/volumes", "create qcow2 volume volume-1 of 1 GiB"]
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.volume import volume_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("volume"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    qemu_img = module.get_bin_path("qemu-img", required=bool(module.params["source_path"]) and not module.check_mode)
    run_libvirt_step(module, lambda conn: volume_step(conn, module.params, check_mode=module.check_mode,
                                                      run=run_argv, qemu_img=qemu_img),
                     "volume %s" % module.params["name"])


if __name__ == "__main__":
    main()
