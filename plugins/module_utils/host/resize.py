# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's resize on the host (the libvirt driver's migrate_disk_and_power_off, confirm_migration and
finish_revert_migration, for a resize that stays on its host).

- ``resized``: the guest is powered off (an ACPI shutdown, then a power off after the timeout), and its root disk,
  config drive and domain definition are copied into ``<uuid>_resize`` beside the instance directory. The copy is
  made under a ``.part`` name and renamed when whole, so a re-run after a crash either finds it whole or makes it
  again. The instance directory keeps its files: image_fetch grows the root disk to the new flavor, then the
  domain is defined with the new flavor and started, as at a spawn.
- ``confirmed``: the kept copy is removed.
- ``reverted``: the guest is powered off at once (its new flavor is thrown away), the kept root disk and config
  drive go back into the instance directory, the old definition is defined again, and the guest is started when
  ``power_on``. Then the copy is removed.

PRIVATE to the collection: may change at any time. No ansible imports (see virt.py).
"""

from __future__ import annotations

import os
import shutil

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import seconds_option
from ansible_collections.bootflow.cloud.plugins.module_utils.host.command import run_argv
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    has_managed_save,
    power_off,
    start,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    ACTIVE_STATES,
    domain_state_name,
    err_msg,
    inactive_xml,
    libvirt,
    lookup_domain,
)

# what a resize keeps: the root disk (image_fetch's overlay) and the config drive, with the domain's definition
KEPT_FILES = ("disk", "disk.config")
DOMAIN_XML = "domain.xml"
STATES = ("resized", "confirmed", "reverted")


def resize_step(conn, p, check_mode=False):
    """p: instance_uuid, instances_path, state (resized|confirmed|reverted), shutdown_timeout, power_on,
    wait_timeout. Returns changed, state (libvirt's after), forced, kept (the files kept aside), warnings."""
    if p["state"] not in STATES:
        raise BootflowError("state must be one of %s, got %r" % (", ".join(STATES), p["state"]))
    uuid = p["instance_uuid"]
    name = layout.domain_name(uuid)
    dom = lookup_domain(conn, name)
    inst_dir = layout.instance_dir(p["instances_path"], uuid)
    kept_dir = layout.resize_dir(p["instances_path"], uuid)
    result = dict(changed=False, name=name, state=domain_state_name(dom), forced=False, kept=[], warnings=[],
                  resize_dir=kept_dir)
    if p["state"] == "confirmed":
        if os.path.lexists(kept_dir):
            result["changed"] = True
            if not check_mode:
                shutil.rmtree(kept_dir)
        return result
    if p["state"] == "reverted":
        return _revert(conn, dom, p, inst_dir, kept_dir, result, check_mode)
    if dom is None:
        raise BootflowError("domain %s does not exist on this host: nothing to resize." % name, state="absent")
    timeout = seconds_option(p, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
    whole = os.path.isfile(os.path.join(kept_dir, DOMAIN_XML))
    result["kept"] = [os.path.join(kept_dir, f) for f in KEPT_FILES + (DOMAIN_XML,)
                      if whole and os.path.lexists(os.path.join(kept_dir, f))]
    active = result["state"] in ACTIVE_STATES or has_managed_save(dom)
    result["changed"] = active or not whole
    if check_mode or not result["changed"]:
        if check_mode:
            result["state"] = "shutoff"
        return result
    power_off(dom, timeout, result)
    if has_managed_save(dom):
        dom.managedSaveRemove(0)
    if not whole:
        result["kept"] = _keep(dom, inst_dir, kept_dir)
    result["state"] = domain_state_name(dom)
    return result


def _keep(dom, inst_dir, kept_dir):
    """Copy the root disk, the config drive and the definition into ``kept_dir`` (via ``<kept_dir>.part``)."""
    part = kept_dir + ".part"
    if os.path.lexists(part):
        shutil.rmtree(part)
    os.makedirs(part, mode=0o700)
    for f in KEPT_FILES:
        src = os.path.join(inst_dir, f)
        if not os.path.lexists(src):
            continue
        # sparse, as the overlay is: a copy of a grown disk must not fill the host
        rc, out, err = run_argv(["cp", "--sparse=always", "--preserve=mode,timestamps", src, os.path.join(part, f)])
        if rc != 0:
            shutil.rmtree(part)
            raise BootflowError("cannot keep %s for the resize (cp rc=%s): %s" % (src, rc, (err or out).strip()))
    with open(os.path.join(part, DOMAIN_XML), "w") as f:
        f.write(inactive_xml(dom))
    os.rename(part, kept_dir)
    return sorted(os.path.join(kept_dir, f) for f in os.listdir(kept_dir))


def _revert(conn, dom, p, inst_dir, kept_dir, result, check_mode):
    xml_path = os.path.join(kept_dir, DOMAIN_XML)
    if not os.path.isfile(xml_path):
        # nothing kept: the resize never got past the power off (or a revert already finished): the instance
        # directory is what it was; only the guest's power is put back
        result["kept"] = []
        return _power_back(dom, p, result, check_mode)
    result.update(changed=True, kept=[os.path.join(kept_dir, f) for f in sorted(os.listdir(kept_dir))])
    if check_mode:
        result["state"] = "running" if p.get("power_on") else "shutoff"
        return result
    if dom is not None:
        power_off(dom, 0, result)      # the new flavor's guest is thrown away, as the libvirt driver's destroy does
    if dom is not None and has_managed_save(dom):
        dom.managedSaveRemove(0)
    for f in KEPT_FILES:
        src = os.path.join(kept_dir, f)
        if os.path.lexists(src):
            os.replace(src, os.path.join(inst_dir, f))
    with open(xml_path) as f:
        old_xml = f.read()
    try:
        dom = conn.defineXML(old_xml)
    except libvirt.libvirtError as e:
        raise BootflowError("cannot define domain %s again with its old flavor: %s" % (result["name"], err_msg(e)))
    shutil.rmtree(kept_dir)
    return _power_back(dom, p, result, check_mode)


def _power_back(dom, p, result, check_mode):
    """Start the guest again when ``power_on`` (it ran before the resize) and it does not run."""
    if dom is None:
        raise BootflowError("domain %s does not exist on this host and no definition was kept: nothing to revert."
                            % result["name"], state="absent")
    state = domain_state_name(dom)
    if p.get("power_on") and state not in ("running", "blocked"):
        result["changed"] = True
        if check_mode:
            result["state"] = "running"
            return result
        start(dom, "start (with its old flavor)", True, p["wait_timeout"])
    result["state"] = domain_state_name(dom)
    return result
