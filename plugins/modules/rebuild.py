#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: rebuild
short_description: Start an instance's rebuild from a new image on its hypervisor host
version_added: 0.2.0
author: bootflow.cloud contributors (@bootflow)
description:
  - The first half of Nova's rebuild - a new image on the same host, keeping the instance's UUID, ports, IPs,
    MACs and volumes. The task runs on the instance's hypervisor host. The compute role's C(rebuild) tasks
    (C(playbooks/server_action.yml) with C(bootflow_action=rebuild)) then spawn the new image as a build does -
    M(bootflow.cloud.image_fetch), M(bootflow.cloud.config_drive), M(bootflow.cloud.domain) - and wait for the
    guest's lease.
  - With O(auth_token), nova-api's part runs first on the controller - the token is checked against
    C(os_compute_api:servers:rebuild), the instance must be the caller's (or the caller an admin), be on this host
    and be active, stopped or error with no task running, and not boot from a volume; the image O(image) must be
    visible to the caller, active, and fit the instance's flavor (min_disk, min_ram, virtual size). Then
    task_state C(rebuilding) is saved with the new image, the module powers the guest off (an ACPI shutdown, a
    power off after O(shutdown_timeout)) and removes the old root disk and config drive, and task_state
    C(rebuild_spawning) is saved. The domain stays defined (its volumes stay attached) and the console log stays.
  - When the host fails, the instance goes to ERROR with the fault, as in Nova; a rebuild or a delete can follow.
  - Without O(auth_token), only the host part runs, for the instance O(instance_uuid).
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: Says what would be powered off and removed; nothing is saved or done.
  diff_mode:
    support: none
options:
  instance:
    description:
      - The instance, by name or UUID. Needs O(auth_token).
    type: str
  image:
    description:
      - The new image, by name or ID. Required with O(auth_token).
    type: str
  instance_uuid:
    description:
      - The instance's UUID on the host. Required without O(auth_token); with it, the instance's.
    type: str
  instances_path:
    description:
      - Directory on the host holding the instance directories.
    type: path
    default: /var/lib/bootflow/instances
  shutdown_timeout:
    description:
      - Seconds the guest has to shut down after the ACPI power button before it is powered off.
      - With O(auth_token), the operator setting C(compute.shutdown_timeout) (default 60); only an admin may set it
        in a task.
    type: int
seealso:
  - module: bootflow.cloud.server_action
  - module: bootflow.cloud.image_fetch
"""

EXAMPLES = r"""
- name: Rebuild web-1 from image guest-v2 (the compute role's rebuild tasks spawn it next)
  bootflow.cloud.rebuild:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    image: guest-v2
"""

RETURN = r"""
state:
  description: libvirt's state of the domain after the call (C(shutoff)).
  returned: always
  type: str
  sample: shutoff
forced:
  description: Whether the guest had to be powered off after O(shutdown_timeout).
  returned: always
  type: bool
removed:
  description: The files removed (the old root disk, the config drive).
  returned: always
  type: list
  elements: str
image_id:
  description: The new image's ID.
  returned: with O(auth_token)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.rebuild import rebuild_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("rebuild"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not module.params["instance_uuid"]:
        module.fail_json(msg="instance_uuid is required without auth_token")
    run_libvirt_step(module, lambda conn: rebuild_step(conn, module.params, check_mode=module.check_mode),
                     "rebuild of instance %s" % module.params["instance_uuid"])


if __name__ == "__main__":
    main()
