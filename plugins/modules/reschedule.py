#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: reschedule
short_description: After a failed build, claim the next alternate host or put the instance in ERROR (nova-conductor)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - nova-conductor's part of a failed build (Nova's C(RescheduledException) / C(BuildAbortException) handling). The
    compute role calls it in its C(rescue), after it undid the build on the failed host in reverse order (domain,
    volumes, instance directory with overlay and config drive, DHCP reservation, ports).
  - Classifies the failure. A failure of the host (libvirt, the disk, dnsmasq, anything unexpected) is
    reschedulable. A failure of the request is not, every host would fail the same way - an image that fails
    verification (hash or size mismatch, unsafe or wrong format, not active), a flavor or root volume too small for
    the image, no IP address left in the subnet, quota, a refused token, a request the API rejects.
  - Then resets what the controller still holds for the failed build, in the undo order. The volume attachments and
    records go back to C(creating) without a host (the next host creates them again), the ports (IP addresses) are
    deleted and the claim on the failed host is released.
  - For a reschedulable failure, while fewer than O(max_attempts) builds were tried and an untried alternate is
    left, claims the first alternate that still passes the scheduler's filters and still fits (it may be stale, as
    in Nova) and sets it as the instance's host (C(building/scheduling)). Every alternate is filtered again first,
    on the hosts' state now, with EVERY filter the scheduler runs (its operator settings, see
    M(bootflow.cloud.schedule)) - a host disabled since, moved out of the instance's availability zone or
    aggregate, without a required trait, capability or image property, or breaking the server group's policy is
    skipped, with the reason in RV(claim_failures). The age of a host's last report is not judged again (heartbeats
    come with C(playbooks/boot.yml), not continuously); an alternate that died since fails its build like any dead
    host. The result names the new RV(host); the build starts again there.
    For a member of an V(affinity) or V(anti-affinity) server group (see M(bootflow.cloud.server_group)), the claim
    also re-checks the group's policy; an alternate that would break it is skipped (RV(claim_failures)).
  - Otherwise the instance goes to C(vm_state=error) without a host. Its fault (message, step, action, host, time,
    category, reason and every attempt) is readable with M(bootflow.cloud.instance_info).
  - When O(cleanup_error) says the undo on the host failed (libvirtd down, the host unreachable), the controller
    does not wait for that host - it records what the build may have left there (the domain, the instance
    directory, the DHCP reservations, the pool volumes; RV(residue)), releases its own share (claim, ports,
    volume records) all the same, and reschedules or puts the instance in ERROR as for any other failure. The host
    removes the residue when it is back (C(playbooks/hypervisors.yml)).
  - A failure of the host (a reschedulable one) counts against it - its C(failed_builds), which the scheduler's
    V(BuildFailureWeigher) weighs, so the rest of a fleet and the next boots go elsewhere
    (see M(bootflow.cloud.schedule)). A successful build on the host resets the count.
  - Every attempt (host, step, message, category, time) is kept with the instance (Nova's C(RequestSpec.retry))
    and returned by M(bootflow.cloud.instance_info) as C(retry).
  - Records the step in the instance's step log. A reschedule is seed steps V(8-12) of service V(nova-conductor),
    action V(reschedule). An ERROR is seed step V(fault), action V(build_failed).
  - Needs a token with the V(admin) or V(member) role. Naming the hosts (O(alternates)) and O(max_attempts) are an
    admin's; a member who sets either is refused with RV(error=auth) before anything changes.
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.placement
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  instance:
    description:
      - Name or UUID of the instance whose build failed.
      - It must be C(building), or already C(error) because a step recorded the failure itself.
    type: str
    required: true
  host:
    description:
      - The host the build failed on. When the instance still holds a claim, it must be on this host,
        otherwise the task fails with RV(error=conflict).
    type: str
    required: true
  alternates:
    description:
      - The alternate hosts to try, best first. Hosts already tried are skipped; every one is filtered again before
        its claim (see the description).
      - Unset (the normal case), those M(bootflow.cloud.schedule) kept with the instance's request when it
        scheduled it (Nova's C(host_list) travels with the request), less those a previous reschedule claimed or
        skipped.
      - Only a token with the V(admin) role may set it (policy rule C(compute:force_host), as naming a host when
        booting); a V(member) or V(reader) is refused with RV(error=auth) before anything changes.
    type: list
    elements: str
  max_attempts:
    description:
      - Builds to try at most, the first one included (Nova's C([scheduler] max_attempts)). When this many
        builds failed, the instance goes to ERROR. Must be at least 1.
      - Unset, the value M(bootflow.cloud.schedule) scheduled the instance with (its O(bootflow.cloud.schedule#module:max_attempts),
        kept with the instance's request), else 3.
      - An operator override (setting C(scheduler.max_attempts) of M(bootflow.cloud.schedule)) - only a token with the
        V(admin) role may set it in a task; anyone else is refused with RV(error=auth) before anything changes.
    type: int
  failure:
    description:
      - The failed task's result (C(ansible_failed_result) in a C(rescue)). Its C(msg) and C(error), or those of the
        first failed item of a loop, are what is classified and recorded.
    type: dict
    default: {}
  failed_task:
    description:
      - Name of the failed task (C(ansible_failed_task.name)). It is recorded as the fault's C(step); the task names
        of C(boot.yml) start with their seed steps.
    type: str
  failed_action:
    description:
      - Module of the failed task (C(ansible_failed_task.action)), for example V(bootflow.cloud.domain).
    type: str
  cleanup_error:
    description:
      - Why the undo on the failed host did not complete (the undo task and its message). The residue is then
        recorded for the host to remove when it is back, and the reschedule goes on (see the description).
    type: str
attributes:
  check_mode:
    support: partial
    details:
      - Classifies the failure and returns the decision without changing anything; no alternate is claimed, so
        RV(rescheduled) is V(false) and RV(host) is V(null).
  diff_mode:
    support: none
notes:
  - Not idempotent in the usual sense, each call records one more failed attempt. It is meant for the C(rescue) of a
    build, as the C(bootflow.cloud.compute) role does it.
seealso:
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.instance_info
  - module: bootflow.cloud.instance
"""

EXAMPLES = r"""
# In the rescue of the build (the bootflow.cloud.compute role does this), after the undo on the host; the
# alternates and max_attempts are those the scheduler kept with the instance (setting them is an admin's):
- name: "Reschedule | nova-conductor: claim the next alternate, or ERROR"
  bootflow.cloud.reschedule:
    auth_token: "{{ bootflow_token }}"
    instance: "{{ bootflow_spec.uuid }}"
    host: "{{ inventory_hostname }}"
    failure: "{{ ansible_failed_result }}"
    failed_task: "{{ ansible_failed_task.name }}"
    failed_action: "{{ ansible_failed_task.action }}"
  register: resched

- name: Stop when the instance went to ERROR
  ansible.builtin.fail:
    msg: "{{ resched.failure.message }} - {{ resched.reason }}"
  when: not resched.rescheduled
"""

RETURN = r"""
residue:
  description:
    - With O(cleanup_error), what the failed build may have left on O(host), recorded for the host to remove when it
      is back (C(playbooks/hypervisors.yml)) - the record's C(id), C(host), C(instance_uuid), C(reason) and the
      C(residue) itself (C(domain_name), C(instances_path), C(image_id), C(ports) with C(network_id), C(mac) and
      C(ip), C(volumes) with C(name) and C(pool)).
  returned: when O(cleanup_error) is given, except in check mode
  type: dict
  sample: {"id": "5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f", "host": "hv1", "reason": "libvirt: no connection"}
rescheduled:
  description: Whether an alternate host was claimed; the build is to start again on RV(host).
  returned: success
  type: bool
  sample: true
host:
  description: The newly claimed host, V(null) when the instance went to ERROR.
  returned: success
  type: str
  sample: hv2
alternates:
  description: The alternates left after RV(host), best first, hosts already tried left out.
  returned: success
  type: list
  elements: str
  sample: [hv3]
reschedulable:
  description: Whether the failure itself is reschedulable (a failure of the host, not of the request).
  returned: success
  type: bool
  sample: true
category:
  description:
    - What failed. V(host) for an unexpected failure on the host (libvirt, dnsmasq, qemu-img, the connection) and
      V(host_resources) for a host out of disk or memory, both reschedulable. V(image), V(flavor), V(no_ips),
      V(quota), V(auth), V(invalid), V(conflict), V(no_valid_host), V(playbook) and V(error) are not.
  returned: success
  type: str
  sample: host
reason:
  description:
    - Why the build ends in ERROR, for example Nova's C(Exceeded maximum number of retries) with the hosts tried, or
      what makes the failure not reschedulable. For a reschedule, why the failure is reschedulable.
  returned: success
  type: str
  sample: "Not rescheduled (image): the image failed verification; every host would fetch the same bytes."
failure:
  description: The failure as recorded.
  returned: success
  type: dict
  contains:
    message:
      description: The failed step's message.
      type: str
      sample: "checksum mismatch (sha512): expected 3f1c... got 9ab2..."
    step:
      description: The failed task's name.
      type: str
      sample: "19-21 | glance-api: image into the host cache (_base), verified, plus the instance overlay"
    action:
      description: Short name of the failed task's module.
      type: str
      sample: image_fetch
    host:
      description: The host the build failed on.
      type: str
      sample: hv1
    kind:
      description: The error kind of the failed step (V(error) for a host module), if it had one.
      type: str
      sample: error
num_attempts:
  description: Builds tried so far, the one starting on RV(host) included when rescheduled.
  returned: success
  type: int
  sample: 2
claim_failures:
  description:
    - The alternates whose claim failed during the reschedule, with the reason - no room left, or the instance's
      server group policy (an V(anti-affinity) group member already there, an V(affinity) group elsewhere).
  returned: success
  type: dict
  sample: {"hv2": "server group web: anti-affinity: 1 group member(s) already on the host, max_server_per_host 1 (re-checked at claim time)"}
tried:
  description: The hosts the build failed on so far.
  returned: success
  type: list
  elements: str
  sample: [hv1]
fault:
  description:
    - The recorded fault when the instance went to ERROR - C(message), C(step), C(action), C(host), C(at) (UTC),
      C(category), C(reschedulable), C(reason) and C(attempts) (one entry per failed build with its host, step,
      action, message, category, reschedulable and at).
  returned: when the instance went to ERROR
  type: dict
instance:
  description: The instance record after the decision (see M(bootflow.cloud.instance)).
  returned: success, not in check mode
  type: dict
bootflow_step:
  description:
    - The row of the request-flow table, seed steps V(8-12) action V(reschedule) on the new host, or seed step
      V(fault) action V(build_failed) on the failed host.
  returned: success, not in check mode
  type: dict
error:
  description:
    - Kind of failure of this task. V(auth) for a missing, invalid or expired token or a missing role, V(not_found)
      for an unknown instance, V(conflict) for an instance that is not building or holds its claim on another host,
      V(invalid) for a bad O(max_attempts).
  returned: failure
  type: str
  sample: conflict
"""
