# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-compute's spawn on the host: define, start, shut down and remove the libvirt domain of an
instance (the guest's XML comes from virt_xml).

PRIVATE to the collection: may change at any time.
"""

from __future__ import annotations

import os

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import BootflowError
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt import (
    ACTIVE_STATES,
    Undo,
    domain_state_name,
    err_code,
    err_msg,
    inactive_xml,
    libvirt,
    lookup_domain,
    lookup_domain_by_uuid,
    wait_for_state,
)
from ansible_collections.bootflow.cloud.plugins.module_utils.host.power import power_off
from ansible_collections.bootflow.cloud.plugins.module_utils.host.virt_xml import (
    VirtError,
    carry_over,
    choose_virt_type,
    definition_differs,
    domain_view,
    domain_xml,
    validate_spec,
)


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
        if err_code(e) in (getattr(libvirt, "VIR_ERR_NO_SUPPORT", -1), getattr(libvirt, "VIR_ERR_INVALID_ARG", -1)):
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
                raise BootflowError("cannot remove domain %s: %s" % (name, err_msg(e)), state=domain_state_name(dom))
        result["state"] = "absent"
        return result

    # ---- the definition (running / defined / shutdown)
    given = [k for k in SPEC_KEYS if p.get(k) not in (None, [], "")]
    have_spec = p.get("vcpus") is not None and p.get("memory_mb") is not None
    if given and not have_spec:
        raise BootflowError("vcpus and memory_mb are required to define or update domain %s (got %s)"
                            % (name, ", ".join(given)))
    if not have_spec and dom is None:
        raise BootflowError("domain %s does not exist; give vcpus, memory_mb, disks, ... to define it" % name)

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
            raise BootflowError(str(e))
        result["virt_type"] = virt_type
        if spec.get("uuid"):
            other = lookup_domain_by_uuid(conn, spec["uuid"])
            if other is not None and other.name() != name:
                raise BootflowError("uuid %s already belongs to domain %s" % (spec["uuid"], other.name()))
        need_define = before is None or definition_differs(before, desired)
        if console_dir_missing(spec):
            msg = ("the directory of console_log %s does not exist (image_fetch creates the instance "
                   "directory)" % spec["console_log"])
            if not check_mode:
                raise BootflowError(msg)
            result["warnings"].append(msg)
    if need_define:
        result.update(changed=True, defined=True,
                      diff=dict(before=domain_view(before) if before else "", after=domain_view(desired)))
        if not check_mode:
            try:
                newdom = conn.defineXML(desired)
            except libvirt.libvirtError as e:
                raise BootflowError("cannot define domain %s: %s" % (name, err_msg(e)))
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
                undo.fail("cannot start domain %s: %s" % (name, err_msg(e)), state=domain_state_name(dom))
            undo.push("destroy domain %s" % name, _destroy_if_active, dom)
        elif cur == "paused":
            result.update(changed=True, started=True)
            if check_mode:
                result["state"] = "running"
                return result
            try:
                dom.resume()
            except libvirt.libvirtError as e:
                undo.fail("cannot resume domain %s: %s" % (name, err_msg(e)), state=domain_state_name(dom))
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
            if wait or cur == "paused":
                power_off(dom, timeout, result)
            else:
                try:
                    dom.shutdown()
                except libvirt.libvirtError as e:
                    if dom.isActive():
                        raise BootflowError("cannot shut down domain %s: %s" % (name, err_msg(e)),
                                            state=domain_state_name(dom))
        result["state"] = domain_state_name(dom) if (dom is not None and not check_mode) else "shutoff"
    else:  # defined
        result["state"] = domain_state_name(dom) if (dom is not None and not check_mode) else cur
    if dom is not None:
        result["uuid"] = dom.UUIDString()
    return result


def console_dir_missing(spec):
    c = spec.get("console_log")
    return bool(c) and not os.path.isdir(os.path.dirname(c))
