# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt-python on the hypervisor host: the connection, lookups, waits, storage pools and the
undo log every libvirt step uses. The steps themselves live in domain.py, volume.py and
compute_node.py; pure XML logic in virt_xml.py.

PRIVATE to the collection: may change at any time. No ansible imports: the module files pass plain
parameter dicts in and turn the returned dicts (or a raised BootflowError) into exit_json/fail_json.
"""

from __future__ import annotations

import os
import threading
import time
import traceback

from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import check_pool_name, dir_pool_xml, disk_uses, pool_path, volume_format
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import finish

try:
    import libvirt
    HAS_LIBVIRT = True
    LIBVIRT_IMPORT_ERROR = None
except ImportError:
    libvirt = None
    HAS_LIBVIRT = False
    LIBVIRT_IMPORT_ERROR = traceback.format_exc()

GIB = 1024 ** 3

STATE_NAMES = {
    0: "nostate",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutdown",      # being shut down
    5: "shutoff",
    6: "crashed",
    7: "pmsuspended",
}
ACTIVE_STATES = ("running", "blocked", "paused", "shutdown", "pmsuspended")


def err_msg(e):
    if libvirt is not None and isinstance(e, libvirt.libvirtError):
        return e.get_error_message() or str(e)
    return str(e)


def err_code(e):
    try:
        return e.get_error_code()
    except Exception:
        return None


class Undo:
    """Records what a call made, to take it back in reverse order when a later step fails."""

    def __init__(self):
        self._steps = []

    def push(self, what, fn, *args):
        self._steps.append((what, fn, args))

    def run(self):
        failed = []
        while self._steps:
            what, fn, args = self._steps.pop()
            try:
                fn(*args)
            except Exception as e:  # keep undoing the rest
                failed.append("%s: %s" % (what, err_msg(e)))
        return failed

    def fail(self, msg, **result):
        failed = self.run()
        if failed:
            msg += " (cleanup also failed: %s)" % "; ".join(failed)
        raise BootflowError(msg, **result)


# --------------------------------------------------------------------------------------------
# connection and lookups

_EVENT_LOOP = []


def _start_event_loop():
    """qemu:///embed runs the driver in-process and needs an event loop to start domains."""
    if _EVENT_LOOP:
        return
    libvirt.virEventRegisterDefaultImpl()

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    t = threading.Thread(target=run, name="libvirt-event-loop", daemon=True)
    t.start()
    _EVENT_LOOP.append(t)


def connect(uri, retries=3, delay=1.0):
    """Open a read-write libvirt connection, retrying a few times (the daemon may be starting)."""
    if libvirt is None:
        raise BootflowError("libvirt-python is not installed")
    # libvirt prints every error to stderr by default; we report them ourselves.
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    if uri and uri.startswith("qemu:///embed"):
        _start_event_loop()
    last = None
    for attempt in range(retries + 1):
        try:
            conn = libvirt.open(uri)
            if conn is not None:
                return conn
        except libvirt.libvirtError as e:
            last = e
        if attempt < retries:
            time.sleep(delay)
    raise BootflowError("cannot connect to libvirt at %s (%d attempts): %s. Is libvirtd running and is "
                        "the URI right?" % (uri, retries + 1, err_msg(last) if last else "no connection"))


def lookup_domain(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if err_code(e) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def lookup_domain_by_uuid(conn, uuid):
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as e:
        if err_code(e) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def domain_state_name(dom):
    if dom is None:
        return "absent"
    state = dom.state()[0]
    return STATE_NAMES.get(state, "unknown")


def wait_for_state(dom, predicate, timeout, interval=0.2):
    """Poll the domain state until predicate(state_name) is true. Returns (ok, last_state_name)."""
    deadline = time.monotonic() + max(0, timeout)
    while True:
        name = domain_state_name(dom)
        if predicate(name):
            return True, name
        if time.monotonic() >= deadline:
            return False, name
        time.sleep(interval)


def inactive_xml(dom):
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if dom.isPersistent() else 0
    return dom.XMLDesc(flags)


# --------------------------------------------------------------------------------------------
# pools and volumes


def lookup_pool(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as e:
        if err_code(e) == libvirt.VIR_ERR_NO_STORAGE_POOL:
            return None
        raise


def ensure_dir_pool(conn, name, path, check_mode=False, undo=None):
    """Make sure dir pool `name` at `path` is defined, built, active and autostarted.

    Returns (pool or None in check mode when missing, changed, actions list).
    """
    check_pool_name(name)
    actions = []
    pool = lookup_pool(conn, name)
    if pool is not None:
        have = pool_path(pool.XMLDesc(0))
        if have and os.path.normpath(have) != os.path.normpath(path):
            raise BootflowError("storage pool %s already exists with path %s, not %s" % (name, have, path))
    if pool is None:
        actions.append("define pool %s at %s" % (name, path))
        if check_mode:
            return None, True, actions
        existed = os.path.isdir(path)
        pool = conn.storagePoolDefineXML(dir_pool_xml(name, path), 0)
        if undo is not None:
            undo.push("undefine pool %s" % name, pool.undefine)
        pool.build(0)
        if undo is not None and not existed:
            undo.push("remove directory %s" % path, _rmdir_if_empty, path)
    if not pool.isActive():
        actions.append("start pool %s" % name)
        if not check_mode:
            pool.create(0)
            if undo is not None:
                undo.push("stop pool %s" % name, pool.destroy)
    if not pool.autostart():
        actions.append("autostart pool %s" % name)
        if not check_mode:
            pool.setAutostart(1)
            if undo is not None:
                undo.push("autostart off for pool %s" % name, pool.setAutostart, 0)
    return pool, bool(actions), actions


def _rmdir_if_empty(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def lookup_volume(pool, name):
    if pool is None or not pool.isActive():
        return None
    try:
        pool.refresh(0)
    except libvirt.libvirtError:
        pass
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as e:
        if err_code(e) == libvirt.VIR_ERR_NO_STORAGE_VOL:
            return None
        raise


def volume_info(vol):
    _type, capacity, allocation = vol.info()
    return dict(path=vol.path(), capacity_bytes=capacity, allocation_bytes=allocation,
                format=volume_format(vol.XMLDesc(0)))


def domains_using(conn, path, pool_name=None, vol_name=None):
    """[(dom, [devs], active)] of all domains whose live or persistent XML references the volume."""
    out = []
    for dom in conn.listAllDomains(0):
        devs = set()
        active = dom.isActive()
        try:
            xmls = [dom.XMLDesc(0)]
            if active and dom.isPersistent():
                xmls.append(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError:
            continue  # vanished meanwhile
        for xml in xmls:
            devs.update(disk_uses(xml, path=path, pool=pool_name, volume=vol_name))
        if devs:
            out.append((dom, sorted(devs), active))
    return out


def run_libvirt_step(module, step, describe):
    """Connect to ``module.params['uri']``, run ``step(conn)`` and exit the module with its result."""
    def run():
        conn = connect(module.params["uri"])
        try:
            return step(conn)
        finally:
            conn.close()
    finish(module, run, describe)
