#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: resize
short_description: Resize an instance to another flavor on its hypervisor host, then confirm or revert the resize
version_added: 0.2.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's resize, confirmResize and revertResize for an instance whose resize stays on its host (Nova's
    C(allow_resize_to_same_host)). The task runs on the instance's hypervisor host. The compute role's C(resize)
    tasks (C(playbooks/server_action.yml) with C(bootflow_action=resize)) chain it with the spawn of the new
    flavor and roll it back when that fails.
  - O(state=resized) with O(auth_token) - nova-api checks the token against C(os_compute_api:servers:resize); the
    instance must be the caller's (or the caller an admin), be on this host, be active or stopped with no task
    running, and not boot from a volume. The new O(flavor) must exist, differ from the current one, not have a
    smaller root disk (a disk is never shrunk), fit the image (min_disk, min_ram), and the project's cores and RAM
    quota must allow the growth.
  - Then task_state C(resize_prep) is saved with a migration record (status C(pre-migrating)). The instance's
    claim passes to the migration's ID, and the scheduler checks the new flavor on this host and claims it for
    the instance. Both claims are held until the resize is confirmed or reverted, so the host's usage counts the
    old and the new flavor meanwhile, as Placement's migration allocations do. When the new flavor does not fit
    beside the old claim, everything is put back and the task fails.
  - On the host (task_state C(resize_migrating)), the guest is powered off (an ACPI shutdown, a power off after
    O(shutdown_timeout)), and its root disk, config drive and domain definition are copied aside into
    C(<uuid>_resize) beside the instance directory. Then the instance has the new flavor, task_state
    C(resize_finish). The compute role's tasks grow the root disk to the new flavor (M(bootflow.cloud.image_fetch))
    and define and start the domain with it (M(bootflow.cloud.domain)), which makes the vm_state C(resized) (the
    API's C(VERIFY_RESIZE)).
  - O(state=confirmed) (C(os_compute_api:servers:confirm_resize)), for a C(resized) instance - the copy aside is
    removed, the migration's claim (the old flavor) is released, and the instance is C(active) again (C(stopped)
    when it was stopped).
  - O(state=reverted) (C(os_compute_api:servers:revert_resize)), for a C(resized) instance - the guest is powered
    off, the copy aside comes back with the old definition, the guest is started again when it ran before, the new
    flavor's claim is released and the migration's claim is the instance's again, with the old flavor. The same
    state rolls back a resize that failed on its way (its task_state one of the resize's), with O(fault) saying
    why; its migration ends in C(error) and the fault is kept on the instance.
  - Re-running a finished step changes nothing - a resize to the flavor the instance has, a confirm or revert of a
    resize that is confirmed or reverted already. A resize interrupted after nova-api saved it is carried on by
    running it again.
  - Without O(auth_token) only the host part runs, for the instance O(instance_uuid). No database.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: With O(auth_token) every check runs (policy, state, flavor, quota); nothing is claimed, saved or done.
  diff_mode:
    support: none
options:
  instance:
    description:
      - The instance, by name or UUID (names are looked up in the caller's project). Needs O(auth_token).
    type: str
  flavor:
    description:
      - The new flavor, by name or ID. Required with O(auth_token) and O(state=resized).
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
  state:
    description:
      - V(resized) starts the resize (up to the spawn of the new flavor), V(confirmed) confirms it, V(reverted)
        reverts it or rolls back one that failed on its way.
    type: str
    choices: [resized, confirmed, reverted]
    default: resized
  fault:
    description:
      - Why the resize failed, for the rollback (O(state=reverted) of a resize on its way); kept as the instance's
        fault. Needs O(auth_token).
    type: str
  shutdown_timeout:
    description:
      - Seconds the guest has to shut down after the ACPI power button before it is powered off (O(state=resized)).
      - With O(auth_token), the operator setting C(compute.shutdown_timeout) (default 60); only an admin may set it
        in a task.
    type: int
  power_on:
    description:
      - With O(state=reverted), start the guest again with its old flavor. With O(auth_token), it is set from the
        vm_state the instance had before the resize.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for the guest to run again after a revert.
    type: int
    default: 120
  auto_confirm:
    description:
      - With O(state=confirmed) and no O(instance), confirm every resize on this host that has waited for a confirm
        longer than O(resize_confirm_window), one after the other (nova-compute's periodic
        C(_poll_unconfirmed_resizes)). C(playbooks/hypervisors.yml) runs it on every host. Needs O(auth_token); a
        token that is not an admin's confirms only its own project's resizes.
    type: bool
    default: false
  resize_confirm_window:
    description:
      - Seconds a resize waits for a confirm before O(auto_confirm) confirms it; V(0) never.
      - The operator setting C(compute.resize_confirm_window) (default 0, as in Nova); only an admin may set it in a
        task.
    type: int
seealso:
  - module: bootflow.cloud.server_action
  - module: bootflow.cloud.image_fetch
  - module: bootflow.cloud.domain
"""

EXAMPLES = r"""
- name: Resize web-1 to flavor m1.medium (the compute role's resize tasks spawn it next)
  bootflow.cloud.resize:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    flavor: m1.medium

- name: Confirm the resize of web-1
  bootflow.cloud.resize:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    state: confirmed

- name: Confirm the resizes on this host waiting longer than the operator's resize_confirm_window
  bootflow.cloud.resize:
    auth_token: "{{ bootflow_token }}"
    state: confirmed
    auto_confirm: true
"""

RETURN = r"""
state:
  description: libvirt's state of the domain after the call.
  returned: always
  type: str
  sample: shutoff
forced:
  description: Whether the guest had to be powered off after O(shutdown_timeout).
  returned: always
  type: bool
kept:
  description: The files kept aside for a revert (O(state=resized)), or brought back (O(state=reverted)).
  returned: always
  type: list
  elements: str
resize_dir:
  description: Where the old root disk, config drive and definition are kept until the resize is confirmed.
  returned: always
  type: str
uuid:
  description: The instance's UUID.
  returned: with O(auth_token)
  type: str
vm_state:
  description: The instance's vm_state after the task.
  returned: with O(auth_token)
  type: str
  sample: resized
task_state:
  description: The instance's task_state after the task (C(resize_finish) after O(state=resized), until the spawn).
  returned: with O(auth_token)
  type: str
status:
  description: The status the API shows (C(RESIZE), C(VERIFY_RESIZE), C(ACTIVE), ...).
  returned: with O(auth_token)
  type: str
flavor:
  description: The instance's flavor after the task.
  returned: with O(auth_token)
  type: str
migration:
  description: The instance's last migration record (id, status, source_compute, dest_compute).
  returned: with O(auth_token), once the instance was resized
  type: dict
confirmed:
  description: The names of the instances whose resize O(auto_confirm) confirmed.
  returned: with O(auto_confirm)
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.resize import resize_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("resize"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not module.params["instance_uuid"]:
        module.fail_json(msg="instance_uuid is required without auth_token")
    run_libvirt_step(module, lambda conn: resize_step(conn, module.params, check_mode=module.check_mode),
                     "resize of instance %s" % module.params["instance_uuid"])


if __name__ == "__main__":
    main()
