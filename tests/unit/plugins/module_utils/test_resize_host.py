# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resize's host logic (module_utils/host/resize.py) against a fake libvirt domain: the guest powered off and its
disk, config drive and definition kept aside whole (a re-run keeps the copy it made), a confirm removes the copy, a
revert brings back the files and the old definition and starts the guest when asked, check mode touches nothing.
The real guest is tests/integration/test_server_actions.py."""

from __future__ import annotations

import os

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import resize

UUID = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"
RUNNING, SHUTOFF = 1, 5
OLD_XML, NEW_XML = "<domain><memory>131072</memory></domain>", "<domain><memory>262144</memory></domain>"


class FakeDom:
    def __init__(self, state, xml):
        self._state, self.xml, self.calls = state, xml, []

    def name(self):
        return "bootflow-" + UUID

    def state(self):
        return [self._state, 0]

    def isActive(self):
        return self._state != SHUTOFF

    def hasManagedSaveImage(self, flags=0):
        return False

    def isPersistent(self):
        return True

    def XMLDesc(self, flags=0):
        return self.xml

    def shutdown(self):
        self.calls.append("shutdown")
        self._state = SHUTOFF

    def destroy(self):
        self.calls.append("destroy")
        self._state = SHUTOFF

    def create(self):
        self.calls.append("create")
        self._state = RUNNING


class FakeConn:
    def __init__(self, dom):
        self.dom, self.defined = dom, []

    def lookupByName(self, name):
        return self.dom

    def defineXML(self, xml):
        self.defined.append(xml)
        self.dom.xml = xml
        return self.dom


@pytest.fixture
def inst(tmp_path):
    d = tmp_path / UUID
    d.mkdir()
    (d / "disk").write_bytes(b"old overlay")
    (d / "disk.config").write_bytes(b"old config drive")
    (d / "console.log").write_text("boot 1\n")
    return {"instance_uuid": UUID, "instances_path": str(tmp_path), "shutdown_timeout": 5, "wait_timeout": 5,
            "dir": d, "kept": tmp_path / (UUID + "_resize")}


def test_resized_powers_off_and_keeps_the_disk_config_drive_and_definition_aside(inst):
    dom = FakeDom(RUNNING, OLD_XML)
    out = resize.resize_step(FakeConn(dom), dict(inst, state="resized"))
    assert out["changed"] and out["state"] == "shutoff" and dom.calls == ["shutdown"]
    kept = inst["kept"]
    assert sorted(os.listdir(kept)) == ["disk", "disk.config", "domain.xml"]
    assert (kept / "disk").read_bytes() == b"old overlay" and (kept / "domain.xml").read_text() == OLD_XML
    assert (inst["dir"] / "disk").read_bytes() == b"old overlay"       # the instance keeps its own files
    assert oct(kept.stat().st_mode & 0o777) == "0o700" and not os.path.exists(str(kept) + ".part")
    # a re-run finds the copy whole and the guest off: nothing to do, the copy is not made again
    (inst["dir"] / "disk").write_bytes(b"grown by image_fetch")
    again = resize.resize_step(FakeConn(dom), dict(inst, state="resized"))
    assert not again["changed"] and (kept / "disk").read_bytes() == b"old overlay"


def test_a_half_made_copy_is_made_again(inst):
    part = str(inst["kept"]) + ".part"
    os.makedirs(part)
    with open(os.path.join(part, "disk"), "wb") as f:
        f.write(b"half")
    resize.resize_step(FakeConn(FakeDom(SHUTOFF, OLD_XML)), dict(inst, state="resized"))
    assert (inst["kept"] / "disk").read_bytes() == b"old overlay" and not os.path.exists(part)


def test_revert_brings_back_the_old_files_and_definition_and_starts_the_guest(inst):
    dom = FakeDom(RUNNING, OLD_XML)
    conn = FakeConn(dom)
    resize.resize_step(conn, dict(inst, state="resized"))
    (inst["dir"] / "disk").write_bytes(b"grown")          # the new flavor's spawn
    dom.xml, dom._state = NEW_XML, RUNNING
    out = resize.resize_step(conn, dict(inst, state="reverted", power_on=True))
    assert out["changed"] and out["state"] == "running" and dom.calls[-2:] == ["destroy", "create"]
    assert conn.defined == [OLD_XML] and (inst["dir"] / "disk").read_bytes() == b"old overlay"
    assert (inst["dir"] / "console.log").read_text() == "boot 1\n" and not inst["kept"].exists()
    # a second revert: nothing kept, the guest runs - nothing to do
    again = resize.resize_step(conn, dict(inst, state="reverted", power_on=True))
    assert not again["changed"] and dom.calls[-1] == "create" and len(dom.calls) == 3


def test_revert_of_a_stopped_instance_leaves_it_off(inst):
    dom = FakeDom(SHUTOFF, OLD_XML)
    conn = FakeConn(dom)
    resize.resize_step(conn, dict(inst, state="resized"))
    out = resize.resize_step(conn, dict(inst, state="reverted", power_on=False))
    assert out["state"] == "shutoff" and "create" not in dom.calls and conn.defined == [OLD_XML]


def test_confirm_removes_the_copy_and_a_second_confirm_changes_nothing(inst):
    resize.resize_step(FakeConn(FakeDom(RUNNING, OLD_XML)), dict(inst, state="resized"))
    assert resize.resize_step(FakeConn(FakeDom(RUNNING, NEW_XML)), dict(inst, state="confirmed"))["changed"]
    assert not inst["kept"].exists() and (inst["dir"] / "disk").exists()
    assert not resize.resize_step(FakeConn(FakeDom(RUNNING, NEW_XML)), dict(inst, state="confirmed"))["changed"]


def test_check_mode_touches_nothing(inst):
    dom = FakeDom(RUNNING, OLD_XML)
    out = resize.resize_step(FakeConn(dom), dict(inst, state="resized"), check_mode=True)
    assert out["changed"] and dom.calls == [] and not inst["kept"].exists()


def test_a_missing_domain_is_a_clear_error(inst):
    with pytest.raises(BootflowError, match="does not exist on this host: nothing to resize"):
        resize.resize_step(FakeConn(None), dict(inst, state="resized"))
    with pytest.raises(BootflowError, match="no definition was kept: nothing to revert"):
        resize.resize_step(FakeConn(None), dict(inst, state="reverted"))
