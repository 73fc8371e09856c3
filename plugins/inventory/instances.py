# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: instances
author: bootflow.cloud contributors (@bootflow)
version_added: 0.1.0
short_description: The bootflow.cloud instances as an Ansible inventory
description:
  - Lists the instances of bootflow.cloud (nova-api's C(GET /servers/detail)) and makes each one a host, so
    that a later play or job can target the VMs that C(playbooks/boot.yml) built.
  - It reads the same database and identity service as the modules, with the same settings (O(state_dir),
    O(db_url), O(auth_backend), and a token or credentials), as the caller - a member sees its own project's
    instances, an admin every project's with O(all_projects=true).
  - Each host is named after its instance (with C(-) and the first 8 characters of its UUID appended when two
    listed instances have the same name, as instances of two projects may). C(ansible_host) is its first fixed
    IP; its variables are prefixed C(bootflow_).
  - Default groups - C(bootflow_instances) (all), and by status, hypervisor host, flavor, image, project and
    server group (C(bootflow_status_active), C(bootflow_host_hv1), C(bootflow_flavor_m1_tiny),
    C(bootflow_image_...), C(bootflow_project_...), C(bootflow_server_group_...)). O(keyed_groups), O(groups) and
    O(compose) add more, as in C(ansible.builtin.constructed). Group names are lower-case.
  - The guests are reached through their hypervisor host (their addresses are on its provider bridge). When the
    hypervisor host is in the inventory already - name its inventory source before this one (C(-i hosts.ini -i
    my.bootflow.yml)) - each instance gets an C(ansible_ssh_common_args) with an SSH C(ProxyCommand) through it,
    with the hypervisor's own address, port, user, key and SSH arguments, followed by O(ssh_args)
    (O(jump_via_hypervisor)). O(compose) can set it otherwise.
  - The configuration file's name must end with C(bootflow.yml) or C(bootflow.yaml).
extends_documentation_fragment:
  - constructed
options:
  plugin:
    description: The name of this plugin; it makes the file this plugin's configuration.
    type: str
    required: true
    choices: [bootflow.cloud.instances]
  state_dir:
    description:
      - The controller's state directory (the SQLite database, the Fernet keys, the admin password that bootstrap
        wrote). The modules' O(bootflow.cloud.token#module:state_dir).
    type: path
    env:
      - name: BOOTFLOW_STATE_DIR
  db_url:
    description: The database URL (PostgreSQL), else the SQLite file in O(state_dir).
    type: str
    env:
      - name: BOOTFLOW_DB_URL
  auth_backend:
    description:
      - Which identity service - V(local) (the embedded one) or V(keystone). Empty means V(local) (an AWX
        credential injects an empty variable for an input left empty); any other value is refused.
    type: str
    env:
      - name: BOOTFLOW_AUTH_BACKEND
  auth_url:
    description: Keystone's URL (V(keystone) only; else the cloud's, else E(OS_AUTH_URL)).
    type: str
    env:
      - name: OS_AUTH_URL
  auth_token:
    description: A token of M(bootflow.cloud.token). Without one, a token is issued for O(username).
    type: str
    env:
      - name: BOOTFLOW_AUTH_TOKEN
  username:
    description:
      - Whose instances to list when no O(auth_token) is given; with the local identity V(admin) by default, whose
        password bootstrap wrote into O(state_dir).
    type: str
  password:
    description: The password of O(username).
    type: str
  project:
    description: The project to scope the token to (the user's default project when unset).
    type: str
  user_domain:
    description: The domain of O(username) (V(Default) when unset).
    type: str
  project_domain:
    description: The domain of O(project) (V(Default) when unset).
    type: str
  cloud:
    description: A C(clouds.yaml) cloud to take Keystone's URL and the credentials from (V(keystone) only).
    type: str
  all_projects:
    description: List the instances of every project (an admin only, Nova's C(all_tenants)).
    type: bool
    default: false
  statuses:
    description: List only the instances in one of these statuses (the API's V(ACTIVE), V(BUILD), V(ERROR)); all when empty.
    type: list
    elements: str
    default: []
  jump_via_hypervisor:
    description:
      - Set C(ansible_ssh_common_args) of each instance to jump through its hypervisor host, when that host is in the
        inventory already (an earlier inventory source). An instance whose hypervisor is not known gets none.
    type: bool
    default: true
  ssh_args:
    description:
      - SSH options after the jump (O(jump_via_hypervisor)). The default fits guests that get new host keys each
        time they boot.
    type: str
    default: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
"""

EXAMPLES = r"""
# my.bootflow.yml: every ACTIVE instance of the admin's project (the embedded identity, ~/.bootflow)
plugin: bootflow.cloud.instances
statuses: [ACTIVE]
keyed_groups:
  - key: bootflow_flavor
    prefix: flavor
  - key: bootflow_metadata.role | default('none')
    prefix: role
compose:
  # the test guest has no Python: raw only; the key of the key pair the instances were booted with
  ansible_user: "'root'"
  ansible_ssh_private_key_file: "'~/.ssh/ops_ed25519'"

# ansible-inventory -i hosts.ini -i my.bootflow.yml --graph
# ansible -i hosts.ini -i my.bootflow.yml bootflow_status_active -m raw -a uptime
#   (hosts.ini, the hypervisors, first: the instances jump through them)
"""

from ansible.errors import AnsibleParserError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.inventory import BaseInventoryPlugin, Constructable

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils import jump as _jump
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import keystone as _keystone
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity import session

# default groups: group name prefix -> the server's field
GROUP_BY = (("status", "status"), ("host", "host"), ("flavor", "flavor"), ("image", "image"),
            ("project", "project_id"), ("server_group", "server_group"))


class InventoryModule(BaseInventoryPlugin, Constructable):
    NAME = "bootflow.cloud.instances"

    def verify_file(self, path):
        return super().verify_file(path) and path.endswith(("bootflow.yml", "bootflow.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        try:
            servers = self._servers()
        except BootflowError as exc:
            raise AnsibleParserError("bootflow.cloud.instances: %s" % to_text(exc)) from exc
        self.inventory.add_group("bootflow_instances")
        names = [s["name"] for s in servers]
        for server in servers:
            name = server["name"] if names.count(server["name"]) == 1 else "%s-%s" % (server["name"], server["uuid"][:8])
            self._add(name, server)

    def _servers(self):
        state_dir, backend = self.get_option("state_dir"), _keystone.resolve_backend(self.get_option("auth_backend"))
        db = _db.open_db(self.get_option("db_url"), state_dir)
        try:
            token = self.get_option("auth_token")
            if token:
                auth = session.authenticate(lambda: db, state_dir, backend, token, auth_url=self.get_option("auth_url"))
            else:
                _token, auth = session.issue(lambda: db, state_dir, backend, self.get_option("username"),
                                             self.get_option("password"), self.get_option("project"),
                                             self.get_option("user_domain"), self.get_option("project_domain"),
                                             cloud=self.get_option("cloud"), auth_url=self.get_option("auth_url"))
            return _compute_api.list_servers(db, auth, all_projects=self.get_option("all_projects"),
                                             statuses=self.get_option("statuses"))
        finally:
            db.dispose()

    def _add(self, name, server):
        self.inventory.add_host(name, group="bootflow_instances")
        ips = [p["ip"] for p in server["ports"]]
        hostvars = {
            "bootflow_uuid": server["uuid"], "bootflow_name": server["name"], "bootflow_status": server["status"],
            "bootflow_vm_state": server["vm_state"], "bootflow_hypervisor": server["host"],
            "bootflow_ips": ips, "bootflow_networks": {p["network_name"]: p["ip"] for p in server["ports"]},
            "bootflow_flavor": server["flavor"], "bootflow_image": server["image"],
            "bootflow_project_id": server["project_id"], "bootflow_server_group": server["server_group"],
            "bootflow_domain_name": server["domain_name"], "bootflow_created_at": server["created_at"],
            "bootflow_metadata": server.get("metadata") or {},
        }
        if ips:
            hostvars["ansible_host"] = ips[0]
        hypervisor = self.inventory.get_host(server["host"]) if server["host"] else None
        if ips and hypervisor is not None and self.get_option("jump_via_hypervisor"):
            hostvars["ansible_ssh_common_args"] = _jump.proxy_args(
                dict(hypervisor.get_vars(), inventory_hostname=hypervisor.name), self.get_option("ssh_args"))
        for key, value in hostvars.items():
            self.inventory.set_variable(name, key, value)
        for prefix, field in GROUP_BY:
            if server.get(field):
                group = self.inventory.add_group(self._sanitize_group_name("bootflow_%s_%s" % (prefix, str(server[field]).lower())))
                self.inventory.add_child(group, name)
        strict = self.get_option("strict")
        self._set_composite_vars(self.get_option("compose"), hostvars, name, strict=strict)
        self._add_host_to_composed_groups(self.get_option("groups"), hostvars, name, strict=strict)
        self._add_host_to_keyed_groups(self.get_option("keyed_groups"), hostvars, name, strict=strict)
