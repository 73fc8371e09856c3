# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The filters that turn the conductor's spec into domain arguments, and the host_layout lookup."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError, AnsibleLookupError

from ansible_collections.bootflow.cloud.plugins.filter.spec import domain_disks, port_nic
from ansible_collections.bootflow.cloud.plugins.lookup.host_layout import LookupModule
from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout

ROOT = {"id": "r", "name": "volume-r", "pool": "bootflow", "device": "vda"}
DATA = {"id": "d", "name": "volume-d", "pool": "bootflow", "device": "vdb"}


def test_overlay_then_data_volumes_then_the_config_drive():
    disks = domain_disks({"root_volume": None, "data_volumes": [DATA]}, "/i/u/disk", "/i/u/disk.config")
    assert disks == [
        {"path": "/i/u/disk", "format": "qcow2", "device": "vda"},
        {"pool": "bootflow", "volume": "volume-d", "device": "vdb", "format": "qcow2"},
        {"path": "/i/u/disk.config", "device_type": "cdrom", "format": "raw", "bus": "ide", "device": "hdd",
         "readonly": True},
    ]


def test_boot_from_volume_uses_the_root_volume_and_no_overlay():
    disks = domain_disks({"root_volume": ROOT, "data_volumes": []}, None, None)
    assert disks == [{"pool": "bootflow", "volume": "volume-r", "device": "vda", "format": "qcow2"}]


def test_no_root_disk_is_an_error():
    with pytest.raises(AnsibleFilterError, match="needs disk_path"):
        domain_disks({"root_volume": None, "data_volumes": []})
    with pytest.raises(AnsibleFilterError, match="instance_info's instance"):
        domain_disks("not a spec", "/d")


def test_port_nic_names_the_tap_by_the_layout_rule():
    nic = port_nic({"id": "0123456789abcdef", "mac": "fa:16:3e:00:00:01", "bridge": "br0"})
    assert nic["target"] == layout.tap_name("0123456789abcdef") == "tap0123456789a"


def test_host_layout_gives_the_modules_defaults():
    lookup = LookupModule()
    assert lookup.run(["instances_path", "dhcp_dir", "volumes_path"]) == [
        layout.INSTANCES_PATH, layout.DHCP_DIR, layout.VOLUMES_PATH]
    with pytest.raises(AnsibleLookupError, match="not tmp"):
        lookup.run(["tmp"])
