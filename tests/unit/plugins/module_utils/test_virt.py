# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.host import virt_xml as v

UUID = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"


def spec(**kw):
    s = dict(
        name="bootflow-" + UUID,
        uuid=UUID,
        title="web-1",
        memory_mb=128,
        vcpus=1,
        virt_type="qemu",
        disks=[dict(path="/var/lib/bootflow/instances/%s/disk" % UUID)],
        interfaces=[dict(mac="52:54:00:00:01:11", bridge="br-test", port_id="2f1d3c4b-5a6e-4f70-8a9b")],
        console_log="/var/lib/bootflow/instances/%s/console.log" % UUID,
        tb_cache_mb=32,
    )
    s.update(kw)
    return s


# What libvirt 9.0 (qemu:///embed on this machine) returned as the inactive XML for domain_xml(spec())
# with the 'volume' disk and a second MAC-less interface added: defaults, addresses, canonical machine.
LIBVIRT_INACTIVE = """<domain type='qemu'>
  <name>bootflow-1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11</name>
  <uuid>1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11</uuid>
  <title>web-1</title>
  <memory unit='KiB'>131072</memory>
  <currentMemory unit='KiB'>131072</currentMemory>
  <vcpu placement='static'>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
    <tcg>
      <tb-cache unit='KiB'>32768</tb-cache>
    </tcg>
  </features>
  <cpu mode='custom' match='exact' check='none'>
    <model fallback='forbid'>qemu64</model>
  </cpu>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11/disk'/>
      <target dev='vda' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </disk>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='bootflow' volume='volume-1'/>
      <target dev='vdb' bus='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>
    </disk>
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <interface type='bridge'>
      <mac address='52:54:00:00:01:11'/>
      <source bridge='br-test'/>
      <target dev='tap2f1d3c4b-5a'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:33:00:56'/>
      <source bridge='br-test'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>
    <serial type='file'>
      <source path='/var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11/console.log' append='on'/>
      <target type='isa-serial' port='0'>
        <model name='isa-serial'/>
      </target>
    </serial>
    <console type='file'>
      <source path='/var/lib/bootflow/instances/1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11/console.log' append='on'/>
      <target type='serial' port='0'/>
    </console>
    <input type='mouse' bus='ps2'/>
    <input type='keyboard' bus='ps2'/>
    <audio id='1' type='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def test_domain_xml_basic_shape():
    root = ET.fromstring(v.domain_xml(spec()))
    assert root.tag == "domain" and root.get("type") == "qemu"
    assert root.findtext("uuid") == UUID
    assert root.find("memory").get("unit") == "MiB" and root.findtext("memory") == "128"
    t = root.find("./os/type")
    assert (t.text, t.get("arch"), t.get("machine")) == ("hvm", "x86_64", "pc")
    assert root.find("./os/boot").get("dev") == "hd"
    disk = root.find("./devices/disk")
    assert disk.get("type") == "file" and disk.find("driver").get("type") == "qcow2"
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    iface = root.find("./devices/interface")
    assert iface.get("type") == "bridge"
    assert iface.find("source").get("bridge") == "br-test"
    assert iface.find("mac").get("address") == "52:54:00:00:01:11"
    assert iface.find("model").get("type") == "virtio"
    assert iface.find("target").get("dev") == "tap2f1d3c4b-5a"  # tap + 11 chars of the port id
    assert root.find("./devices/serial").get("type") == "file"
    assert root.find("./devices/serial/source").get("path").endswith("/console.log")
    assert root.find("./devices/console/target").get("type") == "serial"
    assert root.find("./devices/memballoon").get("model") == "none"
    tb = root.find("./features/tcg/tb-cache")
    assert tb.get("unit") == "MiB" and tb.text == "32"


def test_no_tcg_feature_for_kvm_or_without_size():
    assert ET.fromstring(v.domain_xml(spec(virt_type="kvm"))).find("./features/tcg") is None
    assert ET.fromstring(v.domain_xml(spec(tb_cache_mb=None))).find("./features/tcg") is None


@pytest.mark.parametrize("title", [
    "a<b>&'\"c",
    "</title><devices><disk/></devices>",
    "line1\nline2\r\n\tline3",
    "ctrl\x00\x01\x1bchars \U0001F600",
    "]]><!--",
])
def test_hostile_title_stays_well_formed(title):
    xml = v.domain_xml(spec(title=title))
    root = ET.fromstring(xml)  # well-formed
    got = root.findtext("title")
    assert "\n" not in got and "\r" not in got and "\t" not in got  # libvirt refuses line breaks
    assert len(root.findall("./devices/disk")) == 1
    assert " ".join(v.xml_text(title).split()) == got


def test_hostile_name_is_escaped():
    name = "a<b>&'\"c"
    root = ET.fromstring(v.domain_xml(spec(name=name)))
    assert root.findtext("name") == name


@pytest.mark.parametrize("name", ["", " x", "a/b", "a\nb", "a\x01b"])
def test_bad_names_refused(name):
    with pytest.raises(v.VirtError):
        v.domain_xml(spec(name=name))


def test_hostile_paths_and_bridge():
    s = spec(disks=[dict(path="/tmp/a'b\"<c>&d/disk")], console_log="/tmp/x&y/console.log")
    root = ET.fromstring(v.domain_xml(s))
    assert root.find("./devices/disk/source").get("file") == "/tmp/a'b\"<c>&d/disk"
    with pytest.raises(v.VirtError):
        v.domain_xml(spec(interfaces=[dict(bridge="br'><x")]))


def test_config_drive_cdrom_and_volume_disk():
    s = spec(disks=[dict(path="/d/disk"), dict(pool="bootflow", volume="volume-1"),
                    dict(path="/d/disk.config", device_type="cdrom", bus="sata")])
    disks = v.disk_targets(v.domain_xml(s))
    assert [d["dev"] for d in disks] == ["vda", "vdb", "sda"]
    assert disks[1]["type"] == "volume" and disks[1]["pool"] == "bootflow" and disks[1]["volume"] == "volume-1"
    assert disks[2]["device_type"] == "cdrom" and disks[2]["readonly"] and disks[2]["format"] == "raw"
    assert disks[2]["bus"] == "sata"


@pytest.mark.parametrize("disks, msg", [
    ([dict(path="/a", pool="p", volume="v")], "either path or pool"),
    ([dict(pool="p")], "pool and volume"),
    ([dict(path="relative")], "absolute"),
    ([dict(path="/a", device="xda")], "invalid device"),
    ([dict(path="/a", device="sda", bus="virtio")], "does not fit"),
    ([dict(path="/a", device="vda"), dict(path="/b", device="vda")], "more than one"),
    ([dict(path="/a", format="vmdk")], "format"),
])
def test_bad_disks(disks, msg):
    with pytest.raises(v.VirtError, match=msg):
        v.domain_xml(spec(disks=disks))


def test_bad_interfaces():
    with pytest.raises(v.VirtError, match="MAC"):
        v.domain_xml(spec(interfaces=[dict(bridge="br0", mac="zz:00:00:00:00:00")]))
    with pytest.raises(v.VirtError, match="same MAC"):
        v.domain_xml(spec(interfaces=[dict(bridge="br0", mac="52:54:00:00:00:01"),
                                      dict(bridge="br1", mac="52:54:00:00:00:01")]))
    with pytest.raises(v.VirtError, match="reserved"):
        v.domain_xml(spec(interfaces=[dict(bridge="br0", target="vnet3")]))
    with pytest.raises(v.VirtError, match="15"):
        v.domain_xml(spec(interfaces=[dict(bridge="br0", target="a" * 16)]))


def test_bad_uuid_and_sizes():
    with pytest.raises(v.VirtError, match="UUID"):
        v.domain_xml(spec(uuid="nope"))
    with pytest.raises(v.VirtError, match="memory_mb"):
        v.domain_xml(spec(memory_mb=0))


# ---- virt type

CPU_VMX = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr vmx sse2\n"
CPU_SVM = "processor\t: 0\nflags\t\t: fpu svm lm\n"
CPU_PVM = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr hypervisor sse2 avx2\n"


@pytest.mark.parametrize("requested, cpu, kvm, want", [
    ("auto", CPU_VMX, True, "kvm"),
    ("auto", CPU_SVM, True, "kvm"),
    ("auto", CPU_VMX, False, "qemu"),      # no /dev/kvm
    ("auto", CPU_PVM, True, "qemu"),       # /dev/kvm backed by PVM, no vmx/svm: this machine
    ("auto", "", True, "qemu"),
    (None, CPU_PVM, True, "qemu"),
    ("qemu", CPU_VMX, True, "qemu"),
    ("kvm", CPU_PVM, False, "kvm"),        # explicit wins
])
def test_choose_virt_type(requested, cpu, kvm, want):
    assert v.choose_virt_type(requested, cpu, kvm) == want


def test_choose_virt_type_rejects_unknown():
    with pytest.raises(v.VirtError):
        v.choose_virt_type("xen", CPU_VMX, True)


def test_vmx_substring_is_not_a_flag():
    assert v.choose_virt_type("auto", "flags\t: vmxnet3_fake avx\n", True) == "qemu"


# ---- parsing, normalisation, comparison


def test_parsers_on_libvirt_xml():
    disks = v.disk_targets(LIBVIRT_INACTIVE)
    assert [(d["dev"], d["type"]) for d in disks] == [("vda", "file"), ("vdb", "volume")]
    ifs = v.interfaces(LIBVIRT_INACTIVE)
    assert [i["mac"] for i in ifs] == ["52:54:00:00:01:11", "52:54:00:33:00:56"]
    assert ifs[0]["target"] == "tap2f1d3c4b-5a" and ifs[1]["target"] is None
    assert v.disk_uses(LIBVIRT_INACTIVE, pool="bootflow", volume="volume-1") == ["vdb"]
    assert v.disk_uses(LIBVIRT_INACTIVE, path="/var/lib/bootflow/instances/%s/disk" % UUID) == ["vda"]
    assert v.domain_uuid(LIBVIRT_INACTIVE) == UUID


def test_desired_matches_libvirt_inactive_xml():
    desired = v.domain_xml(spec(
        disks=[dict(path="/var/lib/bootflow/instances/%s/disk" % UUID), dict(pool="bootflow", volume="volume-1")],
        interfaces=[dict(mac="52:54:00:00:01:11", bridge="br-test", port_id="2f1d3c4b-5a6e-4f70-8a9b"),
                    dict(bridge="br-test")]))
    # the second interface has no MAC: differs until the MAC is carried over
    assert v.definition_differs(LIBVIRT_INACTIVE, desired)
    carried = v.carry_over(LIBVIRT_INACTIVE, desired)
    assert not v.definition_differs(LIBVIRT_INACTIVE, carried)


def test_a_console_log_that_truncates_at_each_start_is_redefined_to_append():
    """Domains defined before the console log appended are redefined once: a stop/start or reboot must add to
    the log (its second boot is what a reboot's test reads), not replace it."""
    truncating = LIBVIRT_INACTIVE.replace(" append='on'", "")
    desired = v.carry_over(LIBVIRT_INACTIVE, v.domain_xml(fixture_spec()))
    assert not v.definition_differs(LIBVIRT_INACTIVE, desired)
    assert v.definition_differs(truncating, v.carry_over(truncating, desired))


def fixture_spec(**kw):
    """The spec LIBVIRT_INACTIVE was made from (the volume vdb came from volume_attach)."""
    s = dict(interfaces=[dict(mac="52:54:00:00:01:11", bridge="br-test", port_id="2f1d3c4b-5a6e-4f70-8a9b"),
                         dict(bridge="br-test")])
    s.update(kw)
    return spec(**s)


@pytest.mark.parametrize("change", [
    dict(memory_mb=256), dict(vcpus=2), dict(title="web-2"), dict(tb_cache_mb=64), dict(tb_cache_mb=None),
    dict(console_log="/elsewhere/console.log"), dict(virt_type="kvm"), dict(interfaces=[dict(bridge="br-test")]),
    dict(disks=[dict(path="/other/disk")]),
    dict(disks=[dict(path="/var/lib/bootflow/instances/%s/disk" % UUID, format="raw")]),
])
def test_any_managed_change_is_seen(change):
    same = v.carry_over(LIBVIRT_INACTIVE, v.domain_xml(fixture_spec()))
    assert not v.definition_differs(LIBVIRT_INACTIVE, same)
    changed = v.carry_over(LIBVIRT_INACTIVE, v.domain_xml(fixture_spec(**change)))
    assert v.definition_differs(LIBVIRT_INACTIVE, changed)


def test_normalize_xml_ignores_whitespace_and_attribute_order():
    a = "<a y='1' x='2'>\n  <b>t</b>\n</a>"
    b = '<a x="2" y="1"><b>t</b></a>'
    assert v.normalize_xml(a) == v.normalize_xml(b)
    assert v.normalize_xml(a) != v.normalize_xml('<a x="2" y="1"><b>u</b></a>')


def test_malformed_xml():
    with pytest.raises(v.VirtError, match="malformed"):
        v.normalize_xml("<a><b></a>")


# ---- carry-over


def test_carry_over_keeps_uuid_when_new_has_none():
    new = v.domain_xml(spec(uuid=None))
    out = v.carry_over(LIBVIRT_INACTIVE, new)
    assert v.domain_uuid(out) == UUID
    root = ET.fromstring(out)
    assert [c.tag for c in root][:2] == ["name", "uuid"]


def test_carry_over_refuses_other_uuid():
    new = v.domain_xml(spec(uuid="00000000-0000-0000-0000-000000000001"))
    with pytest.raises(v.VirtError, match="already exists with uuid"):
        v.carry_over(LIBVIRT_INACTIVE, new)


def test_carry_over_macs_by_target_then_bridge():
    new = v.domain_xml(spec(interfaces=[dict(bridge="br-test"),
                                        dict(bridge="br-test", port_id="2f1d3c4b-5a6e-4f70-8a9b")]))
    out = v.interfaces(v.carry_over(LIBVIRT_INACTIVE, new))
    # the tap-named one gets its old MAC by target; the other takes the remaining MAC on the bridge
    assert out[1]["mac"] == "52:54:00:00:01:11"
    assert out[0]["mac"] == "52:54:00:33:00:56"


def test_carry_over_given_mac_wins_and_is_not_duplicated():
    new = v.domain_xml(spec(interfaces=[dict(bridge="br-test", mac="52:54:00:33:00:56"), dict(bridge="br-test")]))
    out = v.interfaces(v.carry_over(LIBVIRT_INACTIVE, new))
    assert out[0]["mac"] == "52:54:00:33:00:56"
    assert out[1]["mac"] == "52:54:00:00:01:11"


def test_carry_over_keeps_attached_volumes():
    new = v.domain_xml(spec())  # only vda
    out = v.carry_over(LIBVIRT_INACTIVE, new)
    assert [d["dev"] for d in v.disk_targets(out)] == ["vda", "vdb"]
    out2 = v.carry_over(LIBVIRT_INACTIVE, new, keep_extra_disks=False)
    assert [d["dev"] for d in v.disk_targets(out2)] == ["vda"]


def test_carry_over_result_is_well_formed():
    out = v.carry_over(LIBVIRT_INACTIVE, v.domain_xml(spec(title="x<&>\"'")))
    assert ET.fromstring(out).findtext("title") == "x<&>\"'"


# ---- devices


def test_next_device():
    assert v.next_device([]) == "vdb"
    assert v.next_device(["vda"]) == "vdb"
    assert v.next_device(["vda", "vdb", "vdd"]) == "vdc"
    used = ["vd" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    assert v.next_device(used) == "vdaa"
    assert v.next_device([], prefix="sd", skip_first=False) == "sda"


def test_tap_name():
    assert v.tap_name("2f1d3c4b-5a6e-4f70") == "tap2f1d3c4b-5a"
    assert len(v.tap_name("x" * 40)) == 14


def test_pool_and_volume_xml():
    pool = ET.fromstring(v.dir_pool_xml("bootflow", "/var/lib/bootflow/volumes"))
    assert pool.get("type") == "dir" and pool.findtext("./target/path") == "/var/lib/bootflow/volumes"
    assert v.pool_path(v.dir_pool_xml("p", "/x")) == "/x"
    vol = v.volume_xml("volume-1", 1024 ** 3, "qcow2")
    assert v.volume_format(vol) == "qcow2"
    assert ET.fromstring(vol).find("capacity").text == str(1024 ** 3)
    for bad in ("", "a/b", "..", ".hidden", "x" * 300):
        with pytest.raises(v.VirtError):
            v.check_volume_name(bad)
