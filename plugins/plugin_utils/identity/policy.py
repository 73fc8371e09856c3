# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The policy table: which role may do what. The one place authorization is decided.

PRIVATE to the collection: may change at any time. Controller side only.

Modelled on the services' default policies with Keystone's three default roles:
``admin`` (everything, any project), ``member`` (create and change its own project's resources),
``reader`` (look only). Project scoping is the other half: lookups of instances, ports, volumes
and private images are limited to the token's project unless the caller is admin, and a
resource of another project is "not found" (as the OpenStack APIs answer, to not leak it).
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import AuthError

ADMIN = ("admin",)
MEMBER = ("admin", "member")
READER = ("admin", "member", "reader")

POLICY = {
    # keystone
    "identity:project": ADMIN,
    "identity:user": ADMIN,
    "identity:role_assignment": ADMIN,
    "identity:domain": ADMIN,
    "identity:quota": ADMIN,
    "identity:keys": ADMIN,
    "identity:validate_token": READER,
    "identity:revoke_token": READER,          # one's own token
    # a task option that overrides an operator setting (plugin_utils/settings.py): scheduler filters and hosts,
    # token lifetimes, image upload and download limits
    "config:override": ADMIN,
    # nova
    "compute:create": MEMBER,
    "compute:get": READER,
    "compute:get_all": READER,                # list the project's instances (GET /servers/detail)
    "compute:get_all_tenants": ADMIN,         # ... of every project (Nova's all_tenants)
    "compute:delete": MEMBER,
    "compute:set_error": MEMBER,
    "compute:force_host": ADMIN,              # availability_zone=az:host
    "compute:flavor_manage": ADMIN,
    "compute:report_node": ADMIN,             # nova-compute's resource tracker (service role in Nova)
    "compute:heartbeat": MEMBER,              # "the host answered just now" (boot.yml, the booting user's token)
    "compute:host_step": MEMBER,              # compute-side work on the instance's host
    # the instance actions after the boot (Nova's rule names and defaults: project member or admin)
    "os_compute_api:servers:stop": MEMBER,
    "os_compute_api:servers:start": MEMBER,
    "os_compute_api:servers:reboot": MEMBER,
    "os_compute_api:servers:rebuild": MEMBER,
    "os_compute_api:servers:create_image": MEMBER,
    "os_compute_api:servers:resize": MEMBER,
    "os_compute_api:servers:confirm_resize": MEMBER,
    "os_compute_api:servers:revert_resize": MEMBER,
    "os_compute_api:os-pause-server:pause": MEMBER,
    "os_compute_api:os-pause-server:unpause": MEMBER,
    "os_compute_api:os-suspend-server:suspend": MEMBER,
    "os_compute_api:os-suspend-server:resume": MEMBER,
    "os_compute_api:os-console-output": MEMBER,
    # os-server-groups (Nova's os_compute_api:os-server-groups:*; project-scoped, admin reaches any by ID)
    "compute:server_groups:create": MEMBER,
    "compute:server_groups:show": READER,
    "compute:server_groups:delete": MEMBER,
    # os-keypairs (Nova's rule names): a user's own key pairs; another user's (Nova's user_id parameter) needs admin
    "os_compute_api:os-keypairs:create": MEMBER,
    "os_compute_api:os-keypairs:delete": MEMBER,
    "os_compute_api:os-keypairs:show": READER,
    "os_compute_api:os-keypairs:index": READER,
    "os_compute_api:os-keypairs:other_user": ADMIN,
    "scheduler:select_destinations": MEMBER,
    "placement:release": MEMBER,
    # glance
    "image:upload": MEMBER,
    "image:publicize": ADMIN,
    "image:modify": MEMBER,                   # visibility of an existing image (its owner's members, or admin)
    "image:deactivate": MEMBER,               # as Glance 33's defaults: the owner's members, or admin
    "image:reactivate": MEMBER,
    "image:delete": MEMBER,
    "image:download": MEMBER,
    "image:member_manage": MEMBER,            # add/remove members of a shared image (its owner, or admin)
    "image:member_status": MEMBER,            # accept/reject/pending: the member project itself (or admin)
    # neutron
    "network:manage": ADMIN,                  # networks, subnets (provider networks)
    "network:create_port": MEMBER,
    # a port with a fixed IP of the caller's choice (Neutron's create_port:fixed_ips:ip_address: admin, or the
    # network's owner; networks here are the admin's provider networks); members get an address from the pool
    "network:create_port:fixed_ips:ip_address": ADMIN,
    "network:delete_port": MEMBER,
    # cinder
    "volume:create": MEMBER,
    "volume:attach": MEMBER,
    "volume:delete": MEMBER,
}


def allowed(auth, rule):
    return bool(set(POLICY[rule]) & set(auth.roles))


def enforce(auth, rule):
    """Raise AuthError (Keystone/oslo.policy's 403) unless the caller has a role the rule allows."""
    if not allowed(auth, rule):
        raise AuthError(
            "Policy doesn't allow %s to be performed: it needs one of the roles %s; user %s has %s on project %s."
            % (rule, ", ".join(POLICY[rule]), auth.user_name or auth.user_id, ", ".join(auth.roles) or "no role",
               auth.project_name or auth.project_id))
