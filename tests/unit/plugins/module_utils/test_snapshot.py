# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The snapshot's host logic (module_utils/host/snapshot.py) against a fake libvirt domain: a live copy is a backup
job of the root disk alone, a cold one is qemu-img convert, a copy that exists is whole, a failed or timed-out copy
leaves nothing, and a volume-backed domain is refused. The real guest is tests/integration/test_server_actions.py."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import snapshot
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import libvirt

UUID = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"
RUNNING, SHUTOFF = 1, 5


def domain_xml(root_source):
    return ("<domain><devices>"
            "<disk type='file' device='cdrom'><source file='/x/disk.config'/><target dev='hda'/></disk>"
            "<disk type='file' device='disk'><source file='%s'/><target dev='vda'/></disk>"
            "<disk type='file' device='disk'><source file='/pool/volume-1'/><target dev='vdb'/></disk>"
            "</devices></domain>" % root_source)


class FakeDom:
    def __init__(self, state, xml, job_polls=1, success=True):
        self._state, self.xml, self.calls = state, xml, []
        # polls of jobStats that find the job running, once backupBegin started it (None: it never ends)
        self.polls_after_begin, self.job_polls, self.success = job_polls, 0, success

    def name(self):
        return "bootflow-" + UUID

    def state(self):
        return [self._state, 0]

    def isActive(self):
        return self._state != SHUTOFF

    def XMLDesc(self, flags):
        return self.xml

    def backupBegin(self, xml, checkpoint, flags):
        self.calls.append(("backupBegin", xml))
        self.job_polls = self.polls_after_begin
        target = ET.fromstring(xml).find("./disks/disk/target").get("file")
        with open(target, "wb") as f:
            f.write(b"QFI\xfb" + b"\0" * 100)

    def jobStats(self, flags):
        if flags == libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED:
            return {"type": 3 if self.success else 4, "success": self.success, "errmsg": "no space left"}
        if self.job_polls is not None and self.job_polls > 0:
            self.job_polls -= 1
            return {"type": 2}
        return {"type": 2} if self.job_polls is None else {"type": libvirt.VIR_DOMAIN_JOB_NONE}

    def abortJob(self):
        self.calls.append(("abortJob",))
        self.job_polls = 0


class FakeConn:
    def __init__(self, dom):
        self.dom = dom

    def lookupByName(self, name):
        return self.dom


@pytest.fixture
def inst(tmp_path):
    d = tmp_path / UUID
    d.mkdir()
    (d / "disk").write_bytes(b"overlay")
    return tmp_path


def params(instances_path, **extra):
    return dict(dict(instance_uuid=UUID, instances_path=str(instances_path), state="present", timeout=5), **extra)


def no_command(argv):
    raise AssertionError("no command expected, got %r" % (argv,))


def test_a_running_guest_is_copied_by_a_backup_job_of_its_root_disk_alone(inst):
    dom = FakeDom(RUNNING, domain_xml(str(inst / UUID / "disk")))
    res = snapshot.snapshot_step(FakeConn(dom), params(inst), no_command)
    assert (res["changed"], res["method"]) == (True, "live")
    [(call, xml)] = dom.calls
    disks = ET.fromstring(xml).findall("./disks/disk")
    assert call == "backupBegin" and ET.fromstring(xml).get("mode") == "push"
    assert [(d.get("name"), d.get("backup"), d.find("driver").get("type")) for d in disks] == [("vda", "yes", "qcow2")]
    assert disks[0].find("target").get("file") == res["path"] + ".part"     # written aside, renamed when whole
    assert res["path"] == str(inst / UUID / "snapshot.qcow2") and os.path.exists(res["path"])
    assert not os.path.exists(res["path"] + ".part") and res["size"] == 104


def test_a_stopped_guest_is_copied_by_qemu_img_convert(inst):
    dom = FakeDom(SHUTOFF, domain_xml(str(inst / UUID / "disk")))
    seen = []

    def run(argv):
        seen.append(argv)
        with open(argv[-1], "wb") as f:
            f.write(b"flat")
        return 0, "", ""

    res = snapshot.snapshot_step(FakeConn(dom), params(inst), run)
    disk = str(inst / UUID / "disk")
    assert seen == [["qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", disk, res["path"] + ".part"]]
    assert (res["method"], res["size"], dom.calls) == ("cold", 4, [])


def test_a_failed_copy_leaves_no_file(inst):
    dom = FakeDom(SHUTOFF, domain_xml(str(inst / UUID / "disk")))

    def run(argv):
        with open(argv[-1], "wb") as f:
            f.write(b"half")
        return 1, "", "No space left on device"

    with pytest.raises(BootflowError, match="qemu-img convert .* failed .*No space left"):
        snapshot.snapshot_step(FakeConn(dom), params(inst), run)
    assert sorted(os.listdir(inst / UUID)) == ["disk"]


def test_a_failed_backup_job_leaves_no_file(inst):
    dom = FakeDom(RUNNING, domain_xml(str(inst / UUID / "disk")), success=False)
    with pytest.raises(BootflowError, match="backup job .* failed: no space left"):
        snapshot.snapshot_step(FakeConn(dom), params(inst), no_command)
    assert sorted(os.listdir(inst / UUID)) == ["disk"]


def test_a_copy_past_its_timeout_is_aborted_and_leaves_no_file(inst, monkeypatch):
    monkeypatch.setattr(snapshot, "POLL", 0.01)
    dom = FakeDom(RUNNING, domain_xml(str(inst / UUID / "disk")), job_polls=None)   # never finishes
    with pytest.raises(BootflowError, match="did not finish within 0 s"):
        snapshot.snapshot_step(FakeConn(dom), params(inst, timeout=0), no_command)
    assert ("abortJob",) in dom.calls
    assert sorted(os.listdir(inst / UUID)) == ["disk"]


def test_a_volume_backed_domain_is_refused_before_anything(inst):
    dom = FakeDom(RUNNING, domain_xml("/pool/volume-root"))
    with pytest.raises(BootflowError, match="has no root disk .*boots from a volume"):
        snapshot.snapshot_step(FakeConn(dom), params(inst), no_command)
    assert dom.calls == []


def test_check_mode_says_how_and_copies_nothing(inst):
    dom = FakeDom(RUNNING, domain_xml(str(inst / UUID / "disk")))
    res = snapshot.snapshot_step(FakeConn(dom), params(inst), no_command, check_mode=True)
    assert (res["changed"], res["method"], dom.calls) == (True, "live", [])
    assert sorted(os.listdir(inst / UUID)) == ["disk"]


def test_state_absent_removes_a_copy_and_its_part_and_is_idempotent(inst):
    for name in ("snapshot.qcow2", "snapshot.qcow2.part"):
        (inst / UUID / name).write_bytes(b"x")
    assert snapshot.snapshot_step(None, params(inst, state="absent"), no_command)["changed"] is True
    assert sorted(os.listdir(inst / UUID)) == ["disk"]
    assert snapshot.snapshot_step(None, params(inst, state="absent"), no_command)["changed"] is False


def test_a_missing_domain_is_a_clear_error(inst, monkeypatch):
    monkeypatch.setattr(snapshot, "lookup_domain", lambda conn, name: None)
    with pytest.raises(BootflowError, match="does not exist on this host: nothing to snapshot"):
        snapshot.snapshot_step(FakeConn(None), params(inst), no_command)
