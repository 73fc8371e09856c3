# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of playbooks/boot.yml's fleet flow: what a build pass did on each host, what the next pass
builds where, the end-of-run table, and how to reach an instance through its hypervisor host."""

from __future__ import annotations

import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.bootflow.cloud.plugins.plugin_utils import jump as _jump
from ansible_collections.bootflow.cloud.plugins.module_utils.common import layout as _layout
from ansible_collections.bootflow.cloud.plugins.module_utils.common.rules import safe_text

# what a host records per instance in a build pass (roles/compute/tasks/build.yml)
OUTCOMES = ("built", "rescheduled", "error")


NO_NAME = ("No instance named: set bootflow_instance_name (one instance, for example -e bootflow_instance_name=web1) "
           "or bootflow_instances (a list of instances, each with a name). There is no default instance name.")


# built, and as its owner left it (stopped, paused, suspended or resized and not yet confirmed, by
# playbooks/server_action.yml): not a failure
SETTLED = ("ACTIVE", "SHUTOFF", "PAUSED", "SUSPENDED", "VERIFY_RESIZE")


def request_list(instances, name=None, count=1):
    """The instances a run of boot.yml or delete.yml names: the list ``instances`` (bootflow_instances), else one
    item ``name`` (bootflow_instance_name) with ``count`` instances (bootflow_count: NAME-1..NAME-N when above 1).
    Neither is an error: no run works on an instance it was not told of."""
    if instances:
        if not isinstance(instances, list):
            raise AnsibleFilterError("bootflow_instances must be a list of instances (mappings with a name), got %s."
                                     % type(instances).__name__)
        return instances
    if name is None or str(name) == "":
        raise AnsibleFilterError(NO_NAME)   # a blank name is nova-api's to refuse (Invalid instance name)
    try:
        count = int(count if count not in (None, "") else 1)
    except (TypeError, ValueError):
        raise AnsibleFilterError("bootflow_count must be a whole number, got %r." % (count,)) from None
    return [{"name": name}] if count == 1 else [{"name": name, "count": count}]


def _vars_of(hostvars, host):
    try:
        return hostvars[host]
    except KeyError:
        return {}


def pass_outcomes(hosts, hostvars, build_pass):
    """A build pass, from the hosts' facts: ``outcomes`` (each host's bootflow_pass_outcomes of this pass)
    and ``unfinished`` - the instances handed to a host that did not finish the pass (unreachable, or a
    task outside the build's rescue failed), with no outcome: the controller reschedules those itself."""
    outcomes, unfinished = [], []
    for host in hosts or []:
        hv = _vars_of(hostvars, host)
        builds = list(hv.get("bootflow_builds") or [])
        done = str(hv.get("bootflow_pass_done", "")) == str(build_pass)
        mine = [o for o in (hv.get("bootflow_pass_outcomes") or []) if o.get("uuid") in builds]
        for o in mine:
            if o.get("outcome") not in OUTCOMES:
                raise AnsibleFilterError("pass_outcomes: unknown outcome %r of %s" % (o.get("outcome"), o.get("uuid")))
        outcomes.extend(mine)
        if not done:
            seen = {o["uuid"] for o in mine}
            unfinished.extend({"uuid": u, "host": host} for u in builds if u not in seen)
    return {"outcomes": outcomes, "unfinished": unfinished}


def next_pass(outcomes, reschedule_results=()):
    """[[host, [uuid, ...]], ...]: the rescheduled instances by their new host - those a host rescheduled
    itself (``outcomes``) and those the controller rescheduled (results of bootflow.cloud.reschedule)."""
    by_host = {}
    for o in outcomes or []:
        if o.get("outcome") == "rescheduled" and o.get("host"):
            by_host.setdefault(o["host"], []).append(o["uuid"])
    for r in reschedule_results or []:
        if isinstance(r, dict) and r.get("rescheduled") and r.get("host"):
            uuid = (r.get("instance") or {}).get("uuid") or r.get("item", {}).get("uuid")
            by_host.setdefault(r["host"], []).append(uuid)
    return [[host, uuids] for host, uuids in sorted(by_host.items())]


def lease_errors(first, retry=()):
    """{instance uuid: why} of the guests without a DHCP lease after roles/compute/tasks/wait.yml: the loop
    results of the first wait (items [built instance, port]) and of the wait after a dnsmasq respawn (whose
    items are first-wait results; skipped when no dnsmasq was dead)."""
    def missing(results):
        return [r for r in results or [] if isinstance(r, dict) and not r.get("skipped") and not r.get("leased")]
    retried = missing(retry)
    ran_again = any(isinstance(r, dict) and not r.get("skipped") for r in retry or [])
    out = {}
    for r in (retried if ran_again else missing(first)):
        first_result = r["item"] if ran_again else r
        out[first_result["item"][0]["uuid"]] = str(r.get("msg") or "no DHCP lease")
    return out


def undone(found, hostvars):
    """The instances of delete.yml's list (conductor specs) whose build is undone on their host - each host
    keeps the UUIDs it undid in bootflow_undone - or that never had a host: the controller may release
    their ports, claims and records. The others keep theirs for the next delete.yml."""
    out = []
    for spec in found or []:
        host = spec.get("host")
        if not host or spec.get("uuid") in (_vars_of(hostvars, host).get("bootflow_undone") or []):
            out.append(spec)
    return out


def _seconds(server):
    """Seconds from the instance's record to its last state change (ACTIVE or ERROR)."""
    steps = server.get("steps") or []
    if steps:
        return round(sum((s.get("ms") or 0) for s in steps) / 1000.0, 1)
    return None


def fleet_rows(servers, hostvars=None, hosts=()):
    """One row per instance of the request (bootflow.cloud.boot_request state=query): name, host, IPs,
    status, seconds of its recorded steps, and the fault if any - or the DHCP lease it never got (the
    bootflow_lease_errors facts of ``hosts``)."""
    lease_errors = {}
    for host in hosts or []:
        lease_errors.update(_vars_of(hostvars or {}, host).get("bootflow_lease_errors") or {})
    rows = []
    for s in servers or []:
        fault = s.get("fault")
        if isinstance(fault, dict):
            where = "".join(part for part in (" on %s" % fault["host"] if fault.get("host") else "",
                                              " at '%s'" % fault["step"] if fault.get("step") else ""))
            fault = "%s%s%s" % ("failed%s: " % where if where else "", fault.get("message") or "",
                                (" -- " + fault["reason"]) if fault.get("reason") else "")
        status = s.get("status") or "ABSENT"
        if status == "ABSENT" and not fault:
            fault = "not recorded: its item's min_count could not be met (withdrawn), or check mode"
        if s.get("uuid") in lease_errors:
            fault = fault or "no DHCP lease: %s" % lease_errors[s["uuid"]]
        rows.append({"name": s.get("name"), "host": s.get("host") or "-",
                     "ip": ",".join(p.get("ip") or "" for p in s.get("ports") or []) or "-",
                     "status": status, "seconds": _seconds(s), "fault": fault or ""})
    return rows


def _residue_text(residue):
    """What a host may still hold of a failed build (a host_cleanups record's residue), as one phrase."""
    parts = []
    if residue.get("domain_name"):
        parts.append("libvirt domain %s" % residue["domain_name"])
    if residue.get("instances_path") and residue.get("domain_name"):
        instance_uuid = _layout.instance_of_domain(residue["domain_name"])
        parts.append("instance directory %s" % _layout.instance_dir(residue["instances_path"], instance_uuid))
    parts.extend("DHCP reservation %s (%s) of network %s" % (p.get("ip"), p.get("mac"), p.get("network_id"))
                 for p in residue.get("ports") or [])
    parts.extend("pool volume %s (pool %s)" % (v.get("name"), v.get("pool")) for v in residue.get("volumes") or [])
    return ", ".join(parts) or "nothing recorded"


def fleet_next_steps(servers):
    """For each instance of the run (bootflow.cloud.boot_request state=query) that is not ACTIVE: what is left
    where - the DB record and what it still holds (claim, ports, volumes), what a host that could not undo its
    build still holds - and the commands to run next. A list of lines (``[]`` when every instance is ACTIVE)."""
    lines = []
    for s in servers or []:
        status = s.get("status") or "ABSENT"
        if status in SETTLED or status == "ABSENT" or not s.get("uuid"):
            continue
        who = safe_text("%s (%s)" % (s.get("name"), s.get("uuid")))
        held = []
        if s.get("allocation"):
            held.append("its claim on %s" % s["allocation"].get("host"))
        held.extend("port %s (%s)" % (p.get("ip"), p.get("network_name") or p.get("network_id")) for p in s.get("ports") or [])
        held.extend("volume %s (%s)" % (v.get("name"), v.get("status")) for v in s.get("volumes") or [])
        lines.append("%s is %s in the database%s%s." % (
            who, status, " on host %s" % s["host"] if s.get("host") else "",
            "; it still holds " + ", ".join(held) if held else "; it holds no claim and no IP"))
        hosts = []
        for left in s.get("left_on_hosts") or []:
            hosts.append(left["host"])
            lines.append("  Left on %s, whose undo failed (%s): %s." % (
                left["host"], safe_text(left.get("reason") or "-"), safe_text(_residue_text(left.get("residue") or {}))))
        if s.get("host") and status == "BUILD":
            lines.append("  Left on %s, which did not finish the build: whatever the build made so far there (delete.yml "
                         "undoes it once %s answers)." % (s["host"], s["host"]))
        ref = shlex.quote(str(s.get("name")))
        for host in dict.fromkeys(hosts):
            # localhost too: the controller's play issues the token the host's plays use
            lines.append("  Next, once %s answers: ansible-playbook -i INVENTORY bootflow.cloud.hypervisors --limit %s"
                         "  (removes what is left there)" % (host, shlex.quote(host + ",localhost")))
        lines.append("  Next: ansible-playbook -i INVENTORY bootflow.cloud.delete -e bootflow_instance_name=%s"
                     "  (removes the record and everything it holds; then boot it again)" % ref)
    return lines


def fleet_unsettled(rows):
    """The rows (fleet_rows) of the instances a run of boot.yml did not leave as it should: any status but the
    SETTLED ones, and an ACTIVE instance with a fault (an undo that failed on a host after a reschedule)."""
    rows = rows or []
    return ([r for r in rows if r.get("status") not in SETTLED]
            + [r for r in rows if r.get("status") == "ACTIVE" and r.get("fault")])


def fleet_table(rows):
    """The rows as an aligned text table (a list of lines, for debug's msg)."""
    head = ("NAME", "HOST", "IP", "STATUS", "SECONDS", "FAULT")
    # every cell escaped: a fault message or an old name must not reach the terminal with control characters
    cells = [head] + [tuple(safe_text("" if v is None else v) for v in (
        r["name"], r["host"], r["ip"], r["status"], "-" if r["seconds"] is None else "%.1f" % r["seconds"], r["fault"]))
        for r in rows or []]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head) - 1)]
    return ["  ".join(str(c[i]).ljust(widths[i]) for i in range(len(head) - 1)) + "  " + str(c[-1])
            for c in cells]


def jump_args(hypervisor_vars, extra=""):
    """``ansible_ssh_common_args`` for an instance behind its hypervisor host (``hypervisor_vars``: that
    host's hostvars); see plugin_utils/jump.py."""
    try:
        return _jump.proxy_args(hypervisor_vars, extra)
    except ValueError as exc:
        raise AnsibleFilterError("jump_args: %s" % exc) from exc


class FilterModule:
    def filters(self):
        return {"request_list": request_list, "pass_outcomes": pass_outcomes, "next_pass": next_pass,
                "lease_errors": lease_errors, "undone": undone, "fleet_rows": fleet_rows, "fleet_table": fleet_table,
                "fleet_next_steps": fleet_next_steps, "fleet_unsettled": fleet_unsettled, "jump_args": jump_args}
