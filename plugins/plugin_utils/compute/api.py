# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api: flavors, and the boot request (validate everything first, then write the instance
record, its block device mappings and its server group membership in one transaction); the
scheduler's RequestSpec of an instance record.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict, InvalidRequest, NotFound
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import user_data_problem, validate_name
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.db import sa
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import keypairs as _keypairs
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import quota as _quota
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import scheduler as _scheduler
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import server_groups as _server_groups
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume import api as _volumes
from ansible_collections.bootflow.cloud.plugins.plugin_utils.volume.api import MAX_VOLUME_GB


# --- flavors -----------------------------------------------------------------------------------

def get_flavor(conn, ref):
    flavors = _db.table("flavors")
    row = conn.execute(flavors.select().where(sa.or_(flavors.c.id == ref, flavors.c.name == ref))).first()
    if row is None:
        raise NotFound("Flavor %s could not be found." % ref)
    return row


def ensure_flavor(db, name, vcpus, ram_mb, disk_gb, extra_specs, state, check_mode):
    validate_name("flavor", name)
    flavors = _db.table("flavors")
    with db.tx() as conn:
        row = conn.execute(flavors.select().where(flavors.c.name == name)).first()
        if state == "absent":
            if row is None:
                return False, None
            in_use = _db.live_instances(conn, flavor_id=row.id)
            if in_use:
                raise Conflict("Flavor %s is used by %d instance(s)." % (name, in_use))
            if not check_mode:
                conn.execute(flavors.delete().where(flavors.c.id == row.id))
            return True, None
        for key, value in (("vcpus", vcpus), ("ram_mb", ram_mb)):
            if value is None or value < 1:
                raise InvalidRequest("Invalid flavor %s: %s must be a positive integer, got %r." % (name, key, value))
        if disk_gb is None or disk_gb < 0:
            raise InvalidRequest("Invalid flavor %s: disk_gb must be 0 or more, got %r." % (name, disk_gb))
        want = dict(vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb, extra_specs=extra_specs or {})
        if row is None:
            if not check_mode:
                conn.execute(flavors.insert().values(id=_db.new_id(), name=name, created_at=_db.now(), **want))
            return True, dict(name=name, **want)
        have = dict(vcpus=row.vcpus, ram_mb=row.ram_mb, disk_gb=row.disk_gb, extra_specs=row.extra_specs)
        if have == want:
            return False, dict(_db.row_dict(row))
        # Nova flavors are immutable; we allow it only while no live instance uses it.
        in_use = _db.live_instances(conn, flavor_id=row.id)
        if in_use:
            raise Conflict("Flavor %s is used by %d instance(s) and cannot be changed; create a new flavor." % (name, in_use))
        if not check_mode:
            conn.execute(flavors.update().where(flavors.c.id == row.id).values(**want))
        return True, dict(name=name, **want)


# --- the boot request ------------------------------------------------------------------------------


def _request_of(flavor, image, networks, volume_size_gb, user_data, availability_zone, root_volume_size_gb=0):
    out = {"flavor": flavor.name, "image": image.id, "networks": [n.id for n in networks],
           "volume_size_gb": volume_size_gb or 0, "user_data": user_data, "availability_zone": availability_zone}
    if root_volume_size_gb:
        # boot from volume (nova boot --block-device source=image,dest=volume,size=N,bootindex=0)
        out.update(boot_from_volume=True, root_volume_size_gb=root_volume_size_gb)
    return out


def root_volume_size(flavor, image, boot_from_volume, root_volume_size_gb):
    """The root volume's size in GiB for a boot-from-volume request (0 without one); refuses a size
    smaller than the flavor's disk, the image's min_disk or the image's virtual size."""
    if not boot_from_volume:
        if root_volume_size_gb:
            raise InvalidRequest("root_volume_size_gb is only valid with boot_from_volume.")
        return 0
    size = root_volume_size_gb if root_volume_size_gb is not None else flavor.disk_gb
    if not size or not 1 <= size <= MAX_VOLUME_GB:
        raise InvalidRequest("The root volume size must be between 1 and %d GB, got %s (flavor %s has a %d GB disk)."
                             % (MAX_VOLUME_GB, size, flavor.name, flavor.disk_gb or 0))
    if flavor.disk_gb and size < flavor.disk_gb:
        raise InvalidRequest("Root volume size %d GB is smaller than flavor %s's disk (%d GB)."
                             % (size, flavor.name, flavor.disk_gb))
    if image.min_disk and size < image.min_disk:
        raise InvalidRequest("Root volume size %d GB is smaller than the image's min_disk (%d GB)." % (size, image.min_disk))
    if image.virtual_size and size * 1024 ** 3 < image.virtual_size:
        raise InvalidRequest("Root volume size %d GB is smaller than the image (%d bytes virtual size)."
                             % (size, image.virtual_size))
    return size


def parse_availability_zone(value):
    """Nova's ``--availability-zone``: ``zone``, ``zone:host`` or ``:host``. Returns (zone, host)."""
    if not value:
        return None, None
    if any(c.isspace() for c in value) or value.count(":") > 2:
        raise InvalidRequest("Invalid availability_zone %r: use ZONE, ZONE:HOST or :HOST." % value)
    zone, _sep, rest = value.partition(":")
    host = rest.split(":", 1)[0] or None
    return zone or None, host


def request_spec(flavor, image, request, group=None):
    """The scheduler's RequestSpec for an instance record (flavor, image properties, zone/host), its
    server group (``_server_groups.scheduling_info``: policy, max_server_per_host, the other members'
    hosts) and the hosts its earlier builds failed on (the retry record: never tried again)."""
    zone, host = parse_availability_zone(request.get("availability_zone"))
    group = group or {}
    return _scheduler.RequestSpec(
        # boot from volume: the root disk is a volume, not the host's local disk (Nova requests no root_gb then)
        vcpus=flavor.vcpus, memory_mb=flavor.ram_mb, root_gb=0 if request.get("boot_from_volume") else flavor.disk_gb,
        flavor_extra_specs=flavor.extra_specs or {},
        image_properties=(image.properties if image is not None else None) or {},
        availability_zone=zone, force_host=("%s:%s" % (zone or "", host)) if host else None,
        group_policy=group.get("policy"), group_hosts=group.get("hosts") or [],
        max_server_per_host=group.get("max_server_per_host") or 1,
        tried_hosts=_faults.retry_of(request)["hosts"] if request.get("retry") else [])


def scheduling_request(conn, row, with_group=True):
    """The RequestSpec of instance record ``row`` for nova-scheduler, read from the DB once: its flavor and
    image (ImagePropertiesFilter reads the image's hw_architecture / img_hv_type /
    img_hv_requested_version, ComputeCapabilitiesFilter the flavor's extra_specs, TraitsFilter and
    AggregateFilter their trait:NAME and member_of), an admin's availability_zone=ZONE:HOST as the forced
    host, its server group (the ServerGroup* filters and weighers) and the retry record (RetryFilter).
    Returns (spec, the group's scheduling info or None). Raises InvalidRequest. ``with_group=False``: the
    spec without the group (a reschedule's claim re-checks the group's policy itself)."""
    flavor = get_flavor(conn, row.flavor_id)
    image = _images.image_record(conn, row.image_id) if row.image_id else None
    group = _server_groups.scheduling_info(conn, row.uuid) if with_group else None
    try:
        return request_spec(flavor, image, row.request, group), group
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from exc


def _check_same_request(conn, auth, existing, flavor_ref, image_ref, network_refs, volume_size_gb, boot_from_volume,
                        root_volume_size_gb, server_group, key_name=None):
    """A create for a name that exists: the same request is a no-op, another one a Conflict.

    Compared with what the instance was created from, whatever became of it since: its image deactivated,
    no longer shared with the project or deleted, the quota used up, the group gone - a re-run of
    boot.yml for an existing instance must still converge, not fail on checks that only a new instance
    has to pass."""
    req = existing.request
    flavor = get_flavor(conn, flavor_ref)
    # a rebuilt instance still answers to the images it was created (or rebuilt) from
    had = [existing.image_id] + list(req.get("previous_images") or [])
    booted = [getattr(_images.image_record(conn, i), "name", None) for i in had]
    networks = [_networking.find_network(conn, ref).id for ref in network_refs]
    root_gb = ((root_volume_size_gb if root_volume_size_gb is not None else flavor.disk_gb) or 0) if boot_from_volume else 0
    joined = _server_groups.membership(conn, existing.uuid)
    group = _server_groups.find_group(conn, server_group, auth) if server_group else None
    # a resized instance still answers to the flavors it had (and to the one it has now)
    flavors = [req.get("flavor"), get_flavor(conn, existing.flavor_id).name] + list(req.get("previous_flavors") or [])
    if flavor.name not in flavors or image_ref not in had + booted \
            or req.get("networks") != networks or req.get("volume_size_gb", 0) != (volume_size_gb or 0) \
            or req.get("root_volume_size_gb", 0) != root_gb \
            or (joined.id if joined else None) != (group.id if group else None) \
            or (req.get("key_name") or None) != (key_name or None):
        raise Conflict("Instance %s already exists (%s) with a different flavor/image/networks/volume/root volume/"
                       "server group/key_name; delete it first or pick another name." % (existing.name, existing.uuid))


def create(db, auth, name, flavor_ref, image_ref, network_refs, volume_size_gb, user_data, check_mode, **options):
    """nova-api create: returns (changed, instance row). Nothing is written unless all checks pass.

    ``options``: those of ``create_in``."""
    with db.tx() as conn:
        return create_in(conn, auth, name, flavor_ref, image_ref, network_refs, volume_size_gb, user_data, check_mode,
                         **options)


def create_in(conn, auth, name, flavor_ref, image_ref, network_refs, volume_size_gb, user_data, check_mode,
              volume_delete_on_termination=True, availability_zone=None, boot_from_volume=False,
              root_volume_size_gb=None, root_volume_delete_on_termination=True, server_group=None,
              key_name=None, fixed_ips=None, request_extra=None):
    """``create`` inside the caller's transaction ``conn`` (a multi-create records its whole list in one).

    ``server_group`` (name or ID; Nova's scheduler hint ``group``): the instance joins that group, in the
    same transaction; an unknown group, another project's group or a full group refuses the request.
    ``fixed_ips``: {network name or ID: IP} (Nova's ``--nic net-id=...,v4-fixed-ip=...``), checked now
    and kept in the request for the port step. ``request_extra``: more keys of the stored request (the
    multi-create's reservation, the server's metadata).
    ``key_name``: the caller's key pair, copied into the request (``key_name``, ``public_keys``) as Nova copies
    its key_data into the instance: deleting the key pair later does not change the instance."""
    enforce(auth, "compute:create")
    if fixed_ips:
        enforce(auth, _networking.FIXED_IP_RULE)   # a chosen address is an admin's (Neutron's policy), before anything else
    validate_name("instance", name)
    if not network_refs:
        raise InvalidRequest("At least one network is required.")
    if parse_availability_zone(availability_zone)[1]:
        enforce(auth, "compute:force_host")  # naming the host is an admin's privilege, as in Nova
    if volume_size_gb is not None and not 0 <= volume_size_gb <= MAX_VOLUME_GB:
        raise InvalidRequest("volume_size_gb must be between 0 and %d, got %d." % (MAX_VOLUME_GB, volume_size_gb))
    too_large = user_data_problem(user_data) if user_data is not None else None
    if too_large:
        raise InvalidRequest(too_large + ".")
    inst, vols = _db.table("instances"), _db.table("volumes")
    # one create per project at a time: the name check and the quota check hold until commit
    _db.lock(conn, "project:%s" % auth.project_id)
    existing = instances.find_instance(conn, name, auth)
    if existing is not None:
        _check_same_request(conn, auth, existing, flavor_ref, image_ref, network_refs, volume_size_gb,
                            boot_from_volume, root_volume_size_gb, server_group, key_name)
        return False, existing
    flavor = get_flavor(conn, flavor_ref)
    image = _images.find_image(conn, image_ref, auth)
    _images.check_bootable(image, flavor)
    root_gb = root_volume_size(flavor, image, boot_from_volume, root_volume_size_gb)
    networks = []
    for ref in network_refs:
        net = _networking.find_network(conn, ref)
        _networking.network_subnet(conn, net.id)
        networks.append(net)
    request = _request_of(flavor, image, networks, volume_size_gb, user_data, availability_zone, root_gb)
    if fixed_ips:
        request["fixed_ips"] = _requested_fixed_ips(conn, networks, fixed_ips)
    request.update(request_extra or {})
    group = _server_groups.group_for_create(conn, server_group, auth) if server_group else None
    _quota.check(conn, auth.project_id, {
        "instances": 1, "cores": flavor.vcpus, "ram": flavor.ram_mb,
        "volumes": (1 if volume_size_gb else 0) + (1 if root_gb else 0),
        "gigabytes": (volume_size_gb or 0) + root_gb, "server_group_members": 1 if group else 0},
        group_members=_server_groups.count_members(conn, group.id) if group else None)
    if key_name:
        request.update(key_name=key_name, public_keys=[_keypairs.public_key_for(conn, auth, key_name)])
    if check_mode:
        return True, None
    uuid = _db.new_id()
    conn.execute(inst.insert().values(
        uuid=uuid, name=name, project_id=auth.project_id, user_id=auth.user_id, flavor_id=flavor.id,
        image_id=image.id, vm_state=instances.BUILDING, task_state=instances.SCHEDULING, power_state="NOSTATE",
        request=request, created_at=_db.now(), updated_at=_db.now(), deleted=0))
    if group is not None:
        _server_groups.join(conn, group, uuid)
    if volume_size_gb:
        # the block device mapping: a blank volume the compute side creates and attaches as vdb
        vid = _db.new_id()
        conn.execute(vols.insert().values(
            id=vid, name="volume-%s" % vid, project_id=auth.project_id, size_gb=volume_size_gb,
            status="creating", pool="bootflow", instance_uuid=uuid, device="vdb",
            delete_on_termination=volume_delete_on_termination, created_at=_db.now()))
    if root_gb:
        # the boot volume (bootindex 0): created on the host from the image, the domain's vda
        rid = _db.new_id()
        conn.execute(vols.insert().values(
            id=rid, name="volume-%s" % rid, project_id=auth.project_id, size_gb=root_gb,
            status="creating", pool="bootflow", instance_uuid=uuid, device="vda",
            delete_on_termination=root_volume_delete_on_termination, created_at=_db.now()))
    return True, conn.execute(inst.select().where(inst.c.uuid == uuid)).first()


def _requested_fixed_ips(conn, networks, fixed_ips):
    """{network ID: IP} of a request's fixed IPs, each on one of its ``networks``, inside the subnet and free."""
    by_id = {}
    for ref, ip in fixed_ips.items():
        net = _networking.find_network(conn, ref)
        if net.id not in {n.id for n in networks}:
            raise InvalidRequest("Fixed IP %s is for network %s, which the instance is not on." % (ip, net.name))
        by_id[net.id] = ip
    _networking.check_fixed_ips(conn, None, by_id)
    return by_id


# --- the other requests on an instance record ---------------------------------------------------------

def set_error(db, auth, ref, fault, check_mode):
    """Put the instance in ERROR with ``fault`` (Nova's reset-state to error). Returns (changed, row)."""
    with db.tx() as conn:
        row = instances.get_instance(conn, ref, auth)
        enforce(auth, "compute:set_error")
        if row.vm_state == instances.ERROR:
            return False, row
        if check_mode:
            return True, row
        instances.set_fault(conn, row.uuid, fault, "boot", row.host)
        return True, instances.get_instance(conn, row.uuid, auth)


def delete(db, auth, ref, check_mode):
    """nova-api's delete of the record, last (delete.yml: the compute side removed everything, the ports and
    the claim were released). Volumes that never reached a host go with it, kept volumes are detached;
    anything else still held refuses the delete. Returns (changed, row or None when absent already or not
    visible to the caller)."""
    with db.tx() as conn:
        row = instances.find_instance(conn, ref, auth)
        if row is None:
            return False, None
        enforce(auth, "compute:delete")
        leftovers = []
        if _placement.existing_allocation(conn, row.uuid) is not None:
            leftovers.append("allocation")
        if _networking.instance_ports(conn, row.uuid):
            leftovers.append("ports")
        for vol in _volumes.instance_volumes(conn, row.uuid):
            if vol.host is None and vol.status in ("creating", "attaching"):
                if not check_mode:  # never reached a host: nothing to remove there
                    _volumes.set_status(conn, vol.id, "deleted", instance_uuid=None, device=None)
            elif not vol.delete_on_termination and vol.status in ("available", "attaching"):
                if not check_mode:  # kept volume: detached, free for another instance
                    _volumes.set_status(conn, vol.id, "available", instance_uuid=None, device=None)
            else:
                leftovers.append("volume %s (%s)" % (vol.name, vol.status))
        if leftovers:
            raise Conflict("Instance %s still holds %s; run playbooks/delete.yml, which releases them first."
                           % (row.name, ", ".join(leftovers)))
        if not check_mode:
            instances.soft_delete(conn, row.uuid)
        return True, row


def list_servers(db, auth, all_projects=False, statuses=()):
    """nova-api's GET /servers/detail: the caller's project's live instances (with ``all_projects``, an
    admin's view of every project's), by name, optionally only those in one of ``statuses`` (ACTIVE,
    BUILD, ERROR). Each is the instance record (``instance_dict``) with its flavor's and image's names,
    its server group's name and its ports (network name, IP, MAC)."""
    enforce(auth, "compute:get_all")
    if all_projects:
        enforce(auth, "compute:get_all_tenants")
    inst = _db.table("instances")
    query = inst.select().where(inst.c.deleted == 0).order_by(inst.c.name, inst.c.created_at)
    if not all_projects:
        query = query.where(inst.c.project_id == auth.project_id)
    wanted = {s.upper() for s in statuses}
    out = []
    with db.tx() as conn:
        flavors = {f.id: f.name for f in conn.execute(_db.table("flavors").select())}
        for row in conn.execute(query).fetchall():
            server = instances.instance_dict(row)
            if wanted and server["status"] not in wanted:
                continue
            server.pop("request", None)
            server["metadata"] = (row.request or {}).get("metadata") or {}
            image = _images.image_record(conn, row.image_id) if row.image_id else None
            group = _server_groups.membership(conn, row.uuid)
            server.update(flavor=flavors.get(row.flavor_id), image=image.name if image is not None else row.image_id,
                          server_group=group.name if group is not None else None,
                          ports=[{k: p[k] for k in ("id", "network_id", "network_name", "ip", "mac")}
                                 for p in (_networking.port_spec(conn, r) for r in _networking.instance_ports(conn, row.uuid))])
            out.append(server)
    return out
