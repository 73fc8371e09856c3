# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's power actions on the host (the libvirt driver's power_off, power_on, reboot, pause,
unpause, suspend and resume) on an instance's existing domain.

PRIVATE to the collection: may change at any time. No ansible imports (see virt.py).

Which action is allowed in which vm_state is the controller's business (plugin_utils/compute/actions.py);
here an action only looks at what libvirt says, so that a domain already where the action leads is left
alone (idempotence) and a run that died half-way can be repeated.
"""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import seconds_option
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    ACTIVE_STATES,
    domain_state_name,
    err_msg,
    libvirt,
    lookup_domain,
    wait_for_state,
)

# Nova's [DEFAULT] shutdown_timeout and [libvirt] wait_soft_reboot_seconds
DEFAULT_SHUTDOWN_TIMEOUT = 60
DEFAULT_SOFT_REBOOT_TIMEOUT = 120

ACTIONS = ("stop", "start", "reboot_soft", "reboot_hard", "pause", "unpause", "suspend", "resume")

# nova/compute/power_state.py from the libvirt state (nova/virt/libvirt/guest.py LIBVIRT_POWER_STATE)
POWER_STATES = {
    "nostate": "NOSTATE", "running": "RUNNING", "blocked": "RUNNING", "paused": "PAUSED", "shutdown": "SHUTDOWN",
    "shutoff": "SHUTDOWN", "crashed": "CRASHED", "pmsuspended": "SUSPENDED", "absent": "NOSTATE",
}


def _running(state):
    return state in ("running", "blocked")


def has_managed_save(dom):
    try:
        return bool(dom.hasManagedSaveImage(0))
    except libvirt.libvirtError:
        return False


def power_off(dom, timeout, result):
    """A clean shutdown (ACPI power button) and, when the guest is still up after ``timeout`` seconds, a power
    off - Nova's ``power_off`` with ``clean_shutdown``. A paused guest cannot see the button: it is powered off
    at once. Sets ``result['forced']`` and a warning when it had to force."""
    name = dom.name()
    state = domain_state_name(dom)
    if state not in ACTIVE_STATES:
        return
    try:
        if state == "paused" or timeout <= 0:
            dom.destroy()
            result["forced"] = True
            return
        dom.shutdown()
    except libvirt.libvirtError as e:
        if dom.isActive():
            raise BootflowError("cannot shut down domain %s: %s" % (name, err_msg(e)), state=domain_state_name(dom))
        return
    ok, _last = wait_for_state(dom, lambda s: s not in ACTIVE_STATES, timeout)
    if ok:
        return
    try:
        dom.destroy()
    except libvirt.libvirtError as e:
        if dom.isActive():
            raise BootflowError("domain %s ignored the ACPI shutdown for %d s and destroy failed: %s"
                                % (name, timeout, err_msg(e)), state=domain_state_name(dom))
    result["forced"] = True
    result["warnings"].append("domain %s did not shut down within %d s; it was powered off" % (name, timeout))


def start(dom, what, wait, timeout):
    """Start a defined domain (from its managed save image when it has one) and wait until it runs."""
    try:
        dom.create()
    except libvirt.libvirtError as e:
        raise BootflowError("cannot %s domain %s: %s" % (what, dom.name(), err_msg(e)), state=domain_state_name(dom))
    _wait(dom, _running, "running", wait, timeout)


def _wait(dom, predicate, wanted, wait, timeout):
    if not wait:
        return
    ok, last = wait_for_state(dom, predicate, timeout)
    if not ok:
        raise BootflowError("domain %s did not reach state %s within %d s (last state %s)"
                            % (dom.name(), wanted, timeout, last), state=last)


def _hard_reboot(dom, wait, timeout):
    """Power off (no shutdown), forget a managed save image, start again: a cold boot (Nova's _hard_reboot)."""
    if dom.isActive():
        try:
            dom.destroy()
        except libvirt.libvirtError as e:
            if dom.isActive():
                raise BootflowError("cannot power off domain %s: %s" % (dom.name(), err_msg(e)),
                                    state=domain_state_name(dom))
    if has_managed_save(dom):
        dom.managedSaveRemove(0)
    start(dom, "start", wait, timeout)


def power_step(conn, p, check_mode=False):
    """p: name, action (ACTIONS), wait, wait_timeout, shutdown_timeout, soft_reboot_timeout.

    Returns the module's result: changed, state (libvirt's after), power_state (Nova's), managed_save,
    forced, warnings. A domain that is already where the action leads is left alone (changed false), except
    for reboots."""
    name, action = p["name"], p["action"]
    wait, timeout = p.get("wait", True), p.get("wait_timeout") or 120
    shutdown_timeout = seconds_option(p, "shutdown_timeout", DEFAULT_SHUTDOWN_TIMEOUT)
    soft_reboot_timeout = seconds_option(p, "soft_reboot_timeout", DEFAULT_SOFT_REBOOT_TIMEOUT)
    dom = lookup_domain(conn, name)
    if dom is None:
        raise BootflowError("domain %s does not exist on this host." % name, state="absent")
    state = domain_state_name(dom)
    saved = has_managed_save(dom)
    result = dict(changed=False, name=name, action=action, state_before=state, state=state, managed_save=saved,
                  forced=False, warnings=[])

    # what the action does to a domain in this state: None when it is there already
    if action == "stop":
        todo = state in ACTIVE_STATES or saved
    elif action == "start":
        todo = not dom.isActive()
        if todo and saved:
            raise BootflowError("domain %s has a managed save image (the instance is suspended): resume it "
                                "instead of starting it." % name, state=state)
    elif action in ("reboot_soft", "reboot_hard"):
        todo = True
        if action == "reboot_soft" and not _running(state):
            raise BootflowError("domain %s is %s: a soft reboot needs a running guest (use reboot_hard)."
                                % (name, state), state=state)
    elif action == "pause":
        todo = state != "paused"
        if todo and not _running(state):
            raise BootflowError("domain %s is %s: only a running guest can be paused." % (name, state), state=state)
    elif action == "unpause":
        todo = state == "paused"
        if not todo and not _running(state):
            raise BootflowError("domain %s is %s, not paused." % (name, state), state=state)
    elif action == "suspend":
        todo = not (saved and not dom.isActive())
        if todo and not (_running(state) or state == "paused"):
            raise BootflowError("domain %s is %s: only a running or paused guest can be suspended."
                                % (name, state), state=state)
    elif action == "resume":
        todo = saved and not dom.isActive()
        if not todo and not _running(state):
            raise BootflowError("domain %s is %s and has no managed save image: nothing to resume."
                                % (name, state), state=state)
    else:
        raise BootflowError("unknown action %s (one of %s)" % (action, ", ".join(ACTIONS)))

    if not todo:
        return _finish(result, dom)
    result["changed"] = True
    if check_mode:
        result["state"] = {"stop": "shutoff", "suspend": "shutoff", "pause": "paused"}.get(action, "running")
        result["managed_save"] = action == "suspend"
        result["power_state"] = POWER_STATES[result["state"]]
        return _with_diff(result, saved)

    if action == "stop":
        power_off(dom, shutdown_timeout, result)
        if has_managed_save(dom):     # a stopped instance starts cold (Nova discards a suspended one's image)
            dom.managedSaveRemove(0)
    elif action == "start":
        start(dom, "start", wait, timeout)
    elif action == "reboot_soft":
        _soft_reboot(dom, soft_reboot_timeout, wait, timeout, result)
    elif action == "reboot_hard":
        _hard_reboot(dom, wait, timeout)
    elif action == "pause":
        _call(dom, dom.suspend, "pause")
        _wait(dom, lambda s: s == "paused", "paused", wait, timeout)
    elif action == "unpause":
        _call(dom, dom.resume, "unpause")
        _wait(dom, _running, "running", wait, timeout)
    elif action == "suspend":
        _call(dom, lambda: dom.managedSave(0), "suspend (managed save)")
    elif action == "resume":
        start(dom, "resume", wait, timeout)
    return _with_diff(_finish(result, dom), saved)


def _soft_reboot(dom, timeout, wait, wait_timeout, result):
    """Nova's libvirt _soft_reboot: shut the guest down cleanly and start it again, so that a guest that
    ignores the ACPI button is noticed; after ``timeout`` seconds without a shutdown, a hard reboot."""
    try:
        dom.shutdown()
    except libvirt.libvirtError as e:
        if dom.isActive():
            result["warnings"].append("domain %s refused the ACPI shutdown (%s); hard reboot"
                                      % (dom.name(), err_msg(e)))
            result["forced"] = True
            _hard_reboot(dom, wait, wait_timeout)
            return
    ok, _last = wait_for_state(dom, lambda s: s not in ACTIVE_STATES, timeout)
    if not ok:
        result["forced"] = True
        result["warnings"].append("domain %s did not shut down within %d s for a soft reboot; it was rebooted "
                                  "hard" % (dom.name(), timeout))
        _hard_reboot(dom, wait, wait_timeout)
        return
    start(dom, "start", wait, wait_timeout)


def _call(dom, fn, what):
    try:
        fn()
    except libvirt.libvirtError as e:
        raise BootflowError("cannot %s domain %s: %s" % (what, dom.name(), err_msg(e)), state=domain_state_name(dom))


def _finish(result, dom):
    result["state"] = domain_state_name(dom)
    result["managed_save"] = has_managed_save(dom)
    result["power_state"] = POWER_STATES.get(result["state"], "NOSTATE")
    return result


def _with_diff(result, saved_before):
    """--diff: libvirt's view of the domain before and after."""
    def view(state, saved):
        return "state: %s\nmanaged_save: %s\n" % (state, "yes" if saved else "no")
    result["diff"] = dict(before=view(result["state_before"], saved_before),
                          after=view(result["state"], result["managed_save"]))
    return result
