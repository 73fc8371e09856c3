# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's snapshot of an instance's root disk on its host (the libvirt driver's ``snapshot``): a
self-contained qcow2 copy of the disk, written into the instance directory for the controller to upload.

PRIVATE to the collection: may change at any time. No ansible imports (see virt.py).

How the disk is copied:

- A running or paused guest: libvirt's backup job (push mode, full; ``virDomainBackupBegin``). QEMU writes the
  disk as it was when the job started into the target while the guest keeps running: a block the guest
  overwrites meanwhile is copied first (copy-before-write). The copy is crash-consistent, like Nova's live
  snapshot, and the guest neither stops nor notices. Nova gets there in two steps (a shallow ``blockRebase``
  into a new overlay, then ``qemu-img convert``); the backup job is the one libvirt offers for this since 7.2,
  and a single job is a single thing to abort.
- A guest that is not running (stopped, or suspended to a managed save): ``qemu-img convert`` of the overlay
  (Nova's cold snapshot). It flattens the overlay onto its base image: the result has no backing file.

The copy is written under a temporary name and renamed when complete, so a copy that exists is whole. The
state ``absent`` removes it (the controller does once it holds the file).
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import seconds_option
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    domain_state_name,
    err_msg,
    libvirt,
    lookup_domain,
)

SNAPSHOT_FILE = "snapshot.qcow2"
DEFAULT_TIMEOUT = 600      # seconds a live copy may take before its job is aborted
POLL = 0.1


def snapshot_path(instances_path, instance_uuid):
    """Where the host puts the snapshot of an instance's root disk (its instance directory)."""
    return os.path.join(layout.instance_dir(instances_path, instance_uuid), SNAPSHOT_FILE)


def root_disk_target(xml, disk_path):
    """The target (``vda``) of the domain's disk whose source file is ``disk_path``; None when the domain has no
    such disk (the root disk is a volume, or not this instance's)."""
    for disk in ET.fromstring(xml).findall("./devices/disk"):
        source, target = disk.find("source"), disk.find("target")
        if disk.get("device", "disk") == "disk" and source is not None and target is not None \
                and source.get("file") == disk_path:
            return target.get("dev")
    return None


def backup_xml(target, dest):
    """A push-mode full backup of disk ``target`` alone into the qcow2 file ``dest``."""
    root = ET.Element("domainbackup", mode="push")
    disks = ET.SubElement(root, "disks")
    disk = ET.SubElement(disks, "disk", name=target, backup="yes", type="file")
    ET.SubElement(disk, "target", file=dest)
    ET.SubElement(disk, "driver", type="qcow2")
    return ET.tostring(root, encoding="unicode")


def _job_running(dom):
    try:
        return dom.jobStats(0).get("type", libvirt.VIR_DOMAIN_JOB_NONE) != libvirt.VIR_DOMAIN_JOB_NONE
    except libvirt.libvirtError:
        return False


def _live_copy(dom, target, part, timeout):
    """libvirt's backup job of disk ``target`` into ``part``; waits for it (BootflowError after ``timeout`` s, the
    job aborted)."""
    try:
        dom.backupBegin(backup_xml(target, part), None, 0)
    except libvirt.libvirtError as e:
        raise BootflowError("cannot start the backup job of domain %s: %s" % (dom.name(), err_msg(e)))
    deadline = time.monotonic() + timeout
    while _job_running(dom):
        if time.monotonic() > deadline:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                pass
            raise BootflowError("the snapshot of domain %s did not finish within %d s (job aborted)"
                                % (dom.name(), timeout))
        time.sleep(POLL)
    stats = dom.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
    if not stats.get("success", False):
        raise BootflowError("the backup job of domain %s failed: %s" % (dom.name(), stats.get("errmsg") or stats))


def _cold_copy(run, qemu_img, disk, part):
    rc, out, err = run([qemu_img, "convert", "-f", "qcow2", "-O", "qcow2", disk, part])
    if rc != 0:
        raise BootflowError("qemu-img convert of %s failed (rc=%s): %s" % (disk, rc, (err or out).strip()))


def snapshot_step(conn, p, run, check_mode=False, qemu_img="qemu-img"):
    """p: instance_uuid, instances_path, state (present or absent), timeout. ``run``: command.run_argv.

    Returns changed, path, state (libvirt's), method (live or cold), size (bytes of the copy)."""
    uuid = p["instance_uuid"]
    path = snapshot_path(p["instances_path"], uuid)
    part = path + ".part"
    result = dict(changed=False, path=path, method=None, size=None)
    if p.get("state") == "absent":
        stale = [f for f in (path, part) if os.path.lexists(f)]
        result["changed"] = bool(stale)
        if not check_mode:
            for f in stale:
                os.unlink(f)
        return result

    name = layout.domain_name(uuid)
    dom = lookup_domain(conn, name)
    if dom is None:
        raise BootflowError("domain %s does not exist on this host: nothing to snapshot." % name, state="absent")
    state = domain_state_name(dom)
    disk = os.path.join(layout.instance_dir(p["instances_path"], uuid), "disk")
    live = bool(dom.isActive())
    target = root_disk_target(dom.XMLDesc(0), disk)
    if target is None:
        raise BootflowError("domain %s has no root disk %s (an instance that boots from a volume is snapshotted "
                            "as a volume, not here)." % (name, disk), state=state)
    result.update(state=state, method="live" if live else "cold", changed=True)
    if check_mode:
        return result
    if _job_running(dom):
        # a job left by an earlier run that died: ours, as nothing else runs jobs on bootflow's domains
        dom.abortJob()
    for f in (path, part):
        if os.path.lexists(f):
            os.unlink(f)
    try:
        if live:
            _live_copy(dom, target, part, seconds_option(p, "timeout", DEFAULT_TIMEOUT))
        else:
            _cold_copy(run, qemu_img, disk, part)
        os.rename(part, path)
    except BaseException:
        if os.path.lexists(part):
            os.unlink(part)
        raise
    result["size"] = os.path.getsize(path)
    result["state"] = domain_state_name(dom)
    return result
