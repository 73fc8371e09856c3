# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-conductor: the instance spec the compute side builds from (Nova's build request: flavor,
image, ports, volumes, retry record, claim, step log), and what it resets after a failed build. The
reschedule itself is in reschedule.py.

PRIVATE to the collection: may change at any time. Controller side only.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.layout import INSTANCES_PATH, console_log_path
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import user_data_summary
from ansible_collections.bootflow.cloud.plugins.plugin_utils import db as _db
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import api as _compute_api
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import faults as _faults
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.image import registry as _images
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import enforce
from ansible_collections.bootflow.cloud.plugins.plugin_utils.network import api as _networking


def instance_spec(db, auth, ref, missing_ok=False):
    """The caller's instance ``ref`` and its spec: (row, spec), or (None, None) when it does not exist and
    ``missing_ok`` (else NotFound)."""
    enforce(auth, "compute:get")
    with db.tx() as conn:
        row = instances.find_instance(conn, ref, auth)
        if row is None:
            if missing_ok:
                return None, None
            instances.get_instance(conn, ref, auth)  # raises NotFound with the usual message
        return row, spec(conn, row)


def spec(conn, row):
    """The conductor's answer: everything the compute side needs, from the controller's DB."""
    flavor = _compute_api.get_flavor(conn, row.flavor_id)
    image = _images.image_record(conn, row.image_id)
    vols = _db.table("volumes")
    out = instances.instance_dict(row)
    out.pop("request", None)
    # the user data may hold secrets: only its size and digest (the config drive step reads it from the DB)
    out["user_data_size"], out["user_data_sha256"] = user_data_summary(row.request.get("user_data"))
    out["metadata"] = row.request.get("metadata") or {}
    # the key pair's public key as nova-api copied it at create (the config drive's public-keys)
    out["key_name"] = row.request.get("key_name")
    out["public_keys"] = list(row.request.get("public_keys") or [])
    # where the host that built it put the console log (the default layout before any build got that far)
    out["console_log"] = row.request.get("console_log") or console_log_path(INSTANCES_PATH, row.uuid)
    out["flavor"] = {"name": flavor.name, "vcpus": flavor.vcpus, "ram_mb": flavor.ram_mb, "disk_gb": flavor.disk_gb,
                     "extra_specs": flavor.extra_specs}
    out["image"] = None if image is None else {
        k: getattr(image, k) for k in ("id", "name", "disk_format", "container_format", "size", "virtual_size",
                                       "checksum", "os_hash_algo", "os_hash_value", "min_disk", "min_ram")}
    out["ports"] = [_networking.port_spec(conn, p) for p in _networking.instance_ports(conn, row.uuid)]
    out["volumes"] = [_db.row_dict(v) for v in conn.execute(
        vols.select().where(vols.c.instance_uuid == row.uuid, vols.c.status != "deleted").order_by(vols.c.device))]
    # boot from volume: the vda volume is the root disk (made from the image), the rest are data volumes
    out["boot_from_volume"] = bool(row.request.get("boot_from_volume"))
    out["root_volume"] = next((v for v in out["volumes"] if v["device"] == "vda"), None) \
        if out["boot_from_volume"] else None
    out["data_volumes"] = [v for v in out["volumes"] if out["root_volume"] is None or v["id"] != out["root_volume"]["id"]]
    # the reschedule bookkeeping (Nova's RequestSpec.retry): attempts so far, hosts tried, each failure
    out["retry"] = _faults.retry_of(row.request) if (row.request or {}).get("retry") else None
    alloc = _placement.existing_allocation(conn, row.uuid)
    out["allocation"] = None if alloc is None else {"host": alloc.hostname, "vcpus": alloc.vcpus,
                                                    "memory_mb": alloc.memory_mb, "disk_gb": alloc.disk_gb}
    steps = _db.table("instance_steps")
    out["steps"] = [_db.row_dict(s) for s in conn.execute(
        steps.select().where(steps.c.instance_uuid == row.uuid).order_by(steps.c.id))]
    return out


# --- a failed build: what the conductor resets before a reschedule or ERROR ------------------------

def save_retry(conn, uuid, retry):
    """Keep the retry bookkeeping in the instance's request (survives a crash and a re-run)."""
    instances.update_request(conn, uuid, retry=retry)


def reset_build_volumes(conn, uuid):
    """The failed build's volumes (and their attachments) go back to what nova-api wrote: status
    ``creating``, no host, the device kept. Their pool volumes were removed from the failed host by
    the compute role's undo; the next host creates them again. Returns the names reset."""
    vols = _db.table("volumes")
    rows = conn.execute(vols.select().where(vols.c.instance_uuid == uuid, vols.c.status != "deleted")).fetchall()
    changed = [r.name for r in rows if r.status != "creating" or r.host is not None]
    if changed:
        conn.execute(vols.update().where(vols.c.instance_uuid == uuid, vols.c.status != "deleted")
                     .values(status="creating", host=None, updated_at=_db.now()))
    return changed
