#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: console_log
short_description: Read the tail of an instance's serial console log on its hypervisor host
version_added: 0.2.0
author: bootflow.cloud contributors (@bootflow)
description:
  - What C(openstack console log show --lines N) (Nova's C(os-getConsoleOutput)) returns - the last O(length)
    lines of the guest's serial console, read from the log file its domain writes on the hypervisor host. The
    task runs on that host.
  - At most the last 100 KiB of the log are read, as Nova's libvirt driver does. Line ends are normalised and
    characters a terminal would act on (escape sequences, bells) are shown as C(?).
  - With O(auth_token) the instance must be one of the caller's project (or the caller an admin), be on this
    host, and the caller needs the policy rule C(os_compute_api:os-console-output) (member). The log's path
    comes from the instance's record.
  - Without O(auth_token), O(path) names the log file.
  - The log keeps every boot of the domain (it is appended to when the domain starts again), so a reboot shows
    as a second boot in it.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: Reads the log as in a normal run (nothing is ever changed).
  diff_mode:
    support: none
options:
  instance:
    description:
      - The instance, by name or UUID. Needs O(auth_token).
    type: str
  path:
    description:
      - The console log file. Required without O(auth_token); with it, it must be the instance's if given.
    type: path
  length:
    description:
      - How many lines from the end. Omitted, every line of the last 100 KiB; V(0), none.
    type: int
seealso:
  - module: bootflow.cloud.server_action
"""

EXAMPLES = r"""
- name: The last 20 lines of web-1's console
  bootflow.cloud.console_log:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    length: 20
  register: console

- name: Show them
  ansible.builtin.debug:
    var: console.lines
"""

RETURN = r"""
lines:
  description: The lines, oldest first.
  returned: success
  type: list
  elements: str
output:
  description: The same lines as one text, each ending in a newline.
  returned: success
  type: str
path:
  description: The log file read.
  returned: success
  type: str
size:
  description: The log file's size in bytes.
  returned: success
  type: int
truncated:
  description: Whether the log is longer than the 100 KiB read.
  returned: success
  type: bool
uuid:
  description: The instance's UUID.
  returned: with O(auth_token)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.console import read_console
from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("console_log"))
    if not module.params["path"]:
        module.fail_json(msg="path (the console log file) is required without auth_token")
    finish(module, lambda: read_console(module.params["path"], module.params["length"]),
           "reading console log %s" % module.params["path"])


if __name__ == "__main__":
    main()
