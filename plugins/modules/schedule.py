#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: schedule
short_description: Pick a hypervisor host and claim its resources (nova-scheduler and Placement, seed steps 8-12)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - nova-scheduler's part of the OpenStack Nova boot request flow. In seed step 8 nova-api asks nova-scheduler for
    a host; in seed steps 9-10 the scheduler picks up the request and finds an appropriate host in the database by
    filtering and weighing; in seed step 11 it returns the instance entry with the host set, and in seed step 12
    hands the build to nova-compute on that host.
  - With O(state=present), filters the registered compute nodes (see M(bootflow.cloud.compute_node)) against the
    instance's flavor and image, weighs the hosts that pass, picks one among the best O(host_subset_size), then claims the
    flavor's vCPUs, memory and disk on it atomically, as Placement does. If the claim fails because another boot
    took the capacity first, the alternates are tried in order.
  - With O(placement_backend=placement), the capacity check and the claim are made by a real Placement, as in Nova.
    First, C(GET /allocation_candidates) gives the hosts with room, and their usage comes from Placement. Hosts that
    are not candidates are rejected, with the reason the filters give for them. Then the claim is
    C(PUT /allocations/{instance}). The bootflow database keeps a copy of the allocation.
  - A boot from volume (O(bootflow.cloud.instance#module:boot_from_volume=true)) claims no local disk. The root disk
    is a volume, as in Nova. On success the instance's host is set (it stays
    C(building/scheduling)) and the step is recorded in its step log (seed steps V(8-12), service
    V(nova-scheduler)).
  - When no host passes the filters, or every claim fails, the instance goes to C(vm_state=error) with the reason as
    its fault (as Nova's C(NoValidHost)), and the task fails with RV(error=no_valid_host) and the per-host reasons in
    RV(rejected) and RV(claim_failures).
  - With O(state=absent), releases the instance's allocation (used by C(playbooks/delete.yml)). The instance's
    host and states are not changed.
  - Needs a token with the V(admin) or V(member) role.
  - B(Operator settings.) O(hosts), O(enabled_filters), O(weight_multipliers), O(host_subset_size),
    O(max_attempts) and O(service_down_time) are the scheduler's configuration - what nova.conf's
    C([filter_scheduler]) and C([scheduler]) sections hold in Nova. The operator sets them in section C(scheduler)
    of the operator's configuration file (E(BOOTFLOW_CONFIG), else C(bootflow.yml) in the state directory
    E(BOOTFLOW_STATE_DIR), else C(~/.bootflow/bootflow.yml)); a setting the file leaves out has the default given
    here (Nova's). Only a token with the V(admin) role may set one of them in a task (policy rule
    C(config:override)); a V(member) or V(reader) who sets any of them is refused with RV(error=auth) before
    anything is read or changed. The same holds for a list (O(instances)).
  - Runs on the controller as an action plugin; this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.placement
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  instance:
    description:
      - Name or UUID of the instance (see M(bootflow.cloud.instance)).
      - An unknown instance fails with RV(error=not_found), a name matching several instances with
        RV(error=conflict).
      - Exactly one of O(instance) and O(instances) is required.
    type: str
  instances:
    description:
      - Names or UUIDs of the instances of one boot request (M(bootflow.cloud.boot_request)), scheduled as ONE
        request, as Nova's C(select_destinations) does for a multi-create. They are placed in this order and each claim
        is committed before the next instance is placed, so it sees the claims made before it - capacity and the
        server group policies hold across the list.
      - An instance no host fits goes to ERROR with C(No valid host) (RV(unplaced)) while the others are placed; the task
        does not fail for it. The task fails (RV(error=no_valid_host)) when no instance of the list could be placed,
        or for an error of the request as a whole (an unknown instance, the token).
      - For a list of one instance the result also has the keys of O(instance) (RV(host), RV(alternates),
        RV(rejected), RV(weights), ...), so the single boot reads the same either way.
      - An item of the request with C(min_count) (see M(bootflow.cloud.boot_request)) that got fewer instances placed
        is withdrawn - its claims are released and its instance records deleted (RV(withdrawn)).
      - Each placed instance keeps its alternates in its request (Nova's C(host_list)), where
        M(bootflow.cloud.reschedule) takes them from.
      - With O(state=absent), only O(instance) is supported.
    type: list
    elements: str
  hosts:
    description:
      - Only consider the compute nodes with these names (the inventory hostnames they were registered under).
      - Names that are not registered compute nodes are ignored; when none of the names is one, the task fails
        with RV(error=no_valid_host).
      - By default every registered compute node is a candidate (as in Nova, every enabled compute service; the
        disabled and down ones are rejected by V(ComputeFilter)).
      - Operator setting C(scheduler.hosts); only an admin may set it in a task (see the description).
    type: list
    elements: str
  enabled_filters:
    description:
      - Scheduler filters to run, in Nova's order, from V(RetryFilter), V(ForceHostFilter), V(AvailabilityZoneFilter),
        V(AggregateFilter), V(TraitsFilter), V(ComputeFilter), V(CapacityFilter), V(ComputeCapabilitiesFilter),
        V(ImagePropertiesFilter), V(ServerGroupAntiAffinityFilter) and V(ServerGroupAffinityFilter). An unknown name
        fails the task with RV(error=invalid).
      - V(RetryFilter), V(ForceHostFilter), V(AvailabilityZoneFilter), V(AggregateFilter), V(TraitsFilter),
        V(ComputeFilter) and V(CapacityFilter) always run, whatever this list says - also an admin's. In Nova, these
        checks are pre-filters and Placement queries, and a disabled or down compute service is never offered.
      - V(RetryFilter) rejects the hosts where a build of this instance already failed (its retry record, see
        M(bootflow.cloud.reschedule)), so a run of C(playbooks/boot.yml) after a crash in the middle of a reschedule
        never tries such a host again.
      - V(AvailabilityZoneFilter) keeps the hosts of the requested zone (O(bootflow.cloud.instance#module:availability_zone)).
        A host's zone is what M(bootflow.cloud.compute_node) reported (O(bootflow.cloud.compute_node#module:availability_zone)).
      - V(AggregateFilter) keeps the hosts in one of the aggregates named by the flavor's C(member_of) extra spec
        (C(NAME) or C(in:NAME1,NAME2)). V(TraitsFilter) keeps the hosts that have every trait the flavor's
        C(trait:NAME=required) extra specs name, and none of the C(trait:NAME=forbidden) ones. Both use the aggregates
        and traits the host reported.
      - V(ComputeFilter) rejects disabled hosts and hosts that are down (see O(service_down_time));
        V(CapacityFilter) checks free vCPUs, memory and disk with the hosts' allocation ratios and reservations;
        V(ComputeCapabilitiesFilter) matches the flavor's C(extra_specs).
      - V(ImagePropertiesFilter) matches the properties of the instance's image (see
        O(bootflow.cloud.image#module:properties)) against what the host reported. C(hw_architecture) (or
        C(architecture)) must be the host's architecture, C(img_hv_type) (or C(hypervisor_type)) its hypervisor
        type, and C(img_hv_requested_version) (for example V(>=7.2)) must match its hypervisor version. An image
        without these properties passes every host.
      - V(ServerGroupAntiAffinityFilter) rejects a host that already runs as many members of the instance's
        V(anti-affinity) server group as the group's C(max_server_per_host) rule allows (one without the rule).
        V(ServerGroupAffinityFilter) rejects every host but the one the members of the instance's V(affinity) group
        run on (any host for the first member). See M(bootflow.cloud.server_group) and
        O(bootflow.cloud.instance#module:server_group). An instance without a group passes both.
      - The claim checks the hard group policies again, whatever this list says, with the members' hosts as they
        are when the claim is made (see the notes).
      - By default all filters run.
      - Operator setting C(scheduler.enabled_filters); only an admin may set it in a task (see the description).
    type: list
    elements: str
  weight_multipliers:
    description:
      - Multiplier per weigher (Nova's C(*_weight_multiplier) options). Keys are V(RAMWeigher), V(CPUWeigher),
        V(DiskWeigher), V(NumInstancesWeigher), V(ServerGroupSoftAffinityWeigher),
        V(ServerGroupSoftAntiAffinityWeigher) and V(BuildFailureWeigher), or the short names V(ram), V(cpu),
        V(disk), V(num_instances), V(soft_affinity), V(soft_anti_affinity), V(build_failure), or the Nova option
        names such as V(ram_weight_multiplier) or V(build_failure_weight_multiplier). Values are numbers; a
        negative multiplier for RAM, CPU or disk stacks instances instead of spreading them.
      - V(BuildFailureWeigher) weighs a host by its consecutive failed builds, negated (a build that fails on the
        host and is rescheduled or ends in ERROR counts one; a successful build there resets the count). Its
        default multiplier is Nova's V(1000000.0), so one failed build outweighs any difference in free capacity
        and the rest of a list, and the next runs, go to other hosts while there are any.
      - V(ServerGroupSoftAffinityWeigher) weighs a host by the number of members of the instance's V(soft-affinity)
        group on it, V(ServerGroupSoftAntiAffinityWeigher) by that number negated for a V(soft-anti-affinity) group.
        Like every weigher, the values are normalised to 0..1 over the hosts that passed. For an instance without
        such a group, both weigh every host 0. A negative multiplier turns their preference around (Nova warns
        about that; it is allowed here too).
      - A weigher not listed keeps Nova's default multiplier - V(1.0), but V(0.0) for V(NumInstancesWeigher)
        (Nova's C(num_instances_weight_multiplier)) and V(1000000.0) for V(BuildFailureWeigher). An unknown key or a
        non-numeric value fails the task with RV(error=invalid).
      - Operator setting C(scheduler.weight_multipliers); only an admin may set it in a task (see the description).
    type: dict
  host_subset_size:
    description:
      - The chosen host is picked at random among the best this many hosts (Nova's C(host_subset_size)), to spread
        concurrent boots. Must be 1 or more, otherwise the task fails with RV(error=invalid).
      - Operator setting C(scheduler.host_subset_size), default V(1); only an admin may set it in a task (see the
        description).
    type: int
  max_attempts:
    description:
      - How many hosts at most (the chosen one plus alternates, best first) are kept and tried when claiming
        resources; the instance keeps it for M(bootflow.cloud.reschedule) (Nova's C([scheduler] max_attempts)).
      - 1 to 3 (C(playbooks/boot.yml) runs three build passes, one per attempt), otherwise the task fails with
        RV(error=invalid).
      - Operator setting C(scheduler.max_attempts), default V(3); only an admin may set it in a task (see the
        description).
    type: int
  service_down_time:
    description:
      - A compute node is down after this many seconds without a report or heartbeat, like Nova's C(service_down_time).
        V(ComputeFilter) then rejects it. Reports and heartbeats come from M(bootflow.cloud.compute_node).
      - C(playbooks/boot.yml) keeps this working by itself. Just before scheduling, it sends a heartbeat to each
        candidate host whose last one is older than C(bootflow_heartbeat_interval) (30 seconds). A host that answers
        is up. A host that does not answer becomes down once this many seconds have passed since it last answered.
      - V(0) turns this check off. Hosts are then never judged by the age of their report.
      - A negative value fails the task with RV(error=invalid).
      - Operator setting C(scheduler.service_down_time), default V(60); only an admin may set it in a task (see the
        description).
    type: int
  state:
    description:
      - V(present) schedules the instance and claims resources on the chosen host.
      - V(absent) releases the instance's allocation; nothing happens when it has none.
    type: str
    default: present
    choices: [present, absent]
attributes:
  check_mode:
    support: partial
    details:
      - Filters and weighs the hosts and returns the host that would be chosen, without claiming resources or
        changing the instance. The actual claim could still fail at run time when another boot takes the capacity.
      - A scheduling failure in check mode fails the task but does not put the instance in error.
  diff_mode:
    support: none
notes:
  - Idempotent, an instance that already holds an allocation is not scheduled again; the task reports no change
    and returns the host of that allocation.
  - Only an instance in C(building/scheduling) without an allocation can be scheduled. Any other state (for
    example C(error) after an earlier failure) fails with RV(error=invalid); delete the instance and boot it again.
  - Parallel boots are safe, on SQLite and on PostgreSQL, claims use a compare-and-swap on the host's resource
    provider generation and are retried on conflict. With O(placement_backend=placement), Placement does the same.
    A claim is retried on its C(placement.concurrent_update) conflict. A claim refused for capacity moves on to the
    next host.
  - A member of an V(affinity) or V(anti-affinity) server group is checked against its group again when it is
    claimed, in the claim's transaction, one claim of the group at a time (Nova's late check on the compute host,
    made atomic). A host that would break the policy by then, because another boot into the group claimed it
    meanwhile, is listed in RV(claim_failures) with the reason, and the next host is tried. With
    O(placement_backend=placement) the group stays locked across the check, Placement's claim and the DB copy.
  - Filters, weighers, claims, server groups, both backends and down detection are described in
    C(docs/scheduler.md).
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.compute_node
  - module: bootflow.cloud.flavor
  - module: bootflow.cloud.instance_info
"""

EXAMPLES = r"""
# With the token set for the whole play:
#
#   module_defaults:
#     group/bootflow.cloud.bootflow:
#       auth_token: "{{ bootflow_auth.token }}"

- name: Pick a host for web1 among all compute nodes
  bootflow.cloud.schedule:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web1
  register: sched

- name: Show the chosen host and the alternates
  ansible.builtin.debug:
    msg: "web1 -> {{ sched.host }} (alternates {{ sched.alternates | join(', ') }})"

# The scheduler's configuration belongs in the operator's file (bootflow.yml in the state directory, mode
# 0600 or 0644, owned by the controller's user):
#
#   scheduler:
#     enabled_filters: [ComputeFilter, CapacityFilter, ComputeCapabilitiesFilter]
#     weight_multipliers: {ram: -1.0}
#     service_down_time: 120
#
# Only an admin's task may override it, as below (a member's task setting any of these options is refused).

- name: As an admin, schedule on the hosts of one rack, stacking instances and ignoring hosts silent for 10 minutes
  bootflow.cloud.schedule:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web2
    hosts: "{{ groups['rack1'] }}"
    weight_multipliers:
      ram: -1.0
      num_instances: 0
    service_down_time: 600

- name: As an admin, schedule with only the capability checks besides the mandatory filters
  bootflow.cloud.schedule:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web3
    enabled_filters:
      - ComputeFilter
      - CapacityFilter
      - ComputeCapabilitiesFilter
    host_subset_size: 2

- name: Release the allocation of a deleted instance
  bootflow.cloud.schedule:
    auth_token: "{{ bootflow_auth.token }}"
    instance: web1
    state: absent
"""

RETURN = r"""
placements:
  description:
    - With O(instances), one entry per placed instance, in order.
  returned: when O(instances) is given and O(state=present)
  type: list
  elements: dict
  contains:
    name:
      description: The instance's name.
      type: str
    uuid:
      description: The instance's UUID.
      type: str
    host:
      description: The host that holds its claim.
      type: str
    alternates:
      description: The alternates, in the scheduler's order.
      type: list
      elements: str
    changed:
      description: Whether this task claimed it (V(false) when it held its claim already).
      type: bool
    rejected:
      description: As RV(rejected), for this instance.
      type: dict
    claim_failures:
      description: As RV(claim_failures), for this instance.
      type: dict
    weights:
      description: As RV(weights), for this instance.
      type: dict
    server_group:
      description: As RV(server_group), for this instance.
      type: dict
  sample: [{"name": "web-1", "uuid": "2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b", "host": "hv1", "alternates": ["hv2"], "changed": true}]
unplaced:
  description:
    - With O(instances), the instances no host fits - now in ERROR with the reason as their fault.
  returned: when O(instances) is given and O(state=present)
  type: list
  elements: dict
  sample: [{"name": "big-1", "uuid": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "fault": "No valid host was found. ...", "rejected": {}}]
withdrawn:
  description:
    - With O(instances), the instances of items whose C(min_count) was not met - released and deleted.
  returned: when O(instances) is given and O(state=present)
  type: list
  elements: dict
  sample: [{"name": "db-1", "uuid": "0f5e9c2a-6b1d-4a7e-8c3f-2d1e0b9a8c7d", "reservation_id": "r-1a2b3c4d", "reason": "..."}]
host:
  description: The chosen host (or, in check mode, the host that would be chosen), or the host of the existing allocation.
  returned: when O(state=present) succeeded
  type: str
  sample: hv1
alternates:
  description: The other hosts kept for the claim, best first. Empty when the instance already had an allocation.
  returned: when O(state=present) succeeded
  type: list
  elements: str
  sample: [hv3, hv2]
rejected:
  description:
    - Hosts the filters rejected, with the filter and the reason.
    - Also returned when the task fails with RV(error=no_valid_host).
  returned: when the instance was scheduled, and on a scheduling failure
  type: dict
  sample: {"hv4": "CapacityFilter: RAM: requested 4096 MB, free 1024 MB", "hv5": "ComputeFilter: disabled"}
placement_backend:
  description: The backend that made the claim, V(local) or V(placement).
  returned: when the instance was scheduled (not in check mode and not when it already had an allocation)
  type: str
  sample: local
server_group:
  description:
    - The instance's server group as the scheduler saw it, V(null) when it is in none.
  returned: when O(state=present) scheduled the instance (also in check mode)
  type: dict
  contains:
    id:
      description: ID of the group.
      type: str
      returned: success
      sample: 4b7d2c1e-8f3a-4e6b-9c0d-1a2b3c4d5e6f
    name:
      description: Name of the group.
      type: str
      returned: success
      sample: web
    policy:
      description: The group's policy.
      type: str
      returned: success
      sample: anti-affinity
    max_server_per_host:
      description: The group's C(max_server_per_host) rule, V(1) without one.
      type: int
      returned: success
      sample: 1
    hosts:
      description: The hosts of the group's other members, one entry per member (a host twice for two members on it).
      type: list
      elements: str
      returned: success
      sample: [hv1, hv2]
claim_failures:
  description:
    - Hosts on which the claim failed, with the reason - capacity taken by a concurrent boot meanwhile, or the
      server group's policy re-checked at claim time.
    - 'For example C(server group web: anti-affinity: 1 group member(s) already on the host, max_server_per_host 1
      (re-checked at claim time)).'
    - Also returned when every claim failed (RV(error=no_valid_host)).
  returned: when the instance was scheduled (not in check mode), and when every claim failed
  type: dict
  sample: {}
weights:
  description: Weight of each kept host, the total and each weigher's share (normalised, times its multiplier).
  returned: when the instance was scheduled, also in check mode
  type: dict
  sample:
    hv1: {"total": 3.5, "RAMWeigher": 1.0, "CPUWeigher": 1.0, "DiskWeigher": 1.0, "NumInstancesWeigher": 0.5,
          "ServerGroupSoftAffinityWeigher": 0.0, "ServerGroupSoftAntiAffinityWeigher": 0.0}
    hv3: {"total": 1.2, "RAMWeigher": 0.4, "CPUWeigher": 0.3, "DiskWeigher": 0.5, "NumInstancesWeigher": 0.0,
          "ServerGroupSoftAffinityWeigher": 0.0, "ServerGroupSoftAntiAffinityWeigher": 0.0}
released_from:
  description: Host whose allocation was released, V(null) when the instance had none.
  returned: when O(state=absent)
  type: str
  sample: hv1
released_migration:
  description: The ID of the instance's resize that was never confirmed, whose claim (the old flavor's) was
    released too; V(null) when there was none.
  returned: when O(state=absent)
  type: str
instance:
  description: The instance record, with its host set (same keys as RV(bootflow.cloud.instance#module:instance)).
  returned: when O(state=present) succeeded, except in check mode when the instance would be scheduled
  type: dict
  contains:
    uuid:
      description: UUID of the instance.
      type: str
      returned: success
      sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    name:
      description: Name of the instance.
      type: str
      returned: success
      sample: web1
    host:
      description: The host the instance is scheduled to.
      type: str
      returned: success
      sample: hv1
    vm_state:
      description: Nova vm_state.
      type: str
      returned: success
      sample: building
    task_state:
      description: Nova task_state.
      type: str
      returned: success
      sample: scheduling
    power_state:
      description: Power state.
      type: str
      returned: success
      sample: NOSTATE
    status:
      description: The status the API shows.
      type: str
      returned: success
      sample: BUILD
    domain_name:
      description: Name of the libvirt domain, C(bootflow-<uuid>).
      type: str
      returned: success
      sample: bootflow-2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    project_id:
      description: ID of the owning project.
      type: str
      returned: success
      sample: 8a3c2f10-7b6d-4e5f-a1b2-c3d4e5f60718
    user_id:
      description: ID of the user that created the instance.
      type: str
      returned: success
      sample: 5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f
    flavor_id:
      description: ID of the flavor.
      type: str
      returned: success
      sample: 0f5e9c2a-6b1d-4a7e-8c3f-2d1e0b9a8c7d
    image_id:
      description: ID of the image.
      type: str
      returned: success
      sample: 9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b
    request:
      description: The boot request (flavor, image, networks, volume_size_gb, user_data).
      type: dict
      returned: success
      sample: {"flavor": "m1.small", "image": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b", "networks": [], "volume_size_gb": 0, "user_data": null}
    fault:
      description: The recorded fault, V(null) unless the instance is in error.
      type: dict
      returned: success
      sample: null
    created_at:
      description: Creation time, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T09:15:02.123456Z"
    updated_at:
      description: Time of the last state change, UTC, ISO 8601.
      type: str
      returned: success
      sample: "2025-01-10T09:15:03.234567Z"
    launched_at:
      description: When the domain was first started.
      type: str
      returned: success
      sample: null
    deleted_at:
      description: Deletion time, V(null) for a live instance.
      type: str
      returned: success
      sample: null
    deleted:
      description: V(0) for a live instance.
      type: int
      returned: success
      sample: 0
bootflow_step:
  description: The row of the seed-style step table the C(bootflow.cloud.request_flow) callback prints.
  returned: when the instance was scheduled (not in check mode and not when it already had an allocation)
  type: dict
  contains:
    instance:
      description: Name of the instance.
      type: str
      returned: always
      sample: web1
    seed_steps:
      description: The seed steps of the request flow this task performed.
      type: str
      returned: always
      sample: 8-12
    service:
      description: The OpenStack service that plays this step.
      type: str
      returned: always
      sample: nova-scheduler
    action:
      description: What the service did.
      type: str
      returned: always
      sample: select_destinations
    host:
      description: The chosen host.
      type: str
      returned: always
      sample: hv1
    from:
      description: C(vm_state/task_state) before the step.
      type: str
      returned: always
      sample: building/scheduling
    to:
      description: C(vm_state/task_state) after the step.
      type: str
      returned: always
      sample: building/scheduling
    changed:
      description: Whether the step changed anything.
      type: bool
      returned: always
      sample: true
    ms:
      description: Duration of the step in milliseconds.
      type: int
      returned: always
      sample: 21
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role (also when Placement refuses
      the token), V(not_found) for an unknown instance, V(invalid) for a bad scheduler setting, flavor extra spec or
      placement option, or an instance that cannot be scheduled, V(no_valid_host) when no host passed the filters or
      every claim failed, V(placement) when Placement cannot be reached or gives an answer that cannot be used.
  returned: failure
  type: str
  sample: no_valid_host
"""
