# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The power actions' host logic (module_utils/host/power.py) against a fake libvirt domain: which libvirt calls
each action makes from each state, idempotence, the soft reboot's fallback, check mode and clear refusals. The
real guest is tests/integration/test_server_actions.py."""

from __future__ import annotations

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host import power

RUNNING, PAUSED, SHUTOFF = 1, 3, 5


class FakeDom:
    """A domain whose state moves as libvirt's would; ``acpi``: whether the guest obeys the power button."""

    def __init__(self, state=RUNNING, saved=False, acpi=True):
        self._state, self.saved, self.acpi, self.calls = state, saved, acpi, []

    def name(self):
        return "bootflow-x"

    def state(self):
        return [self._state, 0]

    def isActive(self):
        return self._state != SHUTOFF

    def hasManagedSaveImage(self, flags):
        return self.saved

    def _call(self, what, state=None):
        self.calls.append(what)
        if state is not None:
            self._state = state

    def shutdown(self):
        self._call("shutdown", SHUTOFF if self.acpi else None)

    def destroy(self):
        self._call("destroy", SHUTOFF)

    def create(self):
        self._call("create", RUNNING)
        self.saved = False

    def suspend(self):
        self._call("suspend", PAUSED)

    def resume(self):
        self._call("resume", RUNNING)

    def managedSave(self, flags):
        self._call("managedSave", SHUTOFF)
        self.saved = True

    def managedSaveRemove(self, flags):
        self._call("managedSaveRemove")
        self.saved = False


class FakeConn:
    def __init__(self, dom):
        self.dom = dom

    def lookupByName(self, name):
        return self.dom


def run(dom, action, check_mode=False, **p):
    return power.power_step(FakeConn(dom), dict(dict(name="bootflow-x", action=action, wait=True, wait_timeout=2,
                                                     shutdown_timeout=1, soft_reboot_timeout=1), **p),
                            check_mode=check_mode)


@pytest.mark.parametrize("action,state,saved,calls,after", [
    ("stop", RUNNING, False, ["shutdown"], "shutoff"),
    ("stop", PAUSED, False, ["destroy"], "shutoff"),              # a paused guest cannot see the button
    ("stop", SHUTOFF, True, ["managedSaveRemove"], "shutoff"),    # a suspended one starts cold afterwards
    ("start", SHUTOFF, False, ["create"], "running"),
    ("reboot_soft", RUNNING, False, ["shutdown", "create"], "running"),
    ("reboot_hard", RUNNING, False, ["destroy", "create"], "running"),
    ("reboot_hard", SHUTOFF, True, ["managedSaveRemove", "create"], "running"),
    ("pause", RUNNING, False, ["suspend"], "paused"),
    ("unpause", PAUSED, False, ["resume"], "running"),
    ("suspend", RUNNING, False, ["managedSave"], "shutoff"),
    ("suspend", PAUSED, False, ["managedSave"], "shutoff"),
    ("resume", SHUTOFF, True, ["create"], "running"),
])
def test_each_action_makes_the_libvirt_calls_nova_makes(action, state, saved, calls, after):
    dom = FakeDom(state, saved)
    res = run(dom, action)
    assert dom.calls == calls
    assert (res["changed"], res["state"], res["power_state"]) == (True, after, power.POWER_STATES[after])
    assert res["managed_save"] is (action == "suspend")


@pytest.mark.parametrize("action,state,saved", [
    ("stop", SHUTOFF, False), ("start", RUNNING, False), ("pause", PAUSED, False), ("unpause", RUNNING, False),
    ("suspend", SHUTOFF, True), ("resume", RUNNING, False),
])
def test_a_domain_already_where_the_action_leads_is_left_alone(action, state, saved):
    dom = FakeDom(state, saved)
    res = run(dom, action)
    assert (dom.calls, res["changed"]) == ([], False)


@pytest.mark.parametrize("action,state,saved,msg", [
    ("start", SHUTOFF, True, "resume it instead"),
    ("reboot_soft", PAUSED, False, "needs a running guest"),
    ("pause", SHUTOFF, False, "only a running guest can be paused"),
    ("unpause", SHUTOFF, False, "not paused"),
    ("suspend", SHUTOFF, False, "only a running or paused guest"),
    ("resume", SHUTOFF, False, "nothing to resume"),
])
def test_an_action_the_domain_cannot_take_is_refused_without_a_call(action, state, saved, msg):
    dom = FakeDom(state, saved)
    with pytest.raises(BootflowError, match=msg):
        run(dom, action)
    assert dom.calls == []


def test_a_guest_that_ignores_the_button_is_powered_off_after_the_timeout():
    dom = FakeDom(acpi=False)
    res = run(dom, "stop", shutdown_timeout=1)
    assert dom.calls == ["shutdown", "destroy"] and res["forced"] and res["state"] == "shutoff"
    assert "did not shut down within" in res["warnings"][0]


def test_a_soft_reboot_the_guest_ignores_falls_back_to_a_hard_one():
    dom = FakeDom(acpi=False)
    res = run(dom, "reboot_soft", soft_reboot_timeout=1)
    assert dom.calls == ["shutdown", "destroy", "create"] and res["forced"] and res["state"] == "running"
    assert "rebooted hard" in res["warnings"][0]


def test_check_mode_makes_no_call_and_says_where_the_domain_would_be():
    dom = FakeDom()
    res = run(dom, "suspend", check_mode=True)
    assert dom.calls == [] and res["changed"] and (res["state"], res["managed_save"]) == ("shutoff", True)
    assert res["diff"] == {"before": "state: running\nmanaged_save: no\n", "after": "state: shutoff\nmanaged_save: yes\n"}


def test_a_missing_domain_and_a_negative_timeout_are_clear_errors(monkeypatch):
    dom = FakeDom()
    with pytest.raises(BootflowError, match="shutdown_timeout must be 0 or more seconds"):
        run(dom, "stop", shutdown_timeout=-1)
    monkeypatch.setattr(power, "lookup_domain", lambda conn, name: None)
    with pytest.raises(BootflowError, match="domain bootflow-x does not exist on this host"):
        run(dom, "stop")
    assert dom.calls == []


def test_rebuild_powers_off_and_removes_only_the_old_root_disk_and_config_drive(tmp_path, monkeypatch):
    from ansible_collections.bootflow.cloud.plugins.module_utils.host import rebuild
    uuid = "1c9b3c1e-6f0b-4f7a-9d55-8a3d8f0e2c11"
    inst = tmp_path / uuid
    inst.mkdir()
    for name in ("disk", "disk.config", "console.log"):
        (inst / name).write_text(name)
    dom = FakeDom(RUNNING, saved=False)
    p = dict(instance_uuid=uuid, instances_path=str(tmp_path), shutdown_timeout=1)
    planned = rebuild.rebuild_step(FakeConn(dom), p, check_mode=True)
    assert planned["changed"] and dom.calls == [] and sorted(x.name for x in inst.iterdir()) == [
        "console.log", "disk", "disk.config"]
    res = rebuild.rebuild_step(FakeConn(dom), p)
    assert dom.calls == ["shutdown"] and res["state"] == "shutoff"
    assert sorted(x.name for x in inst.iterdir()) == ["console.log"]
    assert res["removed"] == [str(inst / "disk"), str(inst / "disk.config")]
    assert rebuild.rebuild_step(FakeConn(dom), p)["changed"] is False      # a second run: nothing left to do
    monkeypatch.setattr(rebuild, "lookup_domain", lambda conn, name: None)
    with pytest.raises(BootflowError, match="nothing to rebuild"):
        rebuild.rebuild_step(FakeConn(dom), p)
