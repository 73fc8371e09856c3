# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's rebuild on the host, first half (the manager's _rebuild_default_impl before its spawn): the
guest is powered off and its old root disk and config drive are removed. The domain stays defined, with its
volumes and MACs, and the console log stays (the new boot is appended to it). image_fetch, config_drive and
domain then spawn the new image as a build does.

PRIVATE to the collection: may change at any time. No ansible imports (see virt.py).
"""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import seconds_option
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import (
    DEFAULT_SHUTDOWN_TIMEOUT,
    has_managed_save,
    power_off,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    ACTIVE_STATES,
    domain_state_name,
    lookup_domain,
)

# what the old image made in the instance directory (image_fetch's overlay, config_drive's ISO)
ROOT_FILES = ("disk", "disk.config")


def rebuild_step(conn, p, check_mode=False):
    """p: instance_uuid, instances_path, shutdown_timeout. Returns changed, state (libvirt's after), forced,
    removed (the paths), warnings."""
    uuid = p["instance_uuid"]
    timeout = seconds_option(p, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
    name = layout.domain_name(uuid)
    dom = lookup_domain(conn, name)
    if dom is None:
        raise BootflowError("domain %s does not exist on this host: nothing to rebuild (a build that never reached "
                            "the domain step is deleted, not rebuilt)." % name, state="absent")
    inst_dir = layout.instance_dir(p["instances_path"], uuid)
    paths = [os.path.join(inst_dir, f) for f in ROOT_FILES if os.path.lexists(os.path.join(inst_dir, f))]
    state = domain_state_name(dom)
    saved = has_managed_save(dom)
    result = dict(changed=bool(paths) or state in ACTIVE_STATES or saved, name=name, state=state, forced=False,
                  removed=paths, warnings=[])
    if check_mode or not result["changed"]:
        if check_mode:
            result["state"] = "shutoff"
        return result
    power_off(dom, timeout, result)
    if has_managed_save(dom):
        dom.managedSaveRemove(0)
    for path in paths:
        os.unlink(path)
    result["state"] = domain_state_name(dom)
    return result
