# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every module's argument spec, in one place.

PRIVATE to the collection: may change at any time. Stdlib only: host modules import it too.

``SPECS[name]`` holds the keyword arguments of ``AnsibleModule`` (host modules) and of
``ActionBase.validate_argument_spec`` (every action plugin, on the controller, before anything is
done) for module ``bootflow.cloud.<name>``: ``argument_spec`` plus its constraints. ``module_kwargs(name)``
hands out a copy.

The shared blocks (``AUTH_ARGSPEC`` ...) each have exactly one doc fragment of the same name in
plugins/doc_fragments/ (``AUTH_ARGSPEC`` <-> ``bootflow.cloud.auth`` and so on); a module's own options
are documented in its DOCUMENTATION. The API's vocabulary (roles, image formats and visibilities,
server group policies, the token lifetime) is defined here and imported by the services.
"""

from __future__ import annotations

import copy

from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import DHCP_DIR, INSTANCES_PATH, VOLUME_POOL, VOLUMES_PATH

# --- the API's vocabulary ------------------------------------------------------------------------------

ROLES = ("admin", "member", "reader")
DEFAULT_MAX_ATTEMPTS = 3     # builds of one instance, the first included (Nova's [scheduler] max_attempts)
DISK_FORMATS = ("raw", "qcow2")
CONTAINER_FORMATS = ("bare",)
IMAGE_VISIBILITIES = ("public", "community", "shared", "private")
IMAGE_STATES = ("present", "absent", "deactivated")
MEMBER_STATUSES = ("pending", "accepted", "rejected")
GROUP_POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")

# --- shared blocks (one doc fragment each) ---------------------------------------------------------------

# Consumed on the controller by the action plugins (token validation, DB). auth_backend and
# auth_url have no default here: the controller resolves them (option, else BOOTFLOW_AUTH_BACKEND /
# OS_AUTH_URL / OS_CLOUD in the controller's environment, else local), never the host.
AUTH_ARGSPEC = dict(
    auth_token=dict(type="str", no_log=True),
    auth_backend=dict(type="str", choices=["local", "keystone"]),
    auth_url=dict(type="str"),
    db_url=dict(type="str", no_log=True),
    state_dir=dict(type="path"),
)

# Where the image registry lives (consumed on the controller): the embedded registry or a real
# Glance. No defaults here: the controller resolves them (option, else BOOTFLOW_IMAGE_BACKEND /
# BOOTFLOW_GLANCE_URL in its environment, else local / the image endpoint of Keystone's catalog).
IMAGE_BACKEND_ARGSPEC = dict(
    image_backend=dict(type="str", choices=["local", "glance"]),
    glance_url=dict(type="str"),
)

# Which placement backend holds the compute nodes' inventories and the claims (schedule, compute_node,
# the conductor's reschedule). Consumed on the controller; no defaults here: the controller resolves
# them (option, else BOOTFLOW_PLACEMENT_BACKEND / BOOTFLOW_PLACEMENT_URL, else local).
PLACEMENT_ARGSPEC = dict(
    placement_backend=dict(type="str", choices=["local", "placement"]),
    placement_url=dict(type="str"),
)
PLACEMENT_KEYS = tuple(PLACEMENT_ARGSPEC)

# Connection to the hypervisor host's libvirt (host-side modules).
LIBVIRT_ARGSPEC = dict(
    uri=dict(type="str", default="qemu:///system"),
)

# Waiting for a state to be reached.
WAIT_ARGSPEC = dict(
    wait=dict(type="bool", default=True),
    wait_timeout=dict(type="int", default=120),
)

AUTH_KEYS = tuple(AUTH_ARGSPEC)
IMAGE_BACKEND_KEYS = tuple(IMAGE_BACKEND_ARGSPEC)


def argspec(*blocks, **own):
    """Merge shared blocks (deep-copied) with a module's own options."""
    spec = {}
    for block in blocks:
        spec.update(copy.deepcopy(block))
    spec.update(own)
    return spec


# --- the modules ------------------------------------------------------------------------------------------

SPECS = {}

DOMAIN_DISK_OPTIONS = dict(
    path=dict(type="path"),
    pool=dict(type="str"),
    volume=dict(type="str"),
    format=dict(type="str", choices=["qcow2", "raw"]),
    device=dict(type="str"),
    bus=dict(type="str", choices=["virtio", "sata", "scsi", "ide"]),
    device_type=dict(type="str", choices=["disk", "cdrom"], default="disk"),
    readonly=dict(type="bool", default=False),
)

DOMAIN_INTERFACE_OPTIONS = dict(
    mac=dict(type="str"),
    bridge=dict(type="str", required=True),
    model=dict(type="str", choices=["virtio", "e1000", "rtl8139"], default="virtio"),
    target=dict(type="str"),
    port_id=dict(type="str"),
)


# one instance (or NAME-1..NAME-N) of a boot request; no defaults here: an unset option falls back to the
# request's ``defaults``, then to the built-in value (plugin_utils/compute/boot_request.ITEM_DEFAULTS)
BOOT_REQUEST_ITEM_OPTIONS = dict(
    flavor=dict(type="str"),
    image=dict(type="str"),
    networks=dict(type="list", elements="raw"),
    volume_size_gb=dict(type="int"),
    volume_delete_on_termination=dict(type="bool"),
    boot_from_volume=dict(type="bool"),
    root_volume_size_gb=dict(type="int"),
    root_volume_delete_on_termination=dict(type="bool"),
    availability_zone=dict(type="str"),
    server_group=dict(type="str"),
    user_data=dict(type="str", no_log=True),
    key_name=dict(type="str"),
    metadata=dict(type="dict"),
    count=dict(type="int"),
    min_count=dict(type="int"),
    state=dict(type="str", choices=["present", "absent"]),
)

SPECS["boot_request"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        instances=dict(type="list", elements="dict", required=True,
                       options=dict(name=dict(type="str", required=True), **copy.deepcopy(BOOT_REQUEST_ITEM_OPTIONS))),
        defaults=dict(type="dict", default={}, options=copy.deepcopy(BOOT_REQUEST_ITEM_OPTIONS)),
        state=dict(type="str", default="present", choices=["present", "absent", "query"]),
    ),
)

SPECS["compute_node"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        PLACEMENT_ARGSPEC,
        LIBVIRT_ARGSPEC,
        instances_path=dict(type="path", default=INSTANCES_PATH),
        # consumed by the action plugin on the controller (stored with the report), not here
        reserved_host_memory_mb=dict(type="int", default=512),
        cpu_allocation_ratio=dict(type="float", default=4.0),
        ram_allocation_ratio=dict(type="float", default=1.0),
        disk_allocation_ratio=dict(type="float", default=1.0),
        vcpus=dict(type="int"),
        memory_mb=dict(type="int"),
        local_gb=dict(type="int"),
        disabled=dict(type="bool"),
        availability_zone=dict(type="str", default="nova"),
        aggregates=dict(type="list", elements="str", default=[]),
        traits=dict(type="list", elements="str", default=[]),
        heartbeat=dict(type="bool", default=False),
        report_interval=dict(type="int", default=0),
    ),
)

SPECS["config_drive"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        instance_uuid=dict(type="str", required=True),
        name=dict(type="str"),
        hostname=dict(type="str"),
        user_data=dict(type="str", no_log=True),
        public_keys=dict(type="list", elements="str", default=[], no_log=False),
        ports=dict(type="list", elements="dict", default=[], options=dict(
            mac=dict(type="str", required=True),
            ip=dict(type="str"),
            id=dict(type="str"),
        )),
        instances_path=dict(type="path", default=INSTANCES_PATH),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
)

SPECS["dhcp_lease"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        WAIT_ARGSPEC,
        network_id=dict(type="str", required=True),
        bridge=dict(type="str"),
        cidr=dict(type="str"),
        dhcp_ip=dict(type="str"),
        gateway_ip=dict(type="str"),
        dns_servers=dict(type="list", elements="str", default=[]),
        mac=dict(type="str"),
        ip=dict(type="str"),
        hostname=dict(type="str"),
        port_id=dict(type="str"),
        lease_time=dict(type="int", default=86400),
        dhcp_dir=dict(type="path", default=DHCP_DIR),
        state=dict(type="str", choices=["present", "absent", "leased"], default="present"),
    ),
    required_if=[
        ("state", "present", ("bridge", "cidr", "dhcp_ip", "mac", "ip")),
        ("state", "absent", ("port_id", "mac", "ip"), True),
        ("state", "leased", ("port_id", "mac"), True),
    ],
)

SPECS["domain"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        WAIT_ARGSPEC,
        name=dict(type="str", required=True),
        uuid=dict(type="str"),
        title=dict(type="str"),
        vcpus=dict(type="int"),
        memory_mb=dict(type="int"),
        virt_type=dict(type="str", choices=["auto", "qemu", "kvm"], default="auto"),
        disks=dict(type="list", elements="dict", default=[], options=DOMAIN_DISK_OPTIONS,
                   mutually_exclusive=[("path", "pool"), ("path", "volume")],
                   required_together=[("pool", "volume")]),
        interfaces=dict(type="list", elements="dict", default=[], options=DOMAIN_INTERFACE_OPTIONS),
        console_log=dict(type="path"),
        tb_cache_mb=dict(type="int"),
        state=dict(type="str", choices=["running", "defined", "shutdown", "absent"], default="running"),
    ),
    required_together=[("vcpus", "memory_mb")],
)

SPECS["server_action"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        WAIT_ARGSPEC,
        instance=dict(type="str"),
        name=dict(type="str"),
        action=dict(type="str", required=True,
                    choices=["stop", "start", "reboot_soft", "reboot_hard", "pause", "unpause", "suspend", "resume"]),
        shutdown_timeout=dict(type="int"),
        soft_reboot_timeout=dict(type="int"),
    ),
)

SPECS["rebuild"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        instance=dict(type="str"),
        image=dict(type="str"),
        instance_uuid=dict(type="str"),
        instances_path=dict(type="path", default=INSTANCES_PATH),
        shutdown_timeout=dict(type="int"),
    ),
)

SPECS["snapshot"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        instance=dict(type="str"),
        image_name=dict(type="str"),
        instance_uuid=dict(type="str"),
        instances_path=dict(type="path", default=INSTANCES_PATH),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        timeout=dict(type="int", default=600),
    ),
)

SPECS["resize"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        instance=dict(type="str"),
        flavor=dict(type="str"),
        instance_uuid=dict(type="str"),
        instances_path=dict(type="path", default=INSTANCES_PATH),
        state=dict(type="str", choices=["resized", "confirmed", "reverted"], default="resized"),
        fault=dict(type="str"),
        shutdown_timeout=dict(type="int"),
        power_on=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=120),
        auto_confirm=dict(type="bool", default=False),
        resize_confirm_window=dict(type="int"),
    ),
)

SPECS["console_log"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        instance=dict(type="str"),
        path=dict(type="path"),
        length=dict(type="int"),
    ),
)

SPECS["flavor"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        vcpus=dict(type="int"),
        ram_mb=dict(type="int"),
        disk_gb=dict(type="int", default=1),
        extra_specs=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
    required_if=[("state", "present", ("vcpus", "ram_mb"))],
)

SPECS["host_cleanup"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        host=dict(type="str"),
        done=dict(type="list", elements="str", default=[]),
    ),
)

SPECS["identity_bootstrap"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        username=dict(type="str", default="admin"),
        password=dict(type="str", no_log=True),
        project=dict(type="str", default="admin"),
        role=dict(type="str", default="admin", choices=list(ROLES)),
    ),
)

SPECS["identity_domain"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        description=dict(type="str"),
        enabled=dict(type="bool"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["identity_keys"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        state=dict(type="str", default="present", choices=["present", "rotated"]),
        max_active_keys=dict(type="int", default=3),
    ),
)

SPECS["image"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        name=dict(type="str", required=True),
        filename=dict(type="path"),
        url=dict(type="str"),
        url_timeout=dict(type="int", default=60),
        validate_certs=dict(type="bool", default=True),
        disk_format=dict(type="str", default="qcow2", choices=list(DISK_FORMATS)),
        container_format=dict(type="str", default="bare", choices=list(CONTAINER_FORMATS)),
        visibility=dict(type="str", choices=list(IMAGE_VISIBILITIES)),
        min_disk=dict(type="int", default=0),
        min_ram=dict(type="int", default=0),
        properties=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=list(IMAGE_STATES)),
    ),
    mutually_exclusive=[("filename", "url")],
)

SPECS["image_cache"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        instances_path=dict(type="path", default=INSTANCES_PATH),
        max_unused_age=dict(type="int", default=86400),
        state=dict(type="str", choices=["cleaned", "listed"], default="cleaned"),
    ),
)

SPECS["image_fetch"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        image_id=dict(type="str"),
        disk_format=dict(type="str", choices=["raw", "qcow2"]),
        checksum=dict(type="str"),
        os_hash_algo=dict(type="str"),
        os_hash_value=dict(type="str"),
        size=dict(type="int"),
        url=dict(type="str"),
        url_timeout=dict(type="int", default=60),
        src=dict(type="path"),
        instance_uuid=dict(type="str"),
        root_gb=dict(type="int"),
        create_disk=dict(type="bool", default=True),
        force_raw_images=dict(type="bool", default=False),
        instances_path=dict(type="path", default=INSTANCES_PATH),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
    mutually_exclusive=[("url", "src")],
    required_together=[("os_hash_algo", "os_hash_value")],
    required_if=[
        ("state", "present", ("image_id", "disk_format")),
        ("state", "present", ("checksum", "os_hash_value"), True),
        ("state", "absent", ("instance_uuid",)),
    ],
)

SPECS["image_member"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        image=dict(type="str", required=True),
        project=dict(type="str"),
        project_domain=dict(type="str", default="Default"),
        member_status=dict(type="str", choices=list(MEMBER_STATUSES)),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
    required_if=[("state", "absent", ("project",))],
)

SPECS["instance"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        IMAGE_BACKEND_ARGSPEC,
        name=dict(type="str", required=True),
        flavor=dict(type="str"),
        image=dict(type="str"),
        networks=dict(type="list", elements="str"),
        volume_size_gb=dict(type="int", default=0),
        volume_delete_on_termination=dict(type="bool", default=True),
        availability_zone=dict(type="str"),
        boot_from_volume=dict(type="bool", default=False),
        root_volume_size_gb=dict(type="int"),
        root_volume_delete_on_termination=dict(type="bool", default=True),
        user_data=dict(type="str", no_log=True),
        server_group=dict(type="str"),
        key_name=dict(type="str", no_log=False),
        state=dict(type="str", default="present", choices=["present", "absent", "error"]),
        fault=dict(type="str"),
    ),
    required_if=[("state", "present", ("flavor", "image", "networks")), ("state", "error", ("fault",))],
)

SPECS["instance_info"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        instance=dict(type="str", required=True),
        missing_ok=dict(type="bool", default=False),
    ),
)

SPECS["keypair"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        public_key=dict(type="str", no_log=False),
        user=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["network"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        bridge=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
    required_if=[("state", "present", ("bridge",))],
)

SPECS["port"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        instance=dict(type="str", required=True),
        fixed_ips=dict(type="dict", default={}),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["project"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        description=dict(type="str"),
        enabled=dict(type="bool"),
        domain=dict(type="str", default="Default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["quota"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        project=dict(type="str", required=True),
        instances=dict(type="int"),
        cores=dict(type="int"),
        ram=dict(type="int"),
        volumes=dict(type="int"),
        gigabytes=dict(type="int"),
        server_groups=dict(type="int"),
        server_group_members=dict(type="int"),
        image_count_total=dict(type="int"),
        image_size_total=dict(type="int"),
    ),
)

SPECS["reschedule"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        PLACEMENT_ARGSPEC,
        instance=dict(type="str", required=True),
        host=dict(type="str", required=True),
        alternates=dict(type="list", elements="str"),
        max_attempts=dict(type="int"),
        failure=dict(type="dict", default={}),
        failed_task=dict(type="str"),
        failed_action=dict(type="str"),
        cleanup_error=dict(type="str"),
    ),
)

SPECS["role_assignment"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        user=dict(type="str", required=True),
        project=dict(type="str", required=True),
        role=dict(type="str", required=True, choices=list(ROLES)),
        user_domain=dict(type="str", default="Default"),
        project_domain=dict(type="str", default="Default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["schedule"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        PLACEMENT_ARGSPEC,
        instance=dict(type="str"),
        instances=dict(type="list", elements="str"),
        hosts=dict(type="list", elements="str"),
        enabled_filters=dict(type="list", elements="str"),
        # operator settings (section scheduler of the operator's configuration): no defaults here, a task's
        # value is for an admin only; the defaults (Nova's) are in plugin_utils/compute/scheduling.py
        weight_multipliers=dict(type="dict"),
        host_subset_size=dict(type="int"),
        max_attempts=dict(type="int"),
        service_down_time=dict(type="int"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
    required_one_of=[("instance", "instances")],
    mutually_exclusive=[("instance", "instances")],
)

SPECS["server_group"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        policy=dict(type="str", choices=list(GROUP_POLICIES)),
        rules=dict(type="dict"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["subnet"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        network=dict(type="str", required=True),
        cidr=dict(type="str"),
        gateway_ip=dict(type="str"),
        dhcp_ip=dict(type="str"),
        pool_start=dict(type="str"),
        pool_end=dict(type="str"),
        dns_servers=dict(type="list", elements="str", default=[]),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
    required_if=[("state", "present", ("cidr",))],
    required_together=[("pool_start", "pool_end")],
)

SPECS["token"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        username=dict(type="str"),
        password=dict(type="str", no_log=True),
        project=dict(type="str"),
        user_domain=dict(type="str"),
        project_domain=dict(type="str"),
        cloud=dict(type="str"),
        ttl=dict(type="int"),
        state=dict(type="str", default="issued", choices=["issued", "validated", "revoked"]),
    ),
)

SPECS["user"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        name=dict(type="str", required=True),
        password=dict(type="str", no_log=True),
        update_password=dict(type="str", default="on_create", choices=["always", "on_create"]),
        default_project=dict(type="str"),
        enabled=dict(type="bool"),
        domain=dict(type="str", default="Default"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
    ),
)

SPECS["volume"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        name=dict(type="str", required=True),
        pool=dict(type="str", default=VOLUME_POOL),
        pool_path=dict(type="path", default=VOLUMES_PATH),
        size_gb=dict(type="int"),
        format=dict(type="str", choices=["qcow2", "raw"], default="qcow2"),
        source_path=dict(type="path"),
        source_format=dict(type="str", choices=["raw", "qcow2"]),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
    required_if=[("state", "present", ("size_gb",))],
    required_by={"source_path": ("source_format",)},
)

SPECS["volume_attach"] = dict(
    argument_spec=argspec(
        AUTH_ARGSPEC,
        LIBVIRT_ARGSPEC,
        WAIT_ARGSPEC,
        domain=dict(type="str", required=True),
        volume=dict(type="str", required=True),
        pool=dict(type="str", default=VOLUME_POOL),
        device=dict(type="str"),
        bus=dict(type="str", choices=["virtio", "sata", "scsi"], default="virtio"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
    ),
)


def module_kwargs(name):
    """A copy of module ``name``'s spec: the keyword arguments of AnsibleModule / validate_argument_spec."""
    return copy.deepcopy(SPECS[name])
