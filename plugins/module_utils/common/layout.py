# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where things are on a hypervisor host and what they are called: the default directories, the
libvirt domain and tap device names, the image cache file and the instance directory's files.

PRIVATE to the collection: may change at any time. Stdlib only: host modules import it too.
"""

from __future__ import annotations

import hashlib
import os

INSTANCES_PATH = "/var/lib/bootflow/instances"   # Nova's instances_path
VOLUMES_PATH = "/var/lib/bootflow/volumes"       # the libvirt dir pool of the volumes
DHCP_DIR = "/var/lib/bootflow/dhcp"              # one dnsmasq directory per network
VOLUME_POOL = "bootflow"                         # the libvirt storage pool's name
DOMAIN_PREFIX = "bootflow-"


def domain_name(instance_uuid):
    """The libvirt domain of an instance: stable, unique, no user text in it."""
    return DOMAIN_PREFIX + str(instance_uuid)


def instance_of_domain(name):
    """The instance UUID a domain name carries (the name itself when it is not one of ours)."""
    return name[len(DOMAIN_PREFIX):] if name.startswith(DOMAIN_PREFIX) else name


def tap_name(port_id):
    """Nova/neutron style tap device name: 'tap' + the first 11 characters of the port id."""
    return "tap" + str(port_id)[:11]


def cache_name(image_id):
    """Cache file name of an image, like nova.virt.libvirt.imagecache.get_cache_fname: sha1(id)."""
    return hashlib.sha1(str(image_id).encode("utf-8")).hexdigest()


def instance_dir(instances_path, instance_uuid):
    """The instance's directory: its overlay (disk), config drive (disk.config) and console log."""
    return os.path.join(instances_path, str(instance_uuid))


def resize_dir(instances_path, instance_uuid):
    """Where a resize keeps the instance's old root disk, config drive and domain definition until it is confirmed
    or reverted (the libvirt driver's ``<uuid>_resize``)."""
    return instance_dir(instances_path, instance_uuid) + "_resize"


def console_log_path(instances_path, instance_uuid):
    """Where the guest's serial console is written (libvirt <serial type='file'>)."""
    return os.path.join(instance_dir(instances_path, instance_uuid), "console.log")
