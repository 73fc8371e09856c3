# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Matches PLACEMENT_ARGSPEC in plugins/module_utils/argspec.py
    DOCUMENTATION = r"""
options:
  placement_backend:
    description:
      - Which service holds the compute nodes' inventories and the scheduler's claims (allocations).
      - V(local) keeps them in the bootflow database. A claim is a compare-and-swap on the compute node's
        generation, the way Placement does it.
      - V(placement) uses a real OpenStack Placement (API microversion 1.39) at O(placement_url), as Nova does.
        Each compute node is a resource provider. Its UUID is the compute node's ID, and its name is the host name.
        It has VCPU, MEMORY_MB and DISK_GB inventories with the configured reservation and allocation ratios,
        plus its traits and aggregates. Its availability zone is one more aggregate.
        M(bootflow.cloud.compute_node) keeps the provider in step with each report.
        M(bootflow.cloud.schedule) first asks C(GET /allocation_candidates) which hosts have room. It then runs its
        own filters and weighers on those hosts and claims with C(PUT /allocations/{instance}). On a conflict it
        retries, or moves on to the next host. Releasing an allocation is C(DELETE /allocations/{instance}).
      - With either backend, the bootflow database keeps a copy of each instance's allocation.
      - The E(BOOTFLOW_PLACEMENT_BACKEND) environment variable on the controller, or V(local). It is an operator setting. A task
        may repeat the operator's value, and a task naming another backend is refused (C(error=auth)).
      - 'Authentication with O(auth_backend=local): Placement must run with
        C(auth_strategy = noauth2). It then trusts the token C(admin) it is sent, so nothing but the controller
        may reach it. Bind it to loopback or a management network. The bootflow token is still checked on the
        controller, and the policy still applies.'
      - 'Authentication with O(auth_backend=keystone): the caller''s Keystone
        token is sent when it has the V(admin) or V(service) role. Otherwise a service token is issued, using the
        controller''s credentials from the clouds.yaml cloud named by E(BOOTFLOW_PLACEMENT_CLOUD), or from the
        E(OS_USERNAME), E(OS_PASSWORD) and E(OS_PROJECT_NAME) variables. Those credentials go only to the
        controller''s Keystone - the cloud''s C(auth_url), else E(OS_AUTH_URL) or the E(OS_CLOUD) cloud''s - never to a
        task''s O(auth_url); without one configured on the controller, no service token is issued (C(error=auth)).'
    type: str
    choices: [local, placement]
  placement_url:
    description:
      - URL of the Placement API, for example C(http://controller:8778). Only used with O(placement_backend=placement).
      - Defaults to the E(BOOTFLOW_PLACEMENT_URL) environment variable on the controller. With the Keystone identity
        backend, it then defaults to the placement endpoint of Keystone's service catalog. The catalog interface is
        E(OS_INTERFACE), or C(public). The region is E(OS_REGION_NAME) when that is set; the catalog is read from the
        Keystone the token sent to Placement came from.
      - 'Who may set it in a task: only a caller whose own token Placement accepts - the V(admin) role (with
        O(auth_backend=keystone) also the V(service) role) - and then the caller''s own token is sent to it. For
        anyone else a task''s O(placement_url) is refused with C(error=auth) before any request is sent - the
        controller''s credentials (the C(admin) token of a noauth2 Placement, a service token) go only to
        E(BOOTFLOW_PLACEMENT_URL) or the catalog''s endpoint.'
    type: str
"""
