# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure libvirt XML logic: build, parse, normalise and compare domain definitions.

PRIVATE to the collection: may change at any time.

Imports neither ansible nor libvirt (unit-tested without either). Every piece of user text goes
into the XML through ElementTree, never through string formatting.
"""

from __future__ import annotations

import copy
import re
import uuid as _uuid
import xml.etree.ElementTree as ET

from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import normalize_mac

VIRT_TYPES = ("qemu", "kvm")
DISK_FORMATS = ("qcow2", "raw")
DISK_BUSES = ("virtio", "sata", "scsi", "ide")
BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "ide": "hd"}
PREFIX_BUS = {"vd": "virtio", "sd": "sata", "hd": "ide"}
NIC_MODELS = ("virtio", "e1000", "rtl8139")

DEVICE_RE = re.compile(r"(vd|sd|hd)[a-z]{1,2}")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_BRIDGE_RE = _IFNAME_RE
# Characters XML 1.0 cannot carry at all (ElementTree would write them and produce a broken
# document), plus the line breaks/tabs libvirt refuses in a <title>.
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class VirtError(InvalidRequest):
    """Invalid domain specification or XML."""


# --------------------------------------------------------------------------------------------
# small helpers


def xml_text(value):
    """Text that XML 1.0 can carry (invalid characters removed)."""
    return _XML_INVALID.sub("", str(value))


def one_line(value):
    """Title text: libvirt refuses line breaks in <title>; collapse all whitespace runs."""
    return " ".join(xml_text(value).split())


def tap_name(port_id):
    """Nova/neutron style tap device name: 'tap' + the first 11 characters of the port id."""
    name = layout.tap_name(port_id)
    if not _IFNAME_RE.fullmatch(name):
        raise VirtError("port id %r does not give a valid tap device name" % (port_id,))
    return name


def _dev_name(prefix, index):
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def next_device(used, prefix="vd", skip_first=True):
    """First free device name: 'vdb', 'vdc', ... ('vda' is the root disk unless skip_first=False)."""
    used = set(used or ())
    i = 1 if skip_first else 0
    while True:
        name = _dev_name(prefix, i)
        if name not in used:
            return name
        i += 1


def choose_virt_type(requested, cpuinfo_text, kvm_present):
    """'kvm' only when asked for explicitly, or for 'auto' when the CPU has vmx/svm AND /dev/kvm exists.

    A /dev/kvm without vmx/svm in the CPU flags (PVM-backed KVM in a nested sandbox) is advertised by
    libvirt but cannot run stock guest kernels, so 'auto' picks 'qemu' (TCG) there.
    """
    requested = (requested or "auto").lower()
    if requested in VIRT_TYPES:
        return requested
    if requested != "auto":
        raise VirtError("virt_type must be auto, qemu or kvm, not %r" % (requested,))
    flags = set()
    for line in (cpuinfo_text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            flags.update(value.split())
    if kvm_present and ({"vmx", "svm"} & flags):
        return "kvm"
    return "qemu"


# --------------------------------------------------------------------------------------------
# spec validation + XML building


def _require(cond, msg):
    if not cond:
        raise VirtError(msg)


def normalize_disks(disks):
    """Validate disk dicts and fill in bus/device/readonly defaults. Returns a new list."""
    out = []
    for i, d in enumerate(disks or []):
        d = dict(d or {})
        where = "disks[%d]" % i
        device_type = d.get("device_type") or "disk"
        _require(device_type in ("disk", "cdrom"), "%s: device_type must be disk or cdrom" % where)
        has_path = bool(d.get("path"))
        has_vol = bool(d.get("pool")) or bool(d.get("volume"))
        _require(has_path != has_vol, "%s: give either path or pool+volume" % where)
        if has_vol:
            _require(d.get("pool") and d.get("volume"), "%s: pool and volume go together" % where)
        if has_path:
            _require(str(d["path"]).startswith("/"), "%s: path must be absolute" % where)
        fmt = d.get("format") or ("raw" if device_type == "cdrom" else "qcow2")
        _require(fmt in DISK_FORMATS, "%s: format must be one of %s" % (where, ", ".join(DISK_FORMATS)))
        dev = d.get("device")
        bus = d.get("bus")
        if dev:
            _require(DEVICE_RE.fullmatch(dev), "%s: invalid device name %r (vdX, sdX or hdX)" % (where, dev))
            if not bus:
                bus = PREFIX_BUS[dev[:2]]
        if not bus:
            bus = "ide" if device_type == "cdrom" else "virtio"
        _require(bus in DISK_BUSES, "%s: bus must be one of %s" % (where, ", ".join(DISK_BUSES)))
        if dev:
            _require(dev.startswith(BUS_PREFIX[bus]),
                     "%s: device %s does not fit bus %s (use %sX)" % (where, dev, bus, BUS_PREFIX[bus]))
        readonly = bool(d.get("readonly")) or device_type == "cdrom"
        out.append(dict(path=d.get("path"), pool=d.get("pool"), volume=d.get("volume"), format=fmt,
                        device=dev, bus=bus, device_type=device_type, readonly=readonly))
    used = [d["device"] for d in out if d["device"]]
    for d in out:
        if not d["device"]:
            prefix = BUS_PREFIX[d["bus"]]
            d["device"] = next_device(used, prefix, skip_first=False)
            used.append(d["device"])
    seen = set()
    for d in out:
        _require(d["device"] not in seen, "device %s is used by more than one disk" % d["device"])
        seen.add(d["device"])
    return out


def normalize_interfaces(interfaces):
    out = []
    for i, n in enumerate(interfaces or []):
        n = dict(n or {})
        where = "interfaces[%d]" % i
        bridge = n.get("bridge")
        _require(bridge and _BRIDGE_RE.fullmatch(bridge), "%s: bridge must be a valid interface name" % where)
        model = n.get("model") or "virtio"
        _require(model in NIC_MODELS, "%s: model must be one of %s" % (where, ", ".join(NIC_MODELS)))
        target = n.get("target")
        if not target and n.get("port_id"):
            target = tap_name(n["port_id"])
        if target:
            _require(_IFNAME_RE.fullmatch(target), "%s: target %r is not a valid interface name (max 15 chars)"
                     % (where, target))
            _require(not target.startswith(("vnet", "macvtap", "macvlan")),
                     "%s: target prefix vnet/macvtap/macvlan is reserved by libvirt" % where)
        try:
            mac = normalize_mac(n["mac"]) if n.get("mac") is not None else None
        except InvalidRequest as e:
            raise VirtError("%s: %s" % (where, e))
        out.append(dict(mac=mac, bridge=bridge, model=model, target=target))
    macs = [n["mac"] for n in out if n["mac"]]
    _require(len(macs) == len(set(macs)), "the same MAC address is given for two interfaces")
    targets = [n["target"] for n in out if n["target"]]
    _require(len(targets) == len(set(targets)), "the same target device is given for two interfaces")
    return out


def validate_spec(spec):
    """Validate and normalise a domain spec (dict). Returns a new dict; raises VirtError."""
    s = dict(spec)
    name = s.get("name")
    _require(isinstance(name, str) and name.strip() == name and name, "name must be a non-empty string "
             "without leading/trailing whitespace")
    _require("/" not in name and xml_text(name) == name and "\n" not in name and "\t" not in name,
             "name must not contain '/', line breaks or control characters")
    if s.get("uuid"):
        try:
            s["uuid"] = str(_uuid.UUID(str(s["uuid"])))
        except ValueError:
            raise VirtError("uuid %r is not a valid UUID" % (s["uuid"],))
    s["virt_type"] = s.get("virt_type") or "qemu"
    _require(s["virt_type"] in VIRT_TYPES, "virt_type must be qemu or kvm when building XML")
    for key in ("memory_mb", "vcpus"):
        _require(isinstance(s.get(key), int) and s[key] > 0, "%s must be a positive integer" % key)
    if s.get("tb_cache_mb") is not None:
        _require(isinstance(s["tb_cache_mb"], int) and s["tb_cache_mb"] > 0, "tb_cache_mb must be positive")
    if s.get("console_log"):
        _require(str(s["console_log"]).startswith("/"), "console_log must be an absolute path")
    s["disks"] = normalize_disks(s.get("disks"))
    s["interfaces"] = normalize_interfaces(s.get("interfaces"))
    return s


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: xml_text(v) for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = xml_text(text)
    return el


def disk_element(d):
    """<disk> element for one normalised disk dict."""
    dtype = "volume" if d.get("pool") else "file"
    disk = ET.Element("disk", {"type": dtype, "device": d.get("device_type") or "disk"})
    _sub(disk, "driver", name="qemu", type=d.get("format") or "qcow2")
    if dtype == "volume":
        _sub(disk, "source", pool=d["pool"], volume=d["volume"])
    else:
        _sub(disk, "source", file=d["path"])
    _sub(disk, "target", dev=d["device"], bus=d.get("bus") or "virtio")
    if d.get("readonly") or d.get("device_type") == "cdrom":
        _sub(disk, "readonly")
    return disk


def disk_xml(d):
    """Stand-alone <disk> XML (for attachDeviceFlags)."""
    return ET.tostring(disk_element(d), encoding="unicode")


def interface_element(n):
    iface = ET.Element("interface", {"type": "bridge"})
    if n.get("mac"):
        _sub(iface, "mac", address=n["mac"])
    _sub(iface, "source", bridge=n["bridge"])
    if n.get("target"):
        _sub(iface, "target", dev=n["target"])
    _sub(iface, "model", type=n.get("model") or "virtio")
    return iface


def domain_element(spec):
    s = validate_spec(spec)
    dom = ET.Element("domain", {"type": s["virt_type"]})
    _sub(dom, "name", s["name"])
    if s.get("uuid"):
        _sub(dom, "uuid", s["uuid"])
    if s.get("title"):
        title = one_line(s["title"])
        if title:
            _sub(dom, "title", title)
    _sub(dom, "memory", str(s["memory_mb"]), unit="MiB")
    _sub(dom, "vcpu", str(s["vcpus"]))
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    _sub(os_el, "boot", dev="hd")
    feats = _sub(dom, "features")
    _sub(feats, "acpi")
    _sub(feats, "apic")
    if s["virt_type"] == "qemu" and s.get("tb_cache_mb"):
        tcg = _sub(feats, "tcg")
        _sub(tcg, "tb-cache", str(s["tb_cache_mb"]), unit="MiB")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")
    devices = _sub(dom, "devices")
    for d in s["disks"]:
        devices.append(disk_element(d))
    for n in s["interfaces"]:
        devices.append(interface_element(n))
    if s.get("console_log"):
        # append: a guest started again (stop/start, Nova's soft and hard reboots) adds to its console log
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=s["console_log"], append="on")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="file")
        _sub(console, "source", path=s["console_log"])
        _sub(console, "target", type="serial", port="0")
    _sub(devices, "memballoon", model="none")
    return dom


def domain_xml(spec):
    """libvirt domain XML (str) for a domain spec dict.

    spec keys: name, uuid, title, memory_mb, vcpus, virt_type (qemu|kvm), disks, interfaces,
    console_log, tb_cache_mb. See validate_spec() for the disk/interface dict keys.
    """
    el = domain_element(spec)
    ET.indent(el)
    return ET.tostring(el, encoding="unicode")


# --------------------------------------------------------------------------------------------
# parsing


def parse(xml):
    if isinstance(xml, ET.Element):
        return xml
    try:
        return ET.fromstring(xml)
    except ET.ParseError as e:
        raise VirtError("malformed XML: %s" % e)


def _strip(el):
    for node in el.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None:
            node.tail = None
    return el


def _sorted_attrs(el):
    for node in el.iter():
        if node.attrib:
            items = sorted(node.attrib.items())
            node.attrib.clear()
            node.attrib.update(items)
    return el


def normalize_xml(xml):
    """Pretty, attribute-sorted, whitespace-normalised XML text (for diffs and comparisons)."""
    el = copy.deepcopy(parse(xml))
    _strip(el)
    _sorted_attrs(el)
    ET.indent(el)
    return ET.tostring(el, encoding="unicode") + "\n"


def domain_uuid(xml):
    el = parse(xml)
    u = el.findtext("uuid")
    return u.strip().lower() if u else None


def domain_name(xml):
    return (parse(xml).findtext("name") or "").strip()


def _disk_info(disk):
    src = disk.find("source")
    tgt = disk.find("target")
    drv = disk.find("driver")
    attrs = src.attrib if src is not None else {}
    return dict(
        type=disk.get("type"),
        device_type=disk.get("device") or "disk",
        dev=tgt.get("dev") if tgt is not None else None,
        bus=tgt.get("bus") if tgt is not None else None,
        path=attrs.get("file") or attrs.get("dev") or None,
        pool=attrs.get("pool"),
        volume=attrs.get("volume"),
        format=drv.get("type") if drv is not None else None,
        readonly=disk.find("readonly") is not None,
    )


def disk_targets(xml):
    """List of disk dicts (dev, bus, type, device_type, path, pool, volume, format, readonly)."""
    el = parse(xml)
    return [_disk_info(d) for d in el.findall("./devices/disk")]


def interfaces(xml):
    """List of interface dicts (type, mac, bridge, target, model)."""
    out = []
    for iface in parse(xml).findall("./devices/interface"):
        mac = iface.find("mac")
        src = iface.find("source")
        tgt = iface.find("target")
        model = iface.find("model")
        out.append(dict(
            type=iface.get("type"),
            mac=(mac.get("address") or "").lower() or None if mac is not None else None,
            bridge=src.get("bridge") if src is not None else None,
            target=tgt.get("dev") if tgt is not None else None,
            model=model.get("type") if model is not None else None,
        ))
    return out


def disk_uses(xml, path=None, pool=None, volume=None):
    """Target devs of the disks in xml whose source is path or pool/volume."""
    devs = []
    for d in disk_targets(xml):
        if path and d["path"] == path:
            devs.append(d["dev"])
        elif pool and volume and d["pool"] == pool and d["volume"] == volume:
            devs.append(d["dev"])
    return devs


# --------------------------------------------------------------------------------------------
# carry-over and comparison


def carry_over(existing_xml, new_xml, keep_extra_disks=True):
    """Return new_xml with the identity of the existing definition carried over.

    * UUID: copied from the existing domain when new_xml has none; a different UUID is an error
      (it would be another domain with the same name).
    * MACs: an interface without a MAC gets the MAC of the existing interface with the same target
      device, else of the next existing interface on the same bridge (in order), so libvirt does not
      generate a new MAC on every define.
    * keep_extra_disks: disks of the existing definition whose target device is not used by new_xml
      (volumes attached with volume_attach) are kept, so redefining does not detach them.
    """
    old = parse(existing_xml)
    new = copy.deepcopy(parse(new_xml))
    old_uuid = domain_uuid(old)
    new_uuid = domain_uuid(new)
    if new_uuid and old_uuid and new_uuid != old_uuid:
        raise VirtError("domain %r already exists with uuid %s, not %s"
                        % (domain_name(old), old_uuid, new_uuid))
    if old_uuid and not new_uuid:
        u = ET.Element("uuid")
        u.text = old_uuid
        name_el = new.find("name")
        idx = list(new).index(name_el) + 1 if name_el is not None else 0
        new.insert(idx, u)
        if u.tail is None and name_el is not None:
            u.tail = name_el.tail

    old_ifaces = [i for i in interfaces(old) if i["mac"]]
    new_if_els = new.findall("./devices/interface")
    taken = set()   # MACs already used by the new definition
    for iface in new_if_els:
        m = iface.find("mac")
        if m is not None and m.get("address"):
            taken.add(m.get("address").lower())
    todo = []
    for iface in new_if_els:
        if iface.find("mac") is None:
            tgt = iface.find("target")
            src = iface.find("source")
            todo.append((iface, tgt.get("dev") if tgt is not None else None,
                         src.get("bridge") if src is not None else None))
    new_targets = {t for _i, t, _b in todo if t}
    picks = {}
    # pass 1: same tap device; pass 2: same type and bridge, in order (old interfaces whose tap
    # name a new interface claims are reserved for that one)
    for iface, target, _bridge in todo:
        if target:
            for o in old_ifaces:
                if o["target"] == target and o["mac"] not in taken:
                    picks[id(iface)] = o["mac"]
                    taken.add(o["mac"])
                    break
    for iface, target, bridge in todo:
        if id(iface) in picks:
            continue
        for o in old_ifaces:
            if (o["mac"] not in taken and o["type"] == iface.get("type") and o["bridge"] == bridge
                    and not (o["target"] and o["target"] in new_targets and o["target"] != target)):
                picks[id(iface)] = o["mac"]
                taken.add(o["mac"])
                break
    for iface, _t, _b in todo:
        if id(iface) in picks:
            iface.insert(0, ET.Element("mac", {"address": picks[id(iface)]}))

    if keep_extra_disks:
        devices = new.find("devices")
        if devices is None:
            devices = ET.SubElement(new, "devices")
        new_devs = {d["dev"] for d in disk_targets(new)}
        last_disk = None
        for idx, child in enumerate(list(devices)):
            if child.tag == "disk":
                last_disk = idx
        insert_at = 0 if last_disk is None else last_disk + 1
        for disk in old.findall("./devices/disk"):
            info = _disk_info(disk)
            if info["device_type"] == "disk" and info["dev"] and info["dev"] not in new_devs:
                extra = copy.deepcopy(disk)
                devices.insert(insert_at, extra)
                insert_at += 1
                new_devs.add(info["dev"])
    _strip(new)
    ET.indent(new)
    return ET.tostring(new, encoding="unicode")


_UNIT = {
    "b": 1, "bytes": 1,
    "k": 1024, "kib": 1024, "kb": 1000,
    "m": 1024 ** 2, "mib": 1024 ** 2, "mb": 1000 ** 2,
    "g": 1024 ** 3, "gib": 1024 ** 3, "gb": 1000 ** 3,
    "t": 1024 ** 4, "tib": 1024 ** 4, "tb": 1000 ** 4,
}


def _kib(el, default_unit="KiB"):
    if el is None or el.text is None:
        return None
    unit = (el.get("unit") or default_unit).lower()
    return int(el.text.strip()) * _UNIT.get(unit, 1024) // 1024


def _machine(m):
    if not m:
        return None
    if m == "pc" or m.startswith("pc-i440fx"):
        return "pc"
    if m == "q35" or m.startswith("pc-q35"):
        return "q35"
    return m


def domain_view(xml):
    """The part of a domain definition this collection manages, in a canonical form.

    Used to decide 'changed' (desired XML vs libvirt's inactive XML, which adds defaults such as
    PCI addresses, controllers and canonical machine types) and for the --diff output.
    """
    el = parse(xml)
    v = ET.Element("domain", {"type": el.get("type") or ""})
    for tag in ("name", "uuid", "title"):
        text = el.findtext(tag)
        if text is not None:
            ET.SubElement(v, tag).text = text.strip().lower() if tag == "uuid" else text
    mem = _kib(el.find("memory"))
    ET.SubElement(v, "memory", {"unit": "KiB"}).text = str(mem) if mem is not None else None
    vcpu = el.findtext("vcpu")
    ET.SubElement(v, "vcpu").text = vcpu.strip() if vcpu else None
    os_el = ET.SubElement(v, "os")
    t = el.find("./os/type")
    if t is not None:
        ET.SubElement(os_el, "type", {"arch": t.get("arch") or "", "machine": _machine(t.get("machine")) or ""}
                      ).text = (t.text or "").strip()
    for b in el.findall("./os/boot"):
        ET.SubElement(os_el, "boot", {"dev": b.get("dev") or ""})
    feats = ET.SubElement(v, "features")
    f = el.find("features")
    if f is not None:
        for name in ("acpi", "apic"):
            if f.find(name) is not None:
                ET.SubElement(feats, name)
        tb = _kib(f.find("./tcg/tb-cache"), default_unit="MiB")
        if tb is not None:
            ET.SubElement(ET.SubElement(feats, "tcg"), "tb-cache", {"unit": "KiB"}).text = str(tb)
    for tag in ("on_poweroff", "on_reboot", "on_crash"):
        text = el.findtext(tag)
        if text is not None:
            ET.SubElement(v, tag).text = text.strip()
    devices = ET.SubElement(v, "devices")
    for d in sorted(disk_targets(el), key=lambda d: (d["dev"] or "")):
        ET.SubElement(devices, "disk", {k: str(val) for k, val in sorted(d.items()) if val not in (None, "")})
    for n in interfaces(el):
        ET.SubElement(devices, "interface", {k: str(val) for k, val in sorted(n.items()) if val})
    for s in el.findall("./devices/serial"):
        src = s.find("source")
        ET.SubElement(devices, "serial", {"type": s.get("type") or "",
                                          "path": (src.get("path") if src is not None else None) or "",
                                          "append": (src.get("append") if src is not None else None) or "off"})
    mb = el.find("./devices/memballoon")
    if mb is not None:
        ET.SubElement(devices, "memballoon", {"model": mb.get("model") or ""})
    return normalize_xml(v)


def definition_differs(existing_xml, desired_xml):
    """True when the managed part of two definitions differs."""
    return domain_view(existing_xml) != domain_view(desired_xml)


# --------------------------------------------------------------------------------------------
# storage pools and volumes

_VOLNAME_RE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,254}")


def check_volume_name(name):
    if not name or not _VOLNAME_RE.fullmatch(name) or name in (".", ".."):
        raise VirtError("invalid volume name %r (letters, digits and _ . + -; no '/')" % (name,))
    return name


def check_pool_name(name):
    if not name or not _VOLNAME_RE.fullmatch(name):
        raise VirtError("invalid pool name %r (letters, digits and _ . + -)" % (name,))
    return name


def dir_pool_xml(name, path):
    pool = ET.Element("pool", {"type": "dir"})
    _sub(pool, "name", name)
    target = _sub(pool, "target")
    _sub(target, "path", path)
    perms = _sub(target, "permissions")
    _sub(perms, "mode", "0755")
    return ET.tostring(pool, encoding="unicode")


def pool_path(xml):
    p = parse(xml).findtext("./target/path")
    return p.strip() if p else None


def volume_xml(name, capacity_bytes, fmt):
    vol = ET.Element("volume")
    _sub(vol, "name", name)
    _sub(vol, "capacity", str(int(capacity_bytes)), unit="bytes")
    _sub(vol, "allocation", "0", unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=fmt)
    return ET.tostring(vol, encoding="unicode")


def volume_format(xml):
    f = parse(xml).find("./target/format")
    return f.get("type") if f is not None else None
