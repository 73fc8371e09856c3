#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: image_fetch
short_description: Cache an image on the hypervisor host and create the instance's copy-on-write root disk
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Does what the libvirt driver of nova-compute does in C(_create_image) for a qcow2 instance disk.
  - The image is cached once per host in C(<instances_path>/_base/<sha1(image_id)>) under a per-image
    file lock (C(<instances_path>/locks/)). It is downloaded from O(url), or copied from O(src) (a file
    the action plugin already transferred to the host), into a temporary file next to the cache,
    verified against O(checksum) and/or O(os_hash_algo)/O(os_hash_value) and O(size), inspected, then
    renamed into place. A C(.info) JSON sidecar records the image id, hashes, format, size and fetch time.
  - The format inspection refuses an image whose content is not its declared O(disk_format) (for
    example a qcow2 declared C(raw), or a raw file declared C(qcow2)) and a qcow2 with a backing file
    or an external data file, so qemu can never be made to open a file outside the cache.
  - With O(instance_uuid), the instance disk C(<instances_path>/<instance_uuid>/disk) is then created
    as a qcow2 overlay on the cached base (C(qemu-img create -f qcow2 -F <format> -b <base>)), with the
    virtual size O(root_gb) when given, and grown later when O(root_gb) grows.
  - With O(create_disk=false) (boot from volume), no instance disk is made; the cached base is then the
    source of the root volume (M(bootflow.cloud.volume) with O(bootflow.cloud.volume#module:source_path)).
  - When the base is not cached and neither O(url) nor O(src) is given, nothing is done and
    RV(base_missing=true) is returned; the action plugin then sends the image from the controller and calls
    the module again with O(src) - from the controller's image store, or (an image of a real Glance,
    O(image_backend=glance)) streamed from Glance into a temporary file on the controller while its
    C(os_hash_value) is verified, so a corrupted download never reaches the host. The hypervisor hosts never
    talk to Glance themselves.
  - The image is sent to a host once. The action plugin holds a lock per host and image on the controller
    (in O(state_dir)) from the first check to the end of the transfer, so parallel boots of one image on one
    host (several C(ansible-playbook) runs, or forks) transfer it once; the others wait and then only make
    their overlay. RV(transferred_bytes) says what a call sent.
  - With an O(auth_token) and an instance, the image's C(min_disk) and C(min_ram) are checked against the
    instance's flavor before anything is written on the host (as nova-api does at create).
  - Nothing half-made is left behind on failure - a download that fails verification is deleted (the
    cache stays as it was), and an overlay that cannot be created is removed with the directories this
    call made.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.image_backend
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: Inspects an existing cache file (or O(src)), nothing is written, downloaded or locked.
  diff_mode:
    support: none
options:
  image_id:
    description:
      - Image id (Glance-style UUID). The cache file name is its SHA-1 hex digest, like Nova's.
      - Required with O(state=present).
    type: str
  disk_format:
    description:
      - Declared format of the image. The file content must match it.
      - Required with O(state=present).
    type: str
    choices: [raw, qcow2]
  checksum:
    description:
      - MD5 hex digest of the image file (Glance's C(checksum)).
      - With O(state=present), at least one of O(checksum) or O(os_hash_algo)+O(os_hash_value) is required.
    type: str
  os_hash_algo:
    description:
      - Hash algorithm of O(os_hash_value) (Glance's multihash), for example C(sha512).
    type: str
  os_hash_value:
    description:
      - Hex digest of the image file with O(os_hash_algo).
    type: str
  size:
    description:
      - Expected size of the image file in bytes. A download of any other size is refused.
    type: int
  url:
    description:
      - http:// or https:// URL to download the image from when it is not cached yet.
      - Mutually exclusive with O(src).
    type: str
  url_timeout:
    description:
      - Timeout in seconds for connecting to and reading from O(url).
    type: int
    default: 60
  src:
    description:
      - Path B(on the hypervisor host) of the image file, already transferred there (the action plugin
        does this from the controller's image store). It is copied into the cache, not moved.
      - Mutually exclusive with O(url).
    type: path
  instance_uuid:
    description:
      - UUID of the instance whose root disk C(<instances_path>/<instance_uuid>/disk) is created.
      - Without it, O(state=present) only caches the image.
      - Required with O(state=absent).
    type: str
  root_gb:
    description:
      - Virtual size of the instance disk in GiB (the flavor's root disk). The task fails when it is
        smaller than the image's virtual size. C(0) or unset keeps the image's virtual size.
      - An existing instance disk is grown to this size, never shrunk.
    type: int
  force_raw_images:
    description:
      - Convert a qcow2 image to raw when it is put into the cache (Nova's C(force_raw_images)), after it was
        verified and passed the format check. The instance overlays then have C(backing_fmt=raw); a raw base
        costs more disk and less CPU.
      - A base cached before keeps its format (recorded in the C(.info) sidecar).
      - Defaults to the E(BOOTFLOW_FORCE_RAW_IMAGES) environment variable on the controller (C(true)/C(false)),
        else V(false).
    type: bool
    default: false
  create_disk:
    description:
      - With O(instance_uuid), create (or grow) the instance disk. V(false) only caches the image (and records the
        step for the instance), for an instance that boots from a volume.
    type: bool
    default: true
  instances_path:
    description:
      - Directory holding the image cache and the instance directories (created with mode 0755).
    type: path
    default: /var/lib/bootflow/instances
  state:
    description:
      - V(present) caches the image and creates the instance disk.
      - V(absent) removes the instance directory (disk, console log, config drive), and the copy a resize kept aside
        (C(<uuid>_resize)); the cached base stays.
    type: str
    choices: [present, absent]
    default: present
requirements:
  - qemu-img (Debian package C(qemu-utils)) on the hypervisor host
notes:
  - The instance disk is created with mode 0644; libvirt gives it to the qemu user when the domain starts.
seealso:
  - module: bootflow.cloud.domain
  - module: bootflow.cloud.image
"""

EXAMPLES = r"""
- name: Cache the image and create the root disk (the action plugin uploads it if needed)
  bootflow.cloud.image_fetch:
    image_id: "{{ instance.image.id }}"
    disk_format: "{{ instance.image.disk_format }}"
    checksum: "{{ instance.image.checksum }}"
    os_hash_algo: "{{ instance.image.os_hash_algo }}"
    os_hash_value: "{{ instance.image.os_hash_value }}"
    size: "{{ instance.image.size }}"
    instance_uuid: "{{ instance.uuid }}"
    root_gb: "{{ instance.flavor.disk_gb }}"

- name: Pre-cache an image from a web server
  bootflow.cloud.image_fetch:
    image_id: 6d1f2bbc-3c6a-4a0e-9b0e-7f3c1d2e9a10
    disk_format: qcow2
    os_hash_algo: sha512
    os_hash_value: "{{ image_sha512 }}"
    url: https://images.example.org/busybox.qcow2

- name: Delete the instance's disk and console log
  bootflow.cloud.image_fetch:
    instance_uuid: "{{ instance.uuid }}"
    state: absent
"""

RETURN = r"""
base_path:
  description: Path of the cached base image.
  returned: when O(image_id) is given
  type: str
  sample: /var/lib/bootflow/instances/_base/0b2c5d0e8a1f4f6c9f2b3a4d5e6f708192a3b4c5
disk_path:
  description: Path of the instance disk (qcow2 overlay).
  returned: when O(instance_uuid) is given and O(create_disk=true)
  type: str
  sample: /var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11/disk
instance_dir:
  description: The instance's directory under O(instances_path) (its overlay, config drive and console log).
  returned: when O(instance_uuid) is given
  type: str
  sample: /var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11
console_log:
  description:
    - Where the guest's serial console log goes, in the instance's directory (the O(bootflow.cloud.domain#module:console_log)
      to give the domain).
    - With O(auth_token), the instance's record keeps it; RV(bootflow.cloud.instance_info#module:instance.console_log)
      returns it.
  returned: when O(instance_uuid) is given
  type: str
  sample: /var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11/console.log
cache_name:
  description: File name of the base in C(_base) (SHA-1 of O(image_id)).
  returned: when O(image_id) is given
  type: str
  sample: 0b2c5d0e8a1f4f6c9f2b3a4d5e6f708192a3b4c5
base_downloaded:
  description: Whether this call put the image into the cache (would, in check mode).
  returned: always
  type: bool
  sample: true
base_format:
  description: Format of the cached base - V(raw) when it was converted (O(force_raw_images)), else O(disk_format).
  returned: state=present and the base is available
  type: str
  sample: qcow2
transferred_bytes:
  description:
    - Bytes the action plugin sent from the controller to the host for this call (0 when the base was cached).
  returned: with O(auth_token) and O(state=present)
  type: int
  sample: 16646144
image_source:
  description:
    - Where the sent image came from - V(glance) (downloaded from Glance and verified on the controller) or
      V(store) (the controller's image store); V(null) when nothing was sent.
  returned: with O(auth_token) and O(state=present)
  type: str
  sample: glance
base_missing:
  description:
    - The image is not cached and neither O(url) nor O(src) was given; nothing was done.
  returned: always
  type: bool
  sample: false
virtual_size:
  description: Virtual size of the image in bytes (unknown in check mode before a download).
  returned: state=present and the base is available
  type: int
  sample: 67108864
disk_created:
  description: Whether the instance disk was created.
  returned: always
  type: bool
  sample: true
disk_resized:
  description: Whether the existing instance disk was grown to O(root_gb).
  returned: always
  type: bool
  sample: false
disk_virtual_size:
  description: Virtual size of the instance disk in bytes.
  returned: when O(instance_uuid) is given and O(state=present)
  type: int
  sample: 1073741824
size:
  description: Number of bytes fetched into the cache.
  returned: when RV(base_downloaded) is true and not in check mode
  type: int
  sample: 67108864
removed:
  description: Names of the files in the instance directory that O(state=absent) removed.
  returned: when O(state=absent) removed the directory
  type: list
  elements: str
  sample: [console.log, disk]
removed_resize_dir:
  description: The directory a resize kept the old root disk in (C(<uuid>_resize)), removed by O(state=absent)
    with the instance.
  returned: when O(state=absent) removed it
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish
from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.image_cache import image_fetch_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("image_fetch"))

    def opener(url, timeout):
        # here, not at the top: a cached image needs no download, and urls costs ~35 ms to import
        from ansible.module_utils.urls import open_url
        return open_url(url, timeout=timeout, http_agent="bootflow.cloud-image_fetch")

    params = module.params
    qemu_img = module.get_bin_path("qemu-img", required=params["state"] == "present" and not module.check_mode
                                   and (bool(params["instance_uuid"]) and params["create_disk"]
                                        or params["force_raw_images"]))

    finish(module, lambda: image_fetch_step(module.params, check_mode=module.check_mode, run=run_argv, opener=opener,
                                            qemu_img=qemu_img),
           "image_fetch of image %s" % module.params["image_id"])


if __name__ == "__main__":
    main()
