# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt-python wrappers and the host-side steps that talk to libvirt.

PRIVATE to the collection: may change at any time.

No ansible imports: the module files pass plain parameter dicts in and turn the returned dicts
(or a raised StepError) into exit_json/fail_json. Pure XML logic lives in _virt.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
import xml.etree.ElementTree as ET

from ansible_collections.bootflow.cloud.plugins.module_utils.host.libvirt_xml import (
    BUS_PREFIX,
    VirtError,
    carry_over,
    check_pool_name,
    check_volume_name,
    choose_virt_type,
    definition_differs,
    dir_pool_xml,
    disk_targets,
    disk_uses,
    disk_xml,
    domain_view,
    domain_xml,
    next_device,
    normalize_disks,
    pool_path,
    validate_spec,
    volume_format,
    volume_xml,
)

from ansible_collections.bootflow.cloud.plugins.module_utils.host.image_cache import safety_check
from ansible_collections.bootflow.cloud.plugins.module_utils.host.step import StepError, finish

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


def _err(e):
    if libvirt is not None and isinstance(e, libvirt.libvirtError):
        return e.get_error_message() or str(e)
    return str(e)


def _code(e):
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
                failed.append("%s: %s" % (what, _err(e)))
        return failed

    def fail(self, msg, **result):
        failed = self.run()
        if failed:
            msg += " (cleanup also failed: %s)" % "; ".join(failed)
        raise StepError(msg, **result)


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
        raise StepError("libvirt-python is not installed")
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
    raise StepError("cannot connect to libvirt at %s (%d attempts): %s. Is libvirtd running and is "
                    "the URI right?" % (uri, retries + 1, _err(last) if last else "no connection"))


def lookup_domain(conn, name):
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if _code(e) == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def lookup_domain_by_uuid(conn, uuid):
    try:
        return conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as e:
        if _code(e) == libvirt.VIR_ERR_NO_DOMAIN:
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


def live_xml(dom):
    return dom.XMLDesc(0) if dom.isActive() else None


def affect_flags(dom, config=True, live=None):
    """AFFECT_CONFIG for persistent domains, plus AFFECT_LIVE when the domain runs."""
    flags = 0
    if config and dom.isPersistent():
        flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    if live is None:
        live = dom.isActive()
    if live:
        flags |= libvirt.VIR_DOMAIN_AFFECT_LIVE
    return flags


def attach(dom, xml, flags=None):
    dom.attachDeviceFlags(xml, affect_flags(dom) if flags is None else flags)


def detach(dom, xml, flags=None):
    dom.detachDeviceFlags(xml, affect_flags(dom) if flags is None else flags)


# --------------------------------------------------------------------------------------------
# pools and volumes


def lookup_pool(conn, name):
    try:
        return conn.storagePoolLookupByName(name)
    except libvirt.libvirtError as e:
        if _code(e) == libvirt.VIR_ERR_NO_STORAGE_POOL:
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
            raise StepError("storage pool %s already exists with path %s, not %s" % (name, have, path))
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
        if _code(e) == libvirt.VIR_ERR_NO_STORAGE_VOL:
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


# --------------------------------------------------------------------------------------------
# compute_node


def compute_node_info(conn, instances_path, cpuinfo_path="/proc/cpuinfo", kvm_path="/dev/kvm"):
    info = conn.getInfo()   # [arch, memory MiB, cpus, mhz, nodes, sockets, cores, threads]
    probe = instances_path
    while probe and not os.path.isdir(probe):
        parent = os.path.dirname(probe.rstrip("/")) or "/"
        if parent == probe:
            break
        probe = parent
    st = os.statvfs(probe or "/")
    try:
        with open(cpuinfo_path) as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    try:
        hostname = conn.getHostname()
    except libvirt.libvirtError:
        hostname = os.uname()[1]
    # getInfo's memory is the sum of the NUMA nodes' MemTotal; on kernels that set up memory lazily
    # (deferred_init=lazy) that is a fraction of the host's memory. The kernel's MemTotal (node stats of
    # all cells) is what the host has (docs/scheduler.md).
    try:
        total_kib = int(conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS).get("total", 0))
    except libvirt.libvirtError:
        total_kib = 0
    return dict(
        hostname=hostname,
        arch=info[0],
        vcpus=int(info[2]),
        memory_mb=max(int(info[1]), total_kib // 1024),
        numa_memory_mb=int(info[1]),
        local_gb=int(st.f_blocks * st.f_frsize // GIB),
        free_disk_gb=int(st.f_bavail * st.f_frsize // GIB),
        hypervisor_type=conn.getType(),
        hypervisor_version=int(conn.getVersion()),
        libvirt_version=int(conn.getLibVersion()),
        virt_type=choose_virt_type("auto", cpuinfo, os.path.exists(kvm_path)),
        kvm_device=os.path.exists(kvm_path),
        running_vms=int(conn.numOfDomains()),
        instances_path=instances_path,
        disk_stat_path=probe,
    )


# --------------------------------------------------------------------------------------------
# volume


def _source_info(p, want):
    """The image file a new volume is made from (source_path): its declared format must match its
    content, no backing/data file, and its virtual size must fit the volume."""
    src, src_fmt = p.get("source_path"), p.get("source_format")
    if not str(src).startswith("/"):
        raise StepError("source_path must be an absolute path")
    if src_fmt not in ("raw", "qcow2"):
        raise StepError("source_format (raw or qcow2) is required with source_path")
    if not os.path.isfile(src):
        raise StepError("source_path %s is not a file on this host" % src)
    if os.path.basename(os.path.dirname(os.path.realpath(src))) != "_base":
        # only the verified image cache, never an arbitrary host file, becomes a volume's content
        raise StepError("source_path %s is not a cached image in an image cache directory (_base)" % src)
    try:
        info = safety_check(src, src_fmt)
    except StepError as e:
        raise StepError("source_path %s refused: %s" % (src, e))
    if info["virtual_size"] > want:
        raise StepError("the volume (%d bytes) is smaller than the image %s (%d bytes virtual size)"
                        % (want, src, info["virtual_size"]), virtual_size=info["virtual_size"])
    return info


def volume_step(conn, p, check_mode=False, run=None, qemu_img="qemu-img"):
    """p: name, pool, pool_path, size_gb, format, state, source_path, source_format.

    With source_path, a volume that does not exist yet is created with the content of that image
    file (``qemu-img convert -n`` into the new pool volume; run(argv) -> (rc, out, err))."""
    try:
        check_volume_name(p["name"])
        check_pool_name(p["pool"])
    except VirtError as e:
        raise StepError(str(e))
    if not str(p["pool_path"]).startswith("/"):
        raise StepError("pool_path must be an absolute path")
    name, pool_name, state = p["name"], p["pool"], p["state"]
    result = dict(changed=False, name=name, pool=pool_name, path=None, capacity_bytes=None,
                  format=None, actions=[])
    if state == "absent":
        pool = lookup_pool(conn, pool_name)
        vol = lookup_volume(pool, name) if pool is not None else None
        if vol is None:
            return result
        info = volume_info(vol)
        users = domains_using(conn, info["path"], pool_name, name)
        if users:
            raise StepError("volume %s is in use by domain(s) %s; detach it first"
                            % (name, ", ".join("%s (%s)" % (d.name(), ",".join(devs)) for d, devs, _a in users)),
                            path=info["path"])
        result.update(changed=True, path=info["path"], actions=["delete volume %s" % name],
                      diff=dict(before=_vol_view(name, info), after=""))
        if not check_mode:
            try:
                vol.delete(0)
            except libvirt.libvirtError as e:
                raise StepError("cannot delete volume %s: %s" % (name, _err(e)), path=info["path"])
        return result

    size_gb, fmt = p.get("size_gb"), p.get("format") or "qcow2"
    if not isinstance(size_gb, int) or size_gb < 1:
        raise StepError("size_gb (a positive integer) is required with state=present")
    want = size_gb * GIB
    undo = Undo()
    try:
        pool, changed, actions = ensure_dir_pool(conn, pool_name, p["pool_path"], check_mode, undo)
    except libvirt.libvirtError as e:
        undo.fail("cannot set up storage pool %s at %s: %s" % (pool_name, p["pool_path"], _err(e)))
    result["actions"].extend(actions)
    result["changed"] = changed
    vol = lookup_volume(pool, name) if pool is not None else None
    before = _vol_view(name, volume_info(vol)) if vol is not None else ""
    if vol is None:
        src = p.get("source_path")
        if src:
            _source_info(p, want)
        result["actions"].append("create %s volume %s of %d GiB%s" % (fmt, name, size_gb, " from %s" % src if src else ""))
        result["changed"] = True
        if check_mode:
            result.update(path=os.path.join(p["pool_path"], name), capacity_bytes=want, format=fmt,
                          diff=dict(before=before, after=_vol_view(name, dict(capacity_bytes=want, format=fmt))))
            return result
        try:
            vol = pool.createXML(volume_xml(name, want, fmt), 0)
        except libvirt.libvirtError as e:
            undo.fail("cannot create volume %s in pool %s: %s" % (name, pool_name, _err(e)))
        if src:
            undo.push("delete volume %s" % name, vol.delete, 0)
            argv = [qemu_img, "convert", "-n", "-f", p["source_format"], "-O", fmt, src, vol.path()]
            rc, out, err = run(argv)
            if rc != 0:
                undo.fail("qemu-img convert of %s into volume %s failed (rc=%s): %s"
                          % (src, name, rc, (err or out).strip()))
            result["source_path"] = src
        info = volume_info(vol)
    else:
        info = volume_info(vol)
        if info["format"] and info["format"] != fmt:
            raise StepError("volume %s exists with format %s, not %s" % (name, info["format"], fmt),
                            path=info["path"], capacity_bytes=info["capacity_bytes"])
        if want < info["capacity_bytes"]:
            raise StepError("shrinking a volume is not supported: %s has %d bytes, size_gb=%d asks for %d"
                            % (name, info["capacity_bytes"], size_gb, want),
                            path=info["path"], capacity_bytes=info["capacity_bytes"])
        if want > info["capacity_bytes"]:
            result["changed"] = True
            users = [(d, devs) for d, devs, active in domains_using(conn, info["path"], pool_name, name) if active]
            result["actions"].append("extend volume %s to %d GiB%s" % (
                name, size_gb, " (online, domain %s)" % users[0][0].name() if users else ""))
            if not check_mode:
                try:
                    if users:
                        dom, devs = users[0]
                        dom.blockResize(devs[0], want, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
                    else:
                        vol.resize(want, 0)
                except libvirt.libvirtError as e:
                    raise StepError("cannot extend volume %s to %d GiB: %s" % (name, size_gb, _err(e)),
                                    path=info["path"], capacity_bytes=info["capacity_bytes"])
                info = volume_info(vol)
            else:
                info = dict(info, capacity_bytes=want)
    result.update(path=info["path"], capacity_bytes=info["capacity_bytes"], format=info["format"] or fmt)
    if result["changed"]:
        result["diff"] = dict(before=before, after=_vol_view(name, info))
    return result


def _vol_view(name, info):
    return "volume: %s\nformat: %s\ncapacity_bytes: %s\n" % (name, info.get("format"), info.get("capacity_bytes"))


# --------------------------------------------------------------------------------------------
# volume_attach


def volume_attach_step(conn, p, check_mode=False):
    """p: domain, volume, pool, device, bus, state, wait, wait_timeout."""
    name, vol_name, pool_name = p["domain"], p["volume"], p["pool"]
    state = p["state"]
    try:
        check_volume_name(vol_name)
        check_pool_name(pool_name)
    except VirtError as e:
        raise StepError(str(e))
    dom = lookup_domain(conn, name)
    if dom is None:
        raise StepError("domain %s does not exist on this host" % name)
    pool = lookup_pool(conn, pool_name)
    vol = lookup_volume(pool, vol_name) if pool is not None else None
    if pool is None:
        if state == "absent":
            path = None
        else:
            raise StepError("storage pool %s does not exist on this host" % pool_name)
    elif vol is None and state == "present":
        raise StepError("volume %s does not exist in pool %s" % (vol_name, pool_name))
    path = vol.path() if vol is not None else None
    fmt = volume_format(vol.XMLDesc(0)) if vol is not None else None

    active = bool(dom.isActive())
    persistent = bool(dom.isPersistent())
    cfg_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if persistent else None
    run_xml = dom.XMLDesc(0) if active else None
    cfg_devs = disk_uses(cfg_xml, path, pool_name, vol_name) if cfg_xml else []
    run_devs = disk_uses(run_xml, path, pool_name, vol_name) if run_xml else []
    result = dict(changed=False, domain=name, volume=vol_name, pool=pool_name, path=path,
                  device=None, live=bool(run_devs))
    before = _attach_view(cfg_xml, run_xml)

    if state == "absent":
        if not cfg_devs and not run_devs:
            return result
        device = (run_devs or cfg_devs)[0]
        if p.get("device") and p["device"] not in cfg_devs + run_devs:
            raise StepError("volume %s is attached to %s as %s, not %s"
                            % (vol_name, name, ",".join(sorted(set(cfg_devs + run_devs))), p["device"]))
        result.update(changed=True, device=device)
        if check_mode:
            result["live"] = False
            result["diff"] = dict(before=before, after=_attach_view(cfg_xml, run_xml, drop=device))
            return result
        if run_devs:
            elem = _disk_elem_xml(run_xml, run_devs[0])
            try:
                dom.detachDeviceFlags(elem, libvirt.VIR_DOMAIN_AFFECT_LIVE)
            except libvirt.libvirtError as e:
                raise StepError("cannot detach %s (%s) from running domain %s: %s"
                                % (vol_name, run_devs[0], name, _err(e)), device=run_devs[0], live=True)
            if p.get("wait", True):
                deadline = time.monotonic() + p.get("wait_timeout", 120)
                while True:
                    cur = dom.XMLDesc(0) if dom.isActive() else None
                    if not cur or not disk_uses(cur, path, pool_name, vol_name):
                        break
                    if time.monotonic() >= deadline:
                        raise StepError("the guest did not release %s (%s) within %d s; the persistent "
                                        "definition was left unchanged"
                                        % (vol_name, run_devs[0], p.get("wait_timeout", 120)),
                                        device=run_devs[0], live=True)
                    time.sleep(0.2)
        if cfg_devs:
            elem = _disk_elem_xml(cfg_xml, cfg_devs[0])
            try:
                dom.detachDeviceFlags(elem, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            except libvirt.libvirtError as e:
                raise StepError("cannot remove %s (%s) from the definition of %s: %s"
                                % (vol_name, cfg_devs[0], name, _err(e)), device=cfg_devs[0])
        cur = dom.XMLDesc(0) if dom.isActive() else None
        result["live"] = bool(cur and disk_uses(cur, path, pool_name, vol_name))
        result["diff"] = dict(before=before, after=_attach_view(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if persistent else None, cur))
        return result

    # present
    bus = p.get("bus") or "virtio"
    have = cfg_devs or run_devs
    device = p.get("device") or (have[0] if have else None)
    if device and have and device not in have:
        raise StepError("volume %s is already attached to %s as %s; detach it first to use %s"
                        % (vol_name, name, ",".join(sorted(set(have))), device), device=have[0])
    if cfg_devs and run_devs and cfg_devs[0] != run_devs[0]:
        raise StepError("volume %s is %s in the definition of %s but %s in the running guest"
                        % (vol_name, cfg_devs[0], name, run_devs[0]))
    used = set()
    for xml in (cfg_xml, run_xml):
        if xml:
            used.update(d["dev"] for d in disk_targets(xml) if d["dev"])
    if not device:
        device = next_device(used, BUS_PREFIX.get(bus, "vd"))
    try:
        disk = normalize_disks([dict(pool=pool_name, volume=vol_name, format=fmt or "qcow2", device=device,
                                     bus=bus, device_type="disk")])[0]
        dxml = disk_xml(disk)
    except VirtError as e:
        raise StepError(str(e))
    for label, xml, devs in (("definition", cfg_xml, cfg_devs), ("running guest", run_xml, run_devs)):
        if xml and device not in devs:
            for d in disk_targets(xml):
                if d["dev"] == device:
                    raise StepError("device %s of domain %s is already used by another disk (%s) in the %s"
                                    % (device, name, d["path"] or "%s/%s" % (d["pool"], d["volume"]), label))
    need_cfg = persistent and device not in cfg_devs
    need_live = active and device not in run_devs
    result.update(device=device, changed=bool(need_cfg or need_live))
    if not result["changed"]:
        result["live"] = active
        return result
    flags = (libvirt.VIR_DOMAIN_AFFECT_CONFIG if need_cfg else 0) | (libvirt.VIR_DOMAIN_AFFECT_LIVE if need_live else 0)
    if check_mode:
        result["live"] = active
        result["diff"] = dict(before=before, after=before + "%s: %s/%s%s\n" % (
            device, pool_name, vol_name, " (live)" if active else ""))
        return result
    try:
        dom.attachDeviceFlags(dxml, flags)
    except libvirt.libvirtError as e:
        raise StepError("cannot attach volume %s to %s as %s: %s" % (vol_name, name, device, _err(e)),
                        device=device)
    cur = dom.XMLDesc(0) if dom.isActive() else None
    result["live"] = bool(cur and device in disk_uses(cur, path, pool_name, vol_name))
    result["diff"] = dict(before=before, after=_attach_view(
        dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) if persistent else None, cur))
    return result


def _disk_elem_xml(xml, dev):
    root = ET.fromstring(xml)
    for disk in root.findall("./devices/disk"):
        tgt = disk.find("target")
        if tgt is not None and tgt.get("dev") == dev:
            return ET.tostring(disk, encoding="unicode")
    raise StepError("disk %s vanished from the domain XML" % dev)


def _attach_view(cfg_xml, run_xml, drop=None):
    lines = []
    for label, xml in (("config", cfg_xml), ("live", run_xml)):
        if not xml:
            continue
        for d in disk_targets(xml):
            if d["dev"] == drop:
                continue
            src = d["path"] or "%s/%s" % (d["pool"], d["volume"])
            lines.append("%s %s: %s" % (label, d["dev"], src))
    return "\n".join(lines) + ("\n" if lines else "")


# --------------------------------------------------------------------------------------------
# domain

SPEC_KEYS = ("title", "vcpus", "memory_mb", "disks", "interfaces", "console_log", "tb_cache_mb", "uuid")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _undefine(dom):
    flags = 0
    for n in ("VIR_DOMAIN_UNDEFINE_MANAGED_SAVE", "VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA",
              "VIR_DOMAIN_UNDEFINE_NVRAM", "VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA"):
        flags |= getattr(libvirt, n, 0)
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as e:
        if _code(e) in (getattr(libvirt, "VIR_ERR_NO_SUPPORT", -1), getattr(libvirt, "VIR_ERR_INVALID_ARG", -1)):
            dom.undefine()
        else:
            raise


def _destroy_if_active(dom):
    if dom.isActive():
        dom.destroy()


def domain_step(conn, p, check_mode=False, cpuinfo_path="/proc/cpuinfo", kvm_path="/dev/kvm"):
    """p: name, uuid, title, vcpus, memory_mb, virt_type, disks, interfaces, console_log, tb_cache_mb,
    state (running|defined|shutdown|absent), wait, wait_timeout."""
    name, state = p["name"], p["state"]
    wait, timeout = p.get("wait", True), p.get("wait_timeout", 120)
    dom = lookup_domain(conn, name)
    result = dict(changed=False, name=name, uuid=None, state=domain_state_name(dom), xml=None,
                  defined=False, started=False, stopped=False, forced=False, warnings=[])
    if dom is not None:
        result["uuid"] = dom.UUIDString()

    if state == "absent":
        if dom is None:
            return result
        before = inactive_xml(dom)
        result.update(changed=True, stopped=bool(dom.isActive()), xml=before,
                      diff=dict(before=domain_view(before), after=""))
        if check_mode:
            result["state"] = "absent"
            return result
        try:
            _destroy_if_active(dom)
            if dom.isPersistent():
                _undefine(dom)
        except libvirt.libvirtError as e:
            if lookup_domain(conn, name) is not None:
                raise StepError("cannot remove domain %s: %s" % (name, _err(e)), state=domain_state_name(dom))
        result["state"] = "absent"
        return result

    # ---- the definition (running / defined / shutdown)
    given = [k for k in SPEC_KEYS if p.get(k) not in (None, [], "")]
    have_spec = p.get("vcpus") is not None and p.get("memory_mb") is not None
    if given and not have_spec:
        raise StepError("vcpus and memory_mb are required to define or update domain %s (got %s)"
                        % (name, ", ".join(given)))
    if not have_spec and dom is None:
        raise StepError("domain %s does not exist; give vcpus, memory_mb, disks, ... to define it" % name)

    undo = Undo()
    before = inactive_xml(dom) if dom is not None else None
    need_define = False
    desired = before
    if have_spec:
        try:
            virt_type = choose_virt_type(p.get("virt_type") or "auto", _read(cpuinfo_path),
                                         os.path.exists(kvm_path))
            spec = validate_spec(dict(
                name=name, uuid=p.get("uuid"), title=p.get("title"), vcpus=p["vcpus"],
                memory_mb=p["memory_mb"], virt_type=virt_type, disks=p.get("disks") or [],
                interfaces=p.get("interfaces") or [], console_log=p.get("console_log"),
                tb_cache_mb=p.get("tb_cache_mb")))
            desired = domain_xml(spec)
            if before is not None:
                desired = carry_over(before, desired)
        except VirtError as e:
            raise StepError(str(e))
        result["virt_type"] = virt_type
        if spec.get("uuid"):
            other = lookup_domain_by_uuid(conn, spec["uuid"])
            if other is not None and other.name() != name:
                raise StepError("uuid %s already belongs to domain %s" % (spec["uuid"], other.name()))
        need_define = before is None or definition_differs(before, desired)
        if console_dir_missing(spec):
            msg = ("the directory of console_log %s does not exist (image_fetch creates the instance "
                   "directory)" % spec["console_log"])
            if not check_mode:
                raise StepError(msg)
            result["warnings"].append(msg)
    if need_define:
        result.update(changed=True, defined=True,
                      diff=dict(before=domain_view(before) if before else "", after=domain_view(desired)))
        if not check_mode:
            try:
                newdom = conn.defineXML(desired)
            except libvirt.libvirtError as e:
                raise StepError("cannot define domain %s: %s" % (name, _err(e)))
            if dom is None:
                undo.push("undefine new domain %s" % name, _undefine, newdom)
            else:
                undo.push("restore the previous definition of %s" % name, conn.defineXML, before)
            dom = newdom
            result["uuid"] = dom.UUIDString()
            if dom.isActive():
                result["warnings"].append("domain %s is running; the new definition takes effect at its "
                                          "next cold boot (shutdown + start)" % name)
    result["xml"] = desired if (check_mode or dom is None) else inactive_xml(dom)
    cur = domain_state_name(dom) if dom is not None else "shutoff"

    if state == "running":
        if cur in ("shutoff", "crashed", "nostate") or dom is None:
            result.update(changed=True, started=True)
            if check_mode:
                result["state"] = "running"
                return result
            try:
                dom.create()
            except libvirt.libvirtError as e:
                undo.fail("cannot start domain %s: %s" % (name, _err(e)), state=domain_state_name(dom))
            undo.push("destroy domain %s" % name, _destroy_if_active, dom)
        elif cur == "paused":
            result.update(changed=True, started=True)
            if check_mode:
                result["state"] = "running"
                return result
            try:
                dom.resume()
            except libvirt.libvirtError as e:
                undo.fail("cannot resume domain %s: %s" % (name, _err(e)), state=domain_state_name(dom))
        if wait and not check_mode:
            ok, last = wait_for_state(dom, lambda s: s in ("running", "blocked"), timeout)
            if not ok:
                undo.fail("domain %s did not reach state running within %d s (last state %s)"
                          % (name, timeout, last), state=last)
        result["state"] = domain_state_name(dom) if not check_mode else "running"
    elif state == "shutdown":
        if dom is not None and cur in ACTIVE_STATES:
            result.update(changed=True, stopped=True)
            if check_mode:
                result["state"] = "shutoff"
                return result
            try:
                if cur == "paused":
                    dom.destroy()     # a paused guest cannot react to ACPI
                    result["forced"] = True
                else:
                    dom.shutdown()
            except libvirt.libvirtError as e:
                if dom.isActive():
                    undo.fail("cannot shut down domain %s: %s" % (name, _err(e)), state=domain_state_name(dom))
            if wait:
                ok, last = wait_for_state(dom, lambda s: s not in ACTIVE_STATES, timeout)
                if not ok:
                    # like Nova's power_off: a clean shutdown first, then power off
                    try:
                        dom.destroy()
                    except libvirt.libvirtError as e:
                        if dom.isActive():
                            raise StepError("domain %s ignored the ACPI shutdown for %d s and destroy failed: %s"
                                            % (name, timeout, _err(e)), state=domain_state_name(dom))
                    result["forced"] = True
                    result["warnings"].append("domain %s did not shut down within %d s; it was powered off"
                                              % (name, timeout))
        result["state"] = domain_state_name(dom) if (dom is not None and not check_mode) else "shutoff"
    else:  # defined
        result["state"] = domain_state_name(dom) if (dom is not None and not check_mode) else cur
    if dom is not None:
        result["uuid"] = dom.UUIDString()
    return result


def console_dir_missing(spec):
    c = spec.get("console_log")
    return bool(c) and not os.path.isdir(os.path.dirname(c))


def run_libvirt_step(module, step, describe):
    """Connect to ``module.params['uri']``, run ``step(conn)`` and exit the module with its result."""
    def run():
        conn = connect(module.params["uri"])
        try:
            return step(conn)
        finally:
            conn.close()
    finish(module, run, describe)
