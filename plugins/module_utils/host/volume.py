# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""cinder-volume and the attachment on the host: a volume in the host's libvirt dir pool (blank or made
from a cached image), and its hot-plug into / out of a domain.

PRIVATE to the collection: may change at any time.
"""

from __future__ import annotations

import os
import time
import xml.etree.ElementTree as ET

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    GIB,
    Undo,
    domains_using,
    ensure_dir_pool,
    err_msg,
    libvirt,
    lookup_domain,
    lookup_pool,
    lookup_volume,
    volume_info,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import (
    BUS_PREFIX,
    VirtError,
    check_pool_name,
    check_volume_name,
    disk_targets,
    disk_uses,
    disk_xml,
    next_device,
    normalize_disks,
    volume_format,
    volume_xml,
)


def _source_info(p, want):
    """The image file a new volume is made from (source_path): its declared format must match its
    content, no backing/data file, and its virtual size must fit the volume."""
    src, src_fmt = p.get("source_path"), p.get("source_format")
    if not str(src).startswith("/"):
        raise BootflowError("source_path must be an absolute path")
    if src_fmt not in ("raw", "qcow2"):
        raise BootflowError("source_format (raw or qcow2) is required with source_path")
    if not os.path.isfile(src):
        raise BootflowError("source_path %s is not a file on this host" % src)
    if os.path.basename(os.path.dirname(os.path.realpath(src))) != "_base":
        # only the verified image cache, never an arbitrary host file, becomes a volume's content
        raise BootflowError("source_path %s is not a cached image in an image cache directory (_base)" % src)
    # here, not at the top: only a volume made from an image needs the image cache's code
    from ansible_collections.bootflow.cloud.plugins.module_utils.host.image_cache import safety_check
    try:
        info = safety_check(src, src_fmt)
    except BootflowError as e:
        raise BootflowError("source_path %s refused: %s" % (src, e))
    if info["virtual_size"] > want:
        raise BootflowError("the volume (%d bytes) is smaller than the image %s (%d bytes virtual size)"
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
        raise BootflowError(str(e))
    if not str(p["pool_path"]).startswith("/"):
        raise BootflowError("pool_path must be an absolute path")
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
            raise BootflowError("volume %s is in use by domain(s) %s; detach it first"
                                % (name, ", ".join("%s (%s)" % (d.name(), ",".join(devs)) for d, devs, _a in users)),
                                path=info["path"])
        result.update(changed=True, path=info["path"], actions=["delete volume %s" % name],
                      diff=dict(before=_vol_view(name, info), after=""))
        if not check_mode:
            try:
                vol.delete(0)
            except libvirt.libvirtError as e:
                raise BootflowError("cannot delete volume %s: %s" % (name, err_msg(e)), path=info["path"])
        return result

    size_gb, fmt = p.get("size_gb"), p.get("format") or "qcow2"
    if not isinstance(size_gb, int) or size_gb < 1:
        raise BootflowError("size_gb (a positive integer) is required with state=present")
    want = size_gb * GIB
    undo = Undo()
    try:
        pool, changed, actions = ensure_dir_pool(conn, pool_name, p["pool_path"], check_mode, undo)
    except libvirt.libvirtError as e:
        undo.fail("cannot set up storage pool %s at %s: %s" % (pool_name, p["pool_path"], err_msg(e)))
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
            undo.fail("cannot create volume %s in pool %s: %s" % (name, pool_name, err_msg(e)))
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
            raise BootflowError("volume %s exists with format %s, not %s" % (name, info["format"], fmt),
                                path=info["path"], capacity_bytes=info["capacity_bytes"])
        if want < info["capacity_bytes"]:
            raise BootflowError("shrinking a volume is not supported: %s has %d bytes, size_gb=%d asks for %d"
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
                    raise BootflowError("cannot extend volume %s to %d GiB: %s" % (name, size_gb, err_msg(e)),
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
        raise BootflowError(str(e))
    dom = lookup_domain(conn, name)
    if dom is None:
        raise BootflowError("domain %s does not exist on this host" % name)
    pool = lookup_pool(conn, pool_name)
    vol = lookup_volume(pool, vol_name) if pool is not None else None
    if pool is None:
        if state == "absent":
            path = None
        else:
            raise BootflowError("storage pool %s does not exist on this host" % pool_name)
    elif vol is None and state == "present":
        raise BootflowError("volume %s does not exist in pool %s" % (vol_name, pool_name))
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
            raise BootflowError("volume %s is attached to %s as %s, not %s"
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
                raise BootflowError("cannot detach %s (%s) from running domain %s: %s"
                                    % (vol_name, run_devs[0], name, err_msg(e)), device=run_devs[0], live=True)
            if p.get("wait", True):
                deadline = time.monotonic() + p.get("wait_timeout", 120)
                while True:
                    cur = dom.XMLDesc(0) if dom.isActive() else None
                    if not cur or not disk_uses(cur, path, pool_name, vol_name):
                        break
                    if time.monotonic() >= deadline:
                        raise BootflowError("the guest did not release %s (%s) within %d s; the persistent "
                                            "definition was left unchanged"
                                            % (vol_name, run_devs[0], p.get("wait_timeout", 120)),
                                            device=run_devs[0], live=True)
                    time.sleep(0.2)
        if cfg_devs:
            elem = _disk_elem_xml(cfg_xml, cfg_devs[0])
            try:
                dom.detachDeviceFlags(elem, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            except libvirt.libvirtError as e:
                raise BootflowError("cannot remove %s (%s) from the definition of %s: %s"
                                    % (vol_name, cfg_devs[0], name, err_msg(e)), device=cfg_devs[0])
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
        raise BootflowError("volume %s is already attached to %s as %s; detach it first to use %s"
                            % (vol_name, name, ",".join(sorted(set(have))), device), device=have[0])
    if cfg_devs and run_devs and cfg_devs[0] != run_devs[0]:
        raise BootflowError("volume %s is %s in the definition of %s but %s in the running guest"
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
        raise BootflowError(str(e))
    for label, xml, devs in (("definition", cfg_xml, cfg_devs), ("running guest", run_xml, run_devs)):
        if xml and device not in devs:
            for d in disk_targets(xml):
                if d["dev"] == device:
                    raise BootflowError("device %s of domain %s is already used by another disk (%s) in the %s"
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
        raise BootflowError("cannot attach volume %s to %s as %s: %s" % (vol_name, name, device, err_msg(e)),
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
    raise BootflowError("disk %s vanished from the domain XML" % dev)


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
