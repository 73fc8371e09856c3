# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Build failures: what failed, whether another host could do better, and the retry bookkeeping.

PRIVATE to the collection: may change at any time. Pure logic (stdlib only, no DB, no Ansible), so
it is unit-tested without a cloud.

Nova's rule (``compute/manager.py::_build_and_run_instance``): a failure of the host - the
hypervisor, its disk, its DHCP agent, anything unexpected - raises ``RescheduledException`` and the
conductor retries on the next alternate host, up to ``[scheduler] max_attempts``; a failure of the
*request* - the image (not active, hash mismatch, unsafe format), a flavor too small for the image,
no IP left, quota, a refused token - raises ``BuildAbortException``: every host would fail the same
way, so the instance goes straight to ERROR.
"""

from __future__ import annotations

import dataclasses
import re

MAX_MESSAGE = 2000   # characters of a failure message kept in the fault record

# Nova's MaxRetriesExceeded text
MAX_RETRIES = ("Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures "
               "for instance %s.")

# error kinds of the controller-side steps (_errors.BootflowError.kind) that no other host changes
_ABORT_KINDS = {
    "auth": ("auth", "the token was refused; every host's step validates it the same way"),
    "quota": ("quota", "a project quota would be exceeded; that does not depend on the host"),
    "invalid": ("invalid", "the request is invalid; it fails the same way on every host"),
    "not_found": ("invalid", "something the request names does not exist; it fails the same way on every host"),
    "conflict": ("conflict", "the instance changed under the build (another run is working on it)"),
    "no_valid_host": ("no_valid_host", "no host can take the instance"),
}

# (category, pattern on the message, why it ends the build) - first match wins; order matters:
# the resource patterns come first because an ENOSPC while writing the image must not read as an
# image problem.
_RULES = (
    ("host_resources", re.compile(r"No space left on device|Errno 28\b|ENOSPC|Disk quota exceeded|EDQUOT"
                                  r"|Cannot allocate memory|Errno 12\b|ENOMEM|out of memory", re.I), None),
    ("no_ips", re.compile(r"No more IP addresses available", re.I),
     "the subnet has no free IP address; another host draws from the same pool"),
    ("image", re.compile(r"checksum mismatch|size mismatch|image format mismatch|unsafe image|"
                         r"unsupported disk_format|truncated qcow2|unsupported qcow2|qcow2 backing file name|"
                         r"is not active \(status|was verified with .* but the image now says", re.I),
     "the image failed verification; every host would fetch the same bytes"),
    ("flavor", re.compile(r"smaller than the image|smaller than the flavor|smaller than the image's", re.I),
     "the flavor (or root volume) is too small for the image; that does not depend on the host"),
    ("playbook", re.compile(r"is undefined|undefined variable|template error|AnsibleUndefined", re.I),
     "the playbook itself is wrong (a variable or template error); it fails the same way on every host"),
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """One failed build attempt as the compute role saw it."""

    message: str
    kind: str | None = None        # BootflowError.kind of a bootflow step ("error" for a host module)
    step: str | None = None        # the failed task's name (it starts with the seed step)
    action: str | None = None      # the module's short name: domain, image_fetch, ...
    host: str | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    reschedulable: bool
    category: str
    reason: str


def _short_action(action):
    return (action or "").rsplit(".", 1)[-1] or None


def failure_of(result, task=None, action=None, host=None):
    """The Failure in an Ansible task result (``ansible_failed_result``), a loop's first failed item
    included. ``task``/``action`` are the failed task's name and module."""
    result = result if isinstance(result, dict) else {}
    item = result
    for sub in result.get("results") or ():
        if isinstance(sub, dict) and sub.get("failed"):
            item = sub
            break
    msg = item.get("msg") or result.get("msg")
    if not msg and item.get("exception"):
        msg = str(item["exception"]).strip().splitlines()[-1]
    if not msg and (item.get("unreachable") or result.get("unreachable")):
        msg = "the host was unreachable"
    msg = str(msg or "the build failed (no message)").strip()
    if len(msg) > MAX_MESSAGE:
        msg = msg[:MAX_MESSAGE - 3] + "..."
    kind = item.get("error") or result.get("error")
    return Failure(message=msg, kind=str(kind) if kind else None, step=task or None,
                   action=_short_action(action), host=host or None)


def classify(failure):
    """Nova's split: ``Verdict(reschedulable, category, reason)`` for a Failure.

    A bootflow step that refused the request (its error kind) is never rescheduled; otherwise the
    message decides: a host out of disk or memory is rescheduled, a bad image, a flavor too small,
    an exhausted subnet or a playbook error is not, and anything else - libvirt, dnsmasq, qemu-img,
    the connection - is an unexpected host failure, which Nova reschedules.
    """
    matched = next(((cat, why) for cat, pattern, why in _RULES if pattern.search(failure.message)), None)
    if failure.kind in _ABORT_KINDS:
        if matched is not None and matched[1] is not None:
            return Verdict(False, matched[0], matched[1])
        return Verdict(False, *_ABORT_KINDS[failure.kind])
    if matched is None:
        return Verdict(True, "host", "the step failed on the host (an unexpected failure: Nova reschedules those)")
    if matched[1] is None:
        return Verdict(True, matched[0], "the host ran out of a resource (Nova's ComputeResourcesUnavailable)")
    return Verdict(False, matched[0], matched[1])


def attempt_record(failure, verdict, at):
    """One entry of the retry history (and of fault.attempts)."""
    return {"host": failure.host, "step": failure.step, "action": failure.action, "message": failure.message,
            "category": verdict.category, "reschedulable": verdict.reschedulable, "at": at}


def retry_of(request):
    """The retry bookkeeping kept in the instance's request (Nova's RequestSpec.retry)."""
    retry = (request or {}).get("retry") or {}
    return {"num_attempts": int(retry.get("num_attempts") or 1), "hosts": list(retry.get("hosts") or []),
            "failures": list(retry.get("failures") or [])}


def next_attempt(retry):
    """The retry record of the next build (one more attempt)."""
    return dict(retry, num_attempts=retry["num_attempts"] + 1)


def add_failure(retry, attempt):
    """The retry record after one more failed attempt on ``attempt['host']``."""
    hosts = list(retry["hosts"])
    if attempt["host"] and attempt["host"] not in hosts:
        hosts.append(attempt["host"])
    return {"num_attempts": retry["num_attempts"], "hosts": hosts, "failures": retry["failures"] + [attempt]}


@dataclasses.dataclass(frozen=True)
class Decision:
    reschedule: bool
    candidates: tuple     # alternates still worth a claim, in the scheduler's order
    reason: str           # why the build ends in ERROR ('' when rescheduled)


def decide(verdict, retry, alternates, max_attempts, instance_uuid):
    """Reschedule or ERROR, after ``retry`` recorded the failed attempt.

    ERROR when the failure is not reschedulable, when ``max_attempts`` builds were tried, or when no
    alternate is left that was not tried already (Nova's RetryFilter). A host that could not be cleaned
    up does not stop a reschedule: the controller releases what it holds, and the residue is recorded
    for the host to remove when it is back (reschedule.py).
    """
    if not verdict.reschedulable:
        return Decision(False, (), "Not rescheduled (%s): %s." % (verdict.category, verdict.reason))
    tried = set(retry["hosts"])
    candidates = tuple(h for h in alternates if h not in tried)
    if retry["num_attempts"] >= max_attempts or not candidates:
        why = ("%d of max_attempts=%d builds tried" % (retry["num_attempts"], max_attempts)
               if retry["num_attempts"] >= max_attempts else "no alternate host left")
        tried_text = ", ".join(retry["hosts"]) or "-"
        return Decision(False, (), "%s (%s; tried %s)" % (MAX_RETRIES % instance_uuid, why, tried_text))
    return Decision(True, candidates, "")


def counts_against_host(verdict):
    """Whether a failed build counts as the host's failure (Nova's failed_builds, BuildFailureWeigher): a
    host failure does; a request that fails the same way everywhere does not."""
    return verdict.reschedulable


def fault_record(failure, verdict, decision, retry, at):
    """The instance fault of a build that ends in ERROR: message, step, host, time, plus why."""
    return {"message": failure.message, "step": failure.step, "action": failure.action, "host": failure.host,
            "at": at, "category": verdict.category, "reschedulable": verdict.reschedulable,
            "reason": decision.reason, "attempts": retry["failures"]}
