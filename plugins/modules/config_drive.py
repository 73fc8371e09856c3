#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: config_drive
short_description: Build an instance's NoCloud config drive (metadata, user-data, network-config) on the hypervisor host
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Writes C(<instances_path>/<instance_uuid>/disk.config), like Nova's config drive file, as an ISO 9660
    image (Joliet and Rock Ridge) with the volume label C(cidata) in cloud-init's NoCloud layout, made with
    C(genisoimage). Give it to M(bootflow.cloud.domain) as a read-only CD-ROM
    (O(bootflow.cloud.domain#module:disks[].device_type=cdrom)).
  - C(meta-data) holds C(instance-id) (the instance UUID), C(local-hostname) and, when there are O(public_keys),
    C(public-keys), the list cloud-init's NoCloud datasource hands to the default user's C(authorized_keys).
    C(user-data) is
    O(user_data), or C(#cloud-config) with an empty mapping when there is none. C(network-config) is version
    2 with one ethernet per port, matched by the port's MAC address, with C(dhcp4) on (the address comes from
    the network's dnsmasq, see M(bootflow.cloud.dhcp_lease)).
  - With O(auth_token), the action plugin validates the token on the controller and fills O(name),
    O(user_data), O(public_keys) and O(ports) from the instance record and its ports when they are not given; the
    module on the host never sees the database.
  - The image is only rebuilt when its content differs from what it should hold - the existing image is
    read back and its label and files are compared (C(genisoimage) stamps build times into the image, so the
    bytes and the modification time say nothing). A new image is written to a temporary file in the same
    directory, read back, and renamed over the old one.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: Shows the files of the drive before and after (C(user-data) as its size and SHA-256 only).
options:
  instance_uuid:
    description:
      - UUID of the instance; names the directory C(<instances_path>/<instance_uuid>) and is the
        C(instance-id) of the metadata.
    type: str
    required: true
  name:
    description:
      - Display name of the instance. The host name is derived from it the way Nova does - ASCII,
        lower case, blanks, underscores and dots become C(-), other characters outside C([a-z0-9-]) are
        dropped, at most 63 characters.
      - When nothing is left (or no name is given), the host name is C(host-<ip with dashes>) of the first
        port (the name dnsmasq hands out), else C(host-) and the first 8 hex digits of the UUID.
    type: str
  hostname:
    description:
      - Host name to use as it is, instead of deriving one from O(name). One DNS label (C(a-z), C(0-9) and
        C(-), at most 63 characters); anything else (a trailing newline too) fails the task, with O(auth_token)
        on the controller before the host is contacted.
    type: str
  user_data:
    description:
      - User data of the boot request (for example a C(#cloud-config) document), at most 49149 bytes (Nova's
        limit of 65535 bytes once base64-encoded).
      - A C(no_log) option - it may hold secrets - and never returned; the diff shows only its size and sha256.
        The drive holding it is C(0640) (root and the group QEMU runs with) in an instance directory of C(0750);
        an older, more open drive or directory is tightened on the next run.
      - Without it the drive holds C(#cloud-config) and C({}).
    type: str
  public_keys:
    description:
      - SSH public keys for the guest, one OpenSSH public key line each (C(<type> <base64> [comment])). They are
        written into C(meta-data) as C(public-keys), each as a double-quoted YAML string, in this order.
      - With O(auth_token) and the option left out, the key of the instance's key pair, as nova-api copied it when
        the instance was created (M(bootflow.cloud.instance)'s C(key_name)); none when it was created without one.
        Give V([]) to leave the keys off the drive.
      - Without keys, C(meta-data) has no C(public-keys) at all.
      - A key that is empty or not a single line fails the task. The key itself is checked on the controller, by
        M(bootflow.cloud.keypair), not here.
    type: list
    elements: str
    default: []
  ports:
    description:
      - The instance's ports, in NIC order.
    type: list
    elements: dict
    default: []
    suboptions:
      mac:
        description:
          - MAC address of the port's NIC (the C(match) of its network-config entry).
        type: str
        required: true
      ip:
        description:
          - Fixed IP address of the port (only used for the fallback host name).
        type: str
      id:
        description:
          - Id of the port (informational).
        type: str
  instances_path:
    description:
      - Directory holding the instance directories. It must exist; the instance directory is created
        (mode 0750, group of QEMU) when missing.
    type: path
    default: /var/lib/bootflow/instances
  state:
    description:
      - V(present) builds the drive when its content differs, V(absent) removes C(disk.config) (the
        rest of the instance directory is left alone).
    type: str
    choices: [present, absent]
    default: present
requirements:
  - genisoimage (Debian package C(genisoimage)) on the hypervisor host
notes:
  - The test guest of this collection prints C(GUEST-HOSTNAME) and C(GUEST-INSTANCE-ID) from the drive on
    its serial console; cloud images with cloud-init read it as their NoCloud datasource.
  - The public keys are part of the drive's content, so a different set of keys rebuilds the drive.
seealso:
  - module: bootflow.cloud.domain
  - module: bootflow.cloud.dhcp_lease
  - name: cloud-init NoCloud datasource
    description: The layout of the drive.
    link: https://docs.cloud-init.io/en/latest/reference/datasources/nocloud.html
"""

EXAMPLES = r"""
- name: Config drive from the instance record (name, user data, ports)
  bootflow.cloud.config_drive:
    instance_uuid: "{{ spec.uuid }}"
  register: drive

- name: Boot with it as a read-only CD-ROM
  bootflow.cloud.domain:
    name: "{{ spec.domain_name }}"
    vcpus: 1
    memory_mb: 128
    disks:
      - path: "/var/lib/bootflow/instances/{{ spec.uuid }}/disk"
      - path: "{{ drive.path }}"
        device_type: cdrom
        format: raw
        bus: ide

- name: A drive without the database
  bootflow.cloud.config_drive:
    instance_uuid: 0b6c1f0e-8f6e-4e43-9d55-0e1c7f5b2a11
    name: Web server 1
    public_keys:
      - "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"
    user_data: |
      #cloud-config
      packages: [nginx]
    ports:
      - mac: fa:16:3e:12:34:56
        ip: 10.99.0.10
"""

RETURN = r"""
path:
  description: The config drive image.
  returned: always
  type: str
  sample: /var/lib/bootflow/instances/0b6c1f0e-8f6e-4e43-9d55-0e1c7f5b2a11/disk.config
label:
  description: Volume label of the image.
  returned: always
  type: str
  sample: cidata
hostname:
  description: The C(local-hostname) in the metadata.
  returned: with O(state=present)
  type: str
  sample: web-server-1
instance_id:
  description: The C(instance-id) in the metadata.
  returned: always
  type: str
  sample: 0b6c1f0e-8f6e-4e43-9d55-0e1c7f5b2a11
files:
  description: Names of the files on the drive.
  returned: always
  type: list
  elements: str
  sample: [meta-data, network-config, user-data]
meta_data:
  description: Content of C(meta-data).
  returned: with O(state=present)
  type: str
  sample: "instance-id: 0b6c1f0e-8f6e-4e43-9d55-0e1c7f5b2a11\nlocal-hostname: web-server-1\npublic-keys:\n  - \"ssh-ed25519
    AAAAC3NzaC1lZDI1NTE5AAAAIPQl8U+WjAOElIOvqIDO9iM+lrtsx/jpSnybsUo/Y569 me@laptop\"\n"
network_config:
  description: Content of C(network-config).
  returned: with O(state=present)
  type: str
  sample: "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"fa:16:3e:12:34:56\"\n    dhcp4: true\n"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.config_drive import config_drive_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("config_drive"))

    finish(module, lambda: config_drive_step(module.params, check_mode=module.check_mode, run=run_argv),
           "config_drive for instance %s" % module.params["instance_uuid"])


if __name__ == "__main__":
    main()
