#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: server_action
short_description: Stop, start, reboot, pause, unpause, suspend or resume an instance on its hypervisor host
version_added: 0.2.0
author: bootflow.cloud contributors (@bootflow)
description:
  - Nova's power actions on an instance after its boot. The task runs on the instance's hypervisor host
    (C(playbooks/server_action.yml) sends it there).
  - With O(auth_token), nova-api's part runs first on the controller - the token is checked against the
    action's policy rule (Nova's, for example C(os_compute_api:servers:stop)), the instance must be one of the
    caller's project (or the caller an admin) and be on this host, and the action must be allowed in its
    vm_state. Then the action's task_state is saved (for example C(powering-off)), the module runs on the host,
    and the compute manager's result is saved (vm_state, task_state none, power state). Both transitions are
    rows of the instance's step log and of the run's request-flow table. When the host fails, the task_state
    goes back to none and the vm_state stays (Nova's C(reverts_task_state)).
  - "Allowed vm_states (Nova's C(check_instance_state)): V(stop) active or error; V(start) stopped;
    V(reboot_soft) active; V(reboot_hard) active, stopped, paused, suspended or error; V(pause) active;
    V(unpause) paused; V(suspend) active; V(resume) suspended. No action is allowed while a task runs on the
    instance. Another state fails the task (conflict) before anything is changed."
  - An instance already where the action leads (V(stop) on a stopped one, V(unpause) on an active one) is left
    as it is - C(changed=false), where Nova's API would answer 409. Reboots always act.
  - "Without O(auth_token) the module works on the domain O(name) only, by libvirt's state: no database."
  - "On the host: V(stop) is an ACPI shutdown and, after O(shutdown_timeout) seconds, a power off; V(start)
    boots the domain; V(reboot_soft) shuts the guest down cleanly and starts it again, and falls back to a hard
    reboot when it has not shut down after O(soft_reboot_timeout) seconds (Nova's libvirt driver);
    V(reboot_hard) powers off and boots again (a managed save image is dropped); V(pause) and V(unpause) freeze
    and thaw the vCPUs in memory; V(suspend) saves the guest's memory to disk and stops it (libvirt's managed
    save), V(resume) restores it - the guest carries on where it was."
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.libvirt
  - bootflow.cloud.wait
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.HOST
attributes:
  check_mode:
    support: full
    details: Says whether the action would change the instance; nothing is saved or done.
  diff_mode:
    support: full
    details: The instance's vm_state and power state (libvirt's state without O(auth_token)) before and after.
options:
  instance:
    description:
      - The instance, by name or UUID (names are looked up in the caller's project). Needs O(auth_token).
      - The domain O(name) is then the instance's, C(bootflow-<uuid>).
    type: str
  name:
    description:
      - The libvirt domain. Required without O(auth_token).
    type: str
  action:
    description:
      - What to do. See the description for what each one does and when it is allowed.
    type: str
    required: true
    choices: [stop, start, reboot_soft, reboot_hard, pause, unpause, suspend, resume]
  shutdown_timeout:
    description:
      - Seconds a guest has to shut down after the ACPI power button (V(stop)) before it is powered off (Nova's
        C(shutdown_timeout)).
      - With O(auth_token), an operator setting (C(compute.shutdown_timeout) in the operator configuration,
        default 60); only an admin may set it in a task.
    type: int
  soft_reboot_timeout:
    description:
      - Seconds a guest has to shut down for a V(reboot_soft) before it is rebooted hard (Nova's
        C([libvirt] wait_soft_reboot_seconds)).
      - With O(auth_token), an operator setting (C(compute.wait_soft_reboot_seconds), default 120); only an
        admin may set it in a task.
    type: int
notes:
  - O(wait_timeout) bounds the wait for libvirt to report the domain running (or paused) after it was started,
    resumed or paused.
seealso:
  - module: bootflow.cloud.console_log
  - module: bootflow.cloud.domain
  - module: bootflow.cloud.instance_info
"""

EXAMPLES = r"""
- name: Stop web-1 (on its hypervisor host)
  bootflow.cloud.server_action:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    action: stop

- name: Reboot it hard
  bootflow.cloud.server_action:
    auth_token: "{{ bootflow_token }}"
    instance: web-1
    action: reboot_hard

- name: Suspend a domain by libvirt's state alone (no database)
  bootflow.cloud.server_action:
    name: bootflow-1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11
    action: suspend
"""

RETURN = r"""
state:
  description: libvirt's state of the domain after the call (C(running), C(paused), C(shutoff), ...).
  returned: always
  type: str
  sample: shutoff
state_before:
  description: libvirt's state of the domain before the call.
  returned: always
  type: str
  sample: running
power_state:
  description: Nova's power state after the call (C(RUNNING), C(PAUSED), C(SHUTDOWN), C(CRASHED), C(NOSTATE)).
  returned: always
  type: str
  sample: SHUTDOWN
managed_save:
  description: Whether the domain has a managed save image (a suspended instance).
  returned: always
  type: bool
  sample: false
forced:
  description: Whether the guest had to be powered off (V(stop) after O(shutdown_timeout), V(reboot_soft) after
    O(soft_reboot_timeout), or a paused guest).
  returned: always
  type: bool
  sample: false
vm_state:
  description: The instance's vm_state after the call.
  returned: with O(auth_token)
  type: str
  sample: stopped
status:
  description: The instance's API status after the call (C(ACTIVE), C(SHUTOFF), C(PAUSED), C(SUSPENDED), ...).
  returned: with O(auth_token)
  type: str
  sample: SHUTOFF
uuid:
  description: The instance's UUID.
  returned: with O(auth_token)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import module_kwargs
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import power_step
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import HAS_LIBVIRT, LIBVIRT_IMPORT_ERROR, run_libvirt_step


def main():
    module = AnsibleModule(supports_check_mode=True, **module_kwargs("server_action"))
    if not HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib("libvirt-python"), exception=LIBVIRT_IMPORT_ERROR)
    if not module.params["name"]:
        module.fail_json(msg="name (the libvirt domain) is required without auth_token")
    run_libvirt_step(module, lambda conn: power_step(conn, module.params, check_mode=module.check_mode),
                     "%s of domain %s" % (module.params["action"], module.params["name"]))


if __name__ == "__main__":
    main()
