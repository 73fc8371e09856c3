# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters turning the conductor's instance spec into bootflow.cloud.domain arguments."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import tap_name


def volume_disk(volume):
    """A volume of the instance spec -> a ``disks`` entry of bootflow.cloud.domain."""
    try:
        return {"pool": volume["pool"], "volume": volume["name"], "device": volume["device"], "format": "qcow2"}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("volume_disk expects a volume of instance_info's instance.volumes: %s" % exc) from exc


def domain_disks(spec, disk_path=None, config_drive_path=None):
    """The conductor's instance spec -> the ``disks`` of bootflow.cloud.domain, in the guest's order:
    the root disk (the root volume when booting from volume, else the overlay at ``disk_path``), the
    data volumes, then the config drive as an IDE CD-ROM (when ``config_drive_path`` is given)."""
    try:
        if spec.get("root_volume"):
            disks = [volume_disk(spec["root_volume"])]
        elif disk_path:
            disks = [{"path": disk_path, "format": "qcow2", "device": "vda"}]
        else:
            raise AnsibleFilterError("domain_disks needs disk_path (image_fetch's disk_path) when the instance does "
                                     "not boot from a volume")
        disks.extend(volume_disk(v) for v in spec.get("data_volumes") or [])
    except (AttributeError, TypeError) as exc:
        raise AnsibleFilterError("domain_disks expects instance_info's instance: %s" % exc) from exc
    if config_drive_path:
        disks.append({"path": config_drive_path, "device_type": "cdrom", "format": "raw", "bus": "ide", "device": "hdd",
                      "readonly": True})
    return disks


def port_nic(port):
    """A port of the instance spec -> an ``interfaces`` entry of bootflow.cloud.domain."""
    try:
        return {"mac": port["mac"], "bridge": port["bridge"], "model": "virtio", "target": tap_name(port["id"])}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("port_nic expects a port of instance_info's instance.ports: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"volume_disk": volume_disk, "port_nic": port_nic, "domain_disks": domain_disks}
