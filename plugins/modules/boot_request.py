#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: boot_request
short_description: Validate and record a whole list of instances as one boot request (nova-api multi-create, seed steps 3-7)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - nova-api's part of the boot flow for a fleet - what M(bootflow.cloud.instance) does for one instance, done for a
    list in one request, as Nova takes one C(POST /servers) with C(min_count) and C(max_count).
  - Every item of O(instances) is taken over O(defaults). An item with O(instances[].count) above 1 stands for
    C(NAME-1) .. C(NAME-N). The names must be unique within the list.
  - With O(state=present), every V(present) instance is validated (flavor, image, networks and fixed IPs, volumes,
    server group, key pair, user data, metadata, quota - the quota of the whole list, since each instance counts
    against it in the same transaction) and recorded with C(vm_state=building), C(task_state=scheduling), all in
    ONE database transaction. Bad input in any item fails the task with nothing recorded, before any instance is
    scheduled or a host touched.
  - An instance whose name exists already with the same request is left as it is (a re-run changes nothing); the
    same name with another flavor, image, networks, volume or server group fails with RV(error=conflict).
  - The items of one request share a reservation ID per item (Nova's C(reservation_id)); M(bootflow.cloud.schedule)
    uses it to keep O(instances[].min_count).
  - Items with O(instances[].state=absent) are not recorded; the live instances they name are returned in
    RV(delete). With O(state=absent) the whole list is only looked up, for C(playbooks/delete.yml).
  - Needs a token with the V(admin) or V(member) role. Runs on the controller as an action plugin; this file only
    holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.image_backend
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  instances:
    description:
      - The instances, in order. Each is a mapping; unset options come from O(defaults), then from the built-in
        defaults named below.
      - An unknown option in an item, a duplicate name, O(instances[].count) below 1 or above 100, or
        O(instances[].min_count) above O(instances[].count) fails with RV(error=invalid) naming the item.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the instance, unique among the live instances of the caller's project; with
            O(instances[].count) above 1, the base of the names.
        type: str
        required: true
      flavor:
        description:
          - Name or ID of the flavor (M(bootflow.cloud.flavor)). Required for a V(present) instance, here or in
            O(defaults).
        type: str
      image:
        description:
          - Name or ID of the image (M(bootflow.cloud.image)), visible to the caller's project and V(active). Required
            for a V(present) instance, here or in O(defaults).
        type: str
      networks:
        description:
          - The networks, one port on each, in this order. Each is a network name or ID, or a mapping with the keys
            C(network) (name or ID) and C(fixed_ip) (an IPv4 address) asking for that address, as Nova's C(--nic net-
            id=NET,v4-fixed-ip=IP). The address is checked against the subnet and the addresses in use before anything
            is recorded. A fixed IP with O(instances[].count) above 1, or the same fixed IP asked for twice in the
            list, fails with RV(error=invalid). Required and non-empty for a V(present) instance, here or in
            O(defaults).
          - Only an V(admin) may ask for a C(fixed_ip) (Neutron's policy C(create_port:fixed_ips:ip_address)); a
            member's list with a C(fixed_ip) in any item fails with RV(error=auth) and records nothing. Members get
            an address from the pool.
        type: list
        elements: raw
      volume_size_gb:
        description:
          - Size in GiB of a blank data volume attached as C(vdb); V(0) (the default) means none.
        type: int
      volume_delete_on_termination:
        description:
          - Delete the data volume with the instance (default V(true)).
        type: bool
      boot_from_volume:
        description:
          - Boot from a volume made from the image (default V(false)); see M(bootflow.cloud.instance).
        type: bool
      root_volume_size_gb:
        description:
          - Size of the root volume with O(instances[].boot_from_volume); unset means the flavor's disk.
        type: int
      root_volume_delete_on_termination:
        description:
          - Delete the root volume with the instance (default V(true)).
        type: bool
      availability_zone:
        description:
          - Nova's C(--availability-zone), V(ZONE), or (admin only) V(ZONE:HOST) or V(:HOST).
        type: str
      server_group:
        description:
          - Name or ID of the server group every instance of the item joins (M(bootflow.cloud.server_group)). The
            scheduler keeps the group's policy across the whole list, each claim sees the members placed before it in
            the same request.
        type: str
      user_data:
        description:
          - User data for the guest (plain text, at most 49149 bytes).
        type: str
      key_name:
        description:
          - Name of the caller's key pair (M(bootflow.cloud.keypair)) whose public key the config drive carries
            (C(public-keys) in its meta-data). An unknown name, or another user's key, fails the whole request with
            nothing recorded.
        type: str
      metadata:
        description:
          - Server metadata (Nova's C(--property key=value)), at most 128 items, keys and values strings of 1-255
            characters. Kept in the instance record (shown by the C(bootflow.cloud.instances) inventory plugin) and
            not compared on a re-run.
        type: dict
      count:
        description:
          - How many instances of this item (Nova's C(max_count)), 1 to 100, default V(1). With more than one, the
            instances are named C(NAME-1) .. C(NAME-N) (Nova's multi-instance name template) and a name in the list
            that collides with one of them fails with RV(error=invalid).
        type: int
      min_count:
        description:
          - The fewest instances of this item worth building (Nova's C(min_count)). When the scheduler
            (M(bootflow.cloud.schedule) with O(bootflow.cloud.schedule#module:instances)) can place fewer, it releases
            the claims it made for the item and deletes the item's instance records, so nothing of the item is left
            while the other items go on. Unset (the default), each instance is placed, or goes to ERROR with C(No
            valid host), on its own. Must not exceed O(instances[].count).
        type: int
      state:
        description:
          - V(present) (the default) boots the instance. V(absent) deletes it; this module only finds it (RV(delete)),
            C(playbooks/boot.yml) and C(playbooks/delete.yml) do the rest.
        type: str
        choices: [present, absent]
  defaults:
    description:
      - What every item of O(instances) gets unless it says otherwise (C(playbooks/boot.yml) passes the
        C(bootflow_flavor), C(bootflow_image), C(bootflow_networks), ... variables here).
    type: dict
    default: {}
    suboptions:
      flavor:
        description:
          - O(instances[].flavor) of every item that does not set it.
        type: str
      image:
        description:
          - O(instances[].image) of every item that does not set it.
        type: str
      networks:
        description:
          - O(instances[].networks) of every item that does not set it.
        type: list
        elements: raw
      volume_size_gb:
        description:
          - O(instances[].volume_size_gb) of every item that does not set it.
        type: int
      volume_delete_on_termination:
        description:
          - O(instances[].volume_delete_on_termination) of every item that does not set it.
        type: bool
      boot_from_volume:
        description:
          - O(instances[].boot_from_volume) of every item that does not set it.
        type: bool
      root_volume_size_gb:
        description:
          - O(instances[].root_volume_size_gb) of every item that does not set it.
        type: int
      root_volume_delete_on_termination:
        description:
          - O(instances[].root_volume_delete_on_termination) of every item that does not set it.
        type: bool
      availability_zone:
        description:
          - O(instances[].availability_zone) of every item that does not set it.
        type: str
      server_group:
        description:
          - O(instances[].server_group) of every item that does not set it.
        type: str
      user_data:
        description:
          - O(instances[].user_data) of every item that does not set it.
        type: str
      key_name:
        description:
          - O(instances[].key_name) of every item that does not set it.
        type: str
      metadata:
        description:
          - O(instances[].metadata) of every item that does not set it.
        type: dict
      count:
        description:
          - O(instances[].count) of every item that does not set it.
        type: int
      min_count:
        description:
          - O(instances[].min_count) of every item that does not set it.
        type: int
      state:
        description:
          - O(instances[].state) of every item that does not set it.
        type: str
        choices: [present, absent]
  state:
    description:
      - V(present) records the list (see above).
      - V(absent) records nothing and returns in RV(delete) every live instance the list names (all items,
        whatever their own state), for C(playbooks/delete.yml).
      - V(query) records nothing and returns in RV(instances) every V(present) instance of the list as it is now,
        with its spec (as RV(bootflow.cloud.instance_info#module:instance)), or C(status=ABSENT) for one that does
        not exist (the report at the end of C(playbooks/boot.yml)).
    type: str
    default: present
    choices: [present, absent, query]
attributes:
  check_mode:
    support: full
    details: The whole list is validated as for a real run (quota included) and the transaction rolled back.
  diff_mode:
    support: full
    details: The names of the caller's instances the list names before, and after the request.
notes:
  - The instances are recorded, not built. C(playbooks/boot.yml) then schedules the list as one request
    (M(bootflow.cloud.schedule) O(bootflow.cloud.schedule#module:instances)) and builds it on the chosen hosts, in
    parallel across them.
seealso:
  - module: bootflow.cloud.instance
  - module: bootflow.cloud.schedule
  - module: bootflow.cloud.keypair
  - plugin: bootflow.cloud.instances
    plugin_type: inventory
"""

EXAMPLES = r"""
- name: Record three web servers (web-1..web-3) in an anti-affinity group, and one database with a fixed IP
  bootflow.cloud.boot_request:
    auth_token: "{{ bootflow_token }}"
    defaults:
      flavor: m1.tiny
      image: bootflow-guest
      networks: [private]
      key_name: ops
    instances:
      - name: web
        count: 3
        min_count: 2
        server_group: web
        metadata:
          role: web
      - name: db
        networks:
          - network: private
            fixed_ip: 10.0.0.50
        volume_size_gb: 5
      - name: old-worker
        state: absent
  register: bootflow_request

- name: Schedule the new instances as one request
  bootflow.cloud.schedule:
    auth_token: "{{ bootflow_token }}"
    instances: "{{ bootflow_request.instances | map(attribute='uuid') | list }}"
"""

RETURN = r"""
instances:
  description:
    - One entry per V(present) instance of the list, in order (an item with a count gives several).
    - With O(state=query), each is the instance's spec instead (or only C(name) and C(status=ABSENT)).
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: The instance's name.
      type: str
      sample: web-2
    uuid:
      description: Its UUID; V(null) in check mode for an instance that would be created.
      type: str
      sample: 2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b
    status:
      description: Its API status (V(BUILD), V(ACTIVE), V(ERROR)).
      type: str
      sample: BUILD
    host:
      description: The host that holds its claim, V(null) before scheduling.
      type: str
      sample: bfhv21
    item:
      description: Index of the item of O(instances) it comes from.
      type: int
      sample: 0
    created:
      description: Whether this request recorded it (V(false) for an instance that existed).
      type: bool
      sample: true
    left_on_hosts:
      description:
        - With O(state=query), for an instance that is not ACTIVE, what hosts that could not undo its failed builds
          still hold - C(host), C(reason) (the undo step that failed) and C(residue) (C(domain_name), C(instances_path),
          C(ports), C(volumes)); the host removes it when C(playbooks/hypervisors.yml) runs there again.
      type: list
      elements: dict
      sample: []
delete:
  description:
    - The live instances to delete, each as the conductor's instance spec (as RV(bootflow.cloud.instance_info#module:instance)).
    - With O(state=present), those of the items with O(instances[].state=absent); with O(state=absent), every
      instance of the list that exists.
  returned: success
  type: list
  elements: dict
  sample: []
missing:
  description:
    - With O(state=absent), each name or UUID of the list the caller's project has no live instance of, with a
      C(message) saying so (C(No instance NAME in project P) and that nothing was deleted), or that it was deleted already and
      when). An admin is also told when another project has a live instance of that name, with its UUID.
    - The messages of names that never existed in the project are also returned as warnings; they are not an error,
      so that a second delete of the same list changes nothing and succeeds.
  returned: O(state=absent)
  type: list
  elements: dict
  sample: [{"name": "web-1", "warn": true, "message": "No instance web-1 in project admin: nothing deleted (a mistyped name, or another project's instance)."}]
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a missing role, V(not_found) for an
      unknown flavor, image, network, server group or key pair of any item, V(invalid) for an item that fails
      validation (the message names it), V(quota) for a list over a quota of the project, V(conflict) for a name
      taken with a different request. Nothing of the list is recorded in any of these cases.
  returned: failure
  type: str
  sample: invalid
"""
