# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters turning the conductor's instance spec into bootflow.cloud.domain arguments."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def volume_disk(volume):
    """A volume of the instance spec -> a ``disks`` entry of bootflow.cloud.domain."""
    try:
        return {"pool": volume["pool"], "volume": volume["name"], "device": volume["device"], "format": "qcow2"}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("volume_disk expects a volume of instance_info's instance.volumes: %s" % exc) from exc


def port_nic(port):
    """A port of the instance spec -> an ``interfaces`` entry of bootflow.cloud.domain."""
    try:
        return {"mac": port["mac"], "bridge": port["bridge"], "model": "virtio", "target": "tap" + port["id"][:11]}
    except (KeyError, TypeError) as exc:
        raise AnsibleFilterError("port_nic expects a port of instance_info's instance.ports: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"volume_disk": volume_disk, "port_nic": port_nic}
