# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: host_layout
author: bootflow.cloud contributors (@bootflow)
version_added: 0.1.0
short_description: The default directories of a bootflow.cloud hypervisor host
description:
  - Returns the default of a hypervisor host directory, the same value the host modules use when the task
    does not give one, so that roles and playbooks never type the paths again.
  - The roles' C(bootflow_instances_path), C(bootflow_volumes_path) and C(bootflow_dhcp_dir) default to these.
options:
  _terms:
    description: Names of the directories.
    type: list
    elements: str
    choices:
      instances_path: the image cache (C(_base)) and the instance directories (Nova's C(instances_path))
      volumes_path: the libvirt dir pool holding the volumes
      dhcp_dir: dnsmasq's files, one directory per network
    required: true
"""

EXAMPLES = r"""
- name: Where the instance directories are by default
  ansible.builtin.debug:
    msg: "{{ lookup('bootflow.cloud.host_layout', 'instances_path') }}"
"""

RETURN = r"""
_raw:
  description: One path per term.
  type: list
  elements: path
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout

PATHS = {"instances_path": layout.INSTANCES_PATH, "volumes_path": layout.VOLUMES_PATH, "dhcp_dir": layout.DHCP_DIR}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        unknown = [t for t in terms if t not in PATHS]
        if unknown:
            raise AnsibleLookupError("host_layout knows %s, not %s" % (", ".join(PATHS), ", ".join(map(str, unknown))))
        return [PATHS[t] for t in terms]
