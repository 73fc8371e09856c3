#!/usr/bin/python
# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_cleanup
short_description: What failed builds left on a hypervisor host that could not undo them (nova-compute start-up cleanup)
version_added: 0.1.0
author: bootflow.cloud contributors (@bootflow)
description:
  - When a build fails on a host that cannot undo it - libvirtd is down, the host went unreachable - the conductor
    does not wait for the host. M(bootflow.cloud.reschedule) records what the build may have left there (its
    domain, instance directory, DHCP reservations and pool volumes), releases the claim and the ports, and
    reschedules the instance. This module lists those records for a host, and marks them done once the host
    removed the residue. The hypervisor role does both when C(playbooks/hypervisors.yml) runs, as Nova's compute
    service removes at start-up what it should no longer run.
  - A record whose instance was built on the same host again since (a later reschedule came back to it) lists only
    the DHCP reservations of ports the instance no longer has; the domain, directory and volumes belong to the new
    build.
  - Needs a token with the V(admin) role (policy rule C(compute:report_node), the compute service's).
  - Runs on the controller as an action plugin (the host is not contacted); this file only holds the documentation.
extends_documentation_fragment:
  - bootflow.cloud.auth
  - bootflow.cloud.attributes
  - bootflow.cloud.attributes.CONTROLLER
options:
  host:
    description:
      - The hypervisor host (its inventory hostname, as reported by M(bootflow.cloud.compute_node)).
      - Unset, the host the task runs for (C(inventory_hostname)); on C(localhost) it is required.
    type: str
  done:
    description:
      - IDs of records whose residue the host removed; they are marked done first, then the records still open are
        returned. IDs of another host's records, or of records done already, are ignored.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
seealso:
  - module: bootflow.cloud.reschedule
  - module: bootflow.cloud.compute_node
"""

EXAMPLES = r"""
- name: What failed builds left on this host
  bootflow.cloud.host_cleanup:
    auth_token: "{{ bootflow_token }}"
  register: leftovers

- name: The residue is gone
  bootflow.cloud.host_cleanup:
    auth_token: "{{ bootflow_token }}"
    done: "{{ leftovers.cleanups | map(attribute='id') | list }}"
  when: leftovers.cleanups | length > 0
"""

RETURN = r"""
cleanups:
  description: The records of the host still open, oldest first.
  returned: success
  type: list
  elements: dict
  contains:
    id:
      description: ID of the record.
      type: str
    instance_uuid:
      description: The instance whose build failed there.
      type: str
    reason:
      description: Why the host could not undo the build.
      type: str
    residue:
      description:
        - What to remove - C(domain_name) (V(null) when the instance is on the host again), C(instances_path),
          C(image_id), C(ports) (C(id), C(network_id), C(mac), C(ip)) and C(volumes) (C(name), C(pool)).
      type: dict
  sample: [{"id": "5d1f0b8e-3c1a-4b8e-9f7d-0a2b3c4d5e6f", "instance_uuid": "2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b",
            "reason": "libvirt: no connection", "residue": {"domain_name": "bootflow-2f0e8c4a-1b3d-4e5f-9a7b-6c5d4e3f2a1b",
            "instances_path": "/var/lib/bootflow/instances", "image_id": "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b",
            "ports": [], "volumes": []}}]
done:
  description: The IDs marked done by this task.
  returned: success
  type: list
  elements: str
  sample: []
error:
  description:
    - Kind of failure. V(auth) for a missing, invalid or expired token or a token without the V(admin) role,
      V(invalid) for a task on the controller without O(host).
  returned: failure
  type: str
  sample: auth
"""
