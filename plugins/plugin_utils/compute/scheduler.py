# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Nova-like host selection over plain data.

PRIVATE to the collection: may change at any time.

Mirrors nova-scheduler (docs/scheduler.md says which filter and weigher does what):

* capacity is checked the way Placement does it:
  ``capacity = (total - reserved) * allocation_ratio``, ``free = capacity - used``,
  and a single request may not exceed the physical total (``max_unit``);
* filters are pure functions ``(host, spec, now, cfg) -> None | reason``,
  run in the order of :data:`FILTERS`; a host is rejected by the first one that fails;
* weighers are normalised to 0..1 like ``nova/weights.py normalize()``, multiplied
  by their multiplier and summed;
* the chosen host is a random pick among the best ``host_subset_size`` hosts,
  followed by the other hosts as alternates (``_get_sorted_hosts``);
* server groups: the hard policies are filters (and :func:`server_group_violation`, which the
  claim re-runs on fresh data), the soft ones weighers (the count of group members on the host).

Stdlib only: runs on the controller and on the hypervisor host (Python 3.11+).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import operator
import random
import re
import time
import collections
from collections import OrderedDict
from typing import Any, Callable, Iterable, Mapping, Optional

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import DEFAULT_MAX_ATTEMPTS
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest, NoValidHostError

__all__ = [
    "FILTERS",
    "GROUP_POLICIES",
    "WEIGHERS",
    "MANDATORY_FILTERS",
    "HostRow",
    "HostState",
    "NoValidHost",
    "RequestSpec",
    "SchedulerConfig",
    "Selection",
    "capacity",
    "choose_host",
    "consume",
    "active_filters",
    "filter_hosts",
    "light_filters",
    "fits",
    "free",
    "match_extra_spec",
    "normalize",
    "requested_aggregates",
    "requested_resources",
    "requested_traits",
    "schedule_instances",
    "select_hosts",
    "server_group_violation",
    "weigh_hosts",
]


class NoValidHost(NoValidHostError):
    """No host passed the filters; ``rejected`` maps host -> ``"FilterName: reason"``."""

    def __init__(self, rejected: Mapping[str, str], detail: Optional[str] = None) -> None:
        self.rejected = dict(rejected)
        parts = ["No valid host was found."]
        if detail:
            parts.append(detail)
        if self.rejected:
            parts.append("; ".join("%s: %s" % (name, why) for name, why in self.rejected.items()))
        elif not detail:
            parts.append("There are no compute hosts.")
        super().__init__(" ".join(parts), rejected=self.rejected)


def _to_epoch(value: Any) -> Optional[float]:
    """Accept None, a number or a datetime (naive = UTC) and return epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    return float(value)


@dataclasses.dataclass(frozen=True)
class HostState:
    """One compute node as the scheduler sees it (inventory, usage, attributes)."""

    name: str
    vcpus: int
    memory_mb: int
    local_gb: int
    vcpus_used: float = 0
    memory_mb_used: float = 0
    local_gb_used: float = 0
    reserved_host_memory_mb: int = 512
    reserved_vcpus: int = 0
    reserved_disk_gb: int = 0
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    disabled: bool = False
    updated_at: Optional[float] = None
    arch: Optional[str] = None
    hypervisor_type: Optional[str] = None
    hypervisor_version: Optional[int] = None
    num_instances: int = 0
    availability_zone: str = "nova"
    aggregates: frozenset = frozenset()
    traits: frozenset = frozenset()
    stats: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    generation: int = 0
    uuid: Optional[str] = None
    # consecutive failed builds on the host (Nova's failed_builds stat; a successful build resets it)
    failed_builds: int = 0

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidRequest("HostState.name must not be empty")
        for fname in ("vcpus", "memory_mb", "local_gb", "vcpus_used", "memory_mb_used", "local_gb_used",
                      "reserved_host_memory_mb", "reserved_vcpus", "reserved_disk_gb", "num_instances",
                      "failed_builds"):
            if getattr(self, fname) < 0:
                raise InvalidRequest("HostState %s: %s must be >= 0" % (self.name, fname))
        for fname in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
            if getattr(self, fname) <= 0:
                raise InvalidRequest("HostState %s: %s must be > 0" % (self.name, fname))
        # Tolerate lists/sets/datetimes from callers, keep the object hashable-ish and immutable.
        object.__setattr__(self, "aggregates", frozenset(self.aggregates or ()))
        object.__setattr__(self, "traits", frozenset(self.traits or ()))
        object.__setattr__(self, "stats", dict(self.stats or {}))
        object.__setattr__(self, "updated_at", _to_epoch(self.updated_at))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "HostState":
        """Build from a dict (e.g. a compute_nodes row): ``hostname`` is accepted for ``name``, unknown keys are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known and v is not None}
        if "name" not in kwargs and data.get("hostname"):
            kwargs["name"] = data["hostname"]
        return cls(**kwargs)

    @property
    def free_vcpus(self) -> float:
        """Free VCPU as Placement counts it."""
        return free(self, "VCPU")

    @property
    def free_ram_mb(self) -> float:
        """Free MEMORY_MB as Placement counts it."""
        return free(self, "MEMORY_MB")

    @property
    def free_disk_gb(self) -> float:
        """Free DISK_GB as Placement counts it."""
        return free(self, "DISK_GB")


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(HostState))

# What the weighers and the name-only filters read of a host (HostState's names; the free amounts are its
# properties): a light row for the many hosts a database prefilter passed, so that no HostState is built for
# them (see light_filters)
HostRow = collections.namedtuple("HostRow", ("name", "free_vcpus", "free_ram_mb", "free_disk_gb", "num_instances",
                                             "failed_builds", "aggregates", "traits"))

GROUP_POLICIES = (None, "affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """What one instance of the request needs (flavor, image, placement hints)."""

    vcpus: int
    memory_mb: int
    root_gb: int
    ephemeral_gb: int = 0
    flavor_extra_specs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    image_properties: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    availability_zone: Optional[str] = None
    force_host: Optional[str] = None
    num_instances: int = 1
    group_policy: Optional[str] = None
    # the hosts of the group's other members, one entry per member (a host appears once per member on it)
    group_hosts: list = dataclasses.field(default_factory=list)
    max_server_per_host: int = 1
    # hosts where a build of this instance already failed (Nova's RequestSpec.retry hosts): never again
    tried_hosts: list = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        for fname in ("vcpus", "memory_mb", "root_gb", "ephemeral_gb"):
            if getattr(self, fname) < 0:
                raise InvalidRequest("RequestSpec: %s must be >= 0" % fname)
        if self.num_instances < 1:
            raise InvalidRequest("RequestSpec: num_instances must be >= 1")
        if self.max_server_per_host < 1:
            raise InvalidRequest("RequestSpec: max_server_per_host must be >= 1")
        if self.group_policy not in GROUP_POLICIES:
            raise InvalidRequest("RequestSpec: group_policy must be one of %s" % ", ".join(str(p) for p in GROUP_POLICIES))
        object.__setattr__(self, "flavor_extra_specs", dict(self.flavor_extra_specs or {}))
        object.__setattr__(self, "image_properties", dict(self.image_properties or {}))
        object.__setattr__(self, "group_hosts", list(self.group_hosts or []))
        object.__setattr__(self, "tried_hosts", list(self.tried_hosts or []))
        # the Placement-style extra specs must parse (Nova validates them when the flavor is saved); parsed once
        # here, not once per host in the filters
        object.__setattr__(self, "_traits", _parse_traits(self.flavor_extra_specs))
        object.__setattr__(self, "_aggregates", _parse_aggregates(self.flavor_extra_specs))

    @property
    def disk_gb(self) -> int:
        """DISK_GB requested from Placement (root + ephemeral)."""
        return self.root_gb + self.ephemeral_gb


# ---------------------------------------------------------------------------------------------
# What the request asks Placement for: resources, required/forbidden traits, aggregate membership

TRAIT_RE = re.compile(r"[A-Z][A-Z0-9_]{0,254}")


def requested_resources(spec: "RequestSpec") -> dict:
    """``{"VCPU": n, "MEMORY_MB": n, "DISK_GB": n}`` without the zero amounts (Placement is not asked for those)."""
    out = {"VCPU": spec.vcpus, "MEMORY_MB": spec.memory_mb, "DISK_GB": spec.disk_gb}
    return {rc: amount for rc, amount in out.items() if amount}


def requested_traits(spec: "RequestSpec") -> tuple[frozenset, frozenset]:
    """(required, forbidden) trait names from the flavor's ``trait:NAME=required|forbidden`` extra specs (Nova's
    syntax, sent to Placement as ``required=NAME,!OTHER``)."""
    return spec._traits  # pylint: disable=protected-access


def requested_aggregates(spec: "RequestSpec") -> frozenset:
    """Aggregate names from the flavor's ``member_of`` extra spec: ``NAME`` or ``in:NAME1,NAME2`` (the host must
    be in at least one of them, like Placement's ``member_of`` parameter). Empty: no restriction."""
    return spec._aggregates  # pylint: disable=protected-access


def _parse_traits(extra_specs: Mapping[str, Any]) -> tuple[frozenset, frozenset]:
    """See :func:`requested_traits`. A bad name or value raises ValueError."""
    required, forbidden = set(), set()
    for key, value in extra_specs.items():
        if not str(key).startswith("trait:"):
            continue
        name = str(key)[len("trait:"):]
        if not TRAIT_RE.fullmatch(name):
            raise InvalidRequest("flavor extra spec %s: %r is not a trait name (upper-case letters, digits and _; "
                                 "custom traits start with CUSTOM_)" % (key, name))
        kind = str(value).strip().lower()
        if kind not in ("required", "forbidden"):
            raise InvalidRequest("flavor extra spec %s must be 'required' or 'forbidden', got %r" % (key, value))
        (required if kind == "required" else forbidden).add(name)
    return frozenset(required), frozenset(forbidden)


def _parse_aggregates(extra_specs: Mapping[str, Any]) -> frozenset:
    """See :func:`requested_aggregates`. A malformed value raises ValueError."""
    value = extra_specs.get("member_of")
    if value is None or value == "":
        return frozenset()
    text = str(value)
    names = text[3:].split(",") if text.startswith("in:") else [text]
    names = [n.strip() for n in names]
    if not all(names):
        raise InvalidRequest("flavor extra spec member_of must be NAME or in:NAME1,NAME2, got %r" % value)
    return frozenset(names)


# ---------------------------------------------------------------------------------------------
# Capacity (Placement semantics)

# resource class -> (total field, reserved field, ratio field, used field, request attribute, unit)
_RESOURCES = OrderedDict([
    ("VCPU", ("vcpus", "reserved_vcpus", "cpu_allocation_ratio", "vcpus_used", "vcpus", "")),
    ("MEMORY_MB", ("memory_mb", "reserved_host_memory_mb", "ram_allocation_ratio", "memory_mb_used", "memory_mb", " MB")),
    ("DISK_GB", ("local_gb", "reserved_disk_gb", "disk_allocation_ratio", "local_gb_used", "disk_gb", " GB")),
])
_LABELS = {"VCPU": "VCPU", "MEMORY_MB": "RAM", "DISK_GB": "DISK"}
# (total, reserved, ratio, used) of a host in one call: the filters and weighers read them for every host
_FIELDS = {rc: operator.attrgetter(*fields[:4]) for rc, fields in _RESOURCES.items()}


def capacity(host: HostState, resource_class: str) -> float:
    """``(total - reserved) * allocation_ratio`` for VCPU, MEMORY_MB or DISK_GB."""
    total, reserved, ratio, _used = _FIELDS[resource_class](host)
    return (total - reserved) * ratio


def free(host: HostState, resource_class: str) -> float:
    """Capacity minus usage (may be negative when a host is overcommitted)."""
    total, reserved, ratio, used = _FIELDS[resource_class](host)
    return (total - reserved) * ratio - used


def _num(value: float) -> Any:
    """Render 4.0 as 4 and 2.5 as 2.5 in messages."""
    return int(value) if float(value).is_integer() else round(value, 2)


def fits(host: HostState, spec: RequestSpec) -> tuple[bool, str]:
    """Whether one instance of ``spec`` fits on ``host`` as Placement would decide; reason is '' when it fits."""
    for rc, (total_f, _reserved_f, _ratio_f, _used_f, req_attr, unit) in _RESOURCES.items():
        requested = getattr(spec, req_attr)
        if not requested:
            # Placement is not asked for a resource class with amount 0.
            continue
        label = _LABELS[rc]
        avail = free(host, rc)
        if requested > avail:
            return False, "%s: requested %s%s, free %s%s" % (label, _num(requested), unit, _num(max(avail, 0)), unit)
        # Placement max_unit: one allocation cannot exceed the physical total, whatever the ratio.
        max_unit = getattr(host, total_f)
        if requested > max_unit:
            return False, "%s: requested %s%s, more than the host total %s%s" % (label, _num(requested), unit, _num(max_unit), unit)
    return True, ""


def consume(host: HostState, spec: RequestSpec) -> HostState:
    """Return a copy of ``host`` with one instance of ``spec`` claimed (usage added, generation bumped)."""
    return dataclasses.replace(
        host,
        vcpus_used=host.vcpus_used + spec.vcpus,
        memory_mb_used=host.memory_mb_used + spec.memory_mb,
        local_gb_used=host.local_gb_used + spec.disk_gb,
        num_instances=host.num_instances + 1,
        generation=host.generation + 1,
    )


# ---------------------------------------------------------------------------------------------
# Extra-spec operators (nova/scheduler/filters/extra_specs_ops.py)

def _float_op(func: Callable[[float, float], bool]) -> Callable[[Any, Any], bool]:
    def wrapped(x: Any, y: Any) -> bool:
        try:
            return func(float(x), float(y))
        except (TypeError, ValueError):
            return False
    return wrapped


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": _float_op(operator.ge),
    "==": _float_op(operator.eq),
    "!=": _float_op(operator.ne),
    ">=": _float_op(operator.ge),
    "<=": _float_op(operator.le),
    "<in>": lambda x, y: y in x,
    "<all-in>": lambda x, y: all(v in x for v in y),
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}


def match_extra_spec(value: Optional[str], req: str) -> bool:
    """Nova's ``extra_specs_ops.match``: ``req`` is ``'<op> operand'`` or a plain string compared for equality."""
    req = str(req)
    words = req.split()
    op = words.pop(0) if words else None
    method = _OPS.get(op) if op else None
    if op != "<or>" and method is None:
        return value == req
    if value is None:
        return False
    if op == "<or>":
        # '<or> v1 <or> v2 <or> v3'
        while words:
            if words.pop(0) == value:
                return True
            if words:
                words.pop(0)
        return False
    if not words:
        return False
    if op == "<all-in>":
        return method(value, words)
    return method(value, words[0])


_PROPERTIES = ("free_vcpus", "free_ram_mb", "free_disk_gb")


def _host_has(host: HostState, key: str) -> bool:
    """Whether ``key`` names a host field, computed property or stats entry."""
    return key in _FIELD_NAMES or key in _PROPERTIES or key in host.stats


def _host_attr(host: HostState, key: str) -> Any:
    """A host attribute, computed property or ``stats`` entry; None when absent."""
    val = getattr(host, key, None) if key in _FIELD_NAMES or key in _PROPERTIES else None
    if val is None:
        val = host.stats.get(key)
    return val


def _capability(host: HostState, scope: list[str]) -> Any:
    """Walk ``scope`` from the host into attributes / stats / nested dicts (``_get_capabilities``)."""
    cap: Any = host
    for part in scope:
        if isinstance(cap, str):
            try:
                cap = json.loads(cap)
            except ValueError:
                return None
        if isinstance(cap, HostState):
            cap = _host_attr(cap, part)
        elif isinstance(cap, Mapping):
            cap = cap.get(part)
        else:
            return None
        if cap is None:
            return None
    return cap


def _cap_str(value: Any) -> str:
    """String form used for comparison (Nova does ``str(cap)``); booleans and sets get stable forms."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return str(sorted(value))
    return str(value)


# ---------------------------------------------------------------------------------------------
# Configuration

# service_down_time "off" (nova.conf has no such value; 0 means it in the operator's file): no host is ever
# judged down by the age of its last report
NEVER_DOWN = 10 ** 9


@dataclasses.dataclass
class SchedulerConfig:
    """Scheduler knobs (``[filter_scheduler]`` in nova.conf)."""

    enabled_filters: Optional[list] = None
    multipliers: Mapping[str, float] = dataclasses.field(default_factory=dict)
    host_subset_size: int = 1
    shuffle_best_same_weighed_hosts: bool = False
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    service_down_time: float = 60.0
    # the placement backend: at most this many allocation candidates asked of Placement (Nova's default)
    max_placement_results: int = 1000

    def __post_init__(self) -> None:
        if self.enabled_filters is None:
            self.enabled_filters = list(FILTERS)
        unknown = [f for f in self.enabled_filters if f not in FILTERS]
        if unknown:
            raise InvalidRequest("Unknown scheduler filter(s): %s (known: %s)" % (", ".join(unknown), ", ".join(FILTERS)))
        mult: dict[str, float] = {}
        for key, value in dict(self.multipliers or {}).items():
            name = _WEIGHER_ALIASES.get(key, key)
            if name not in WEIGHERS:
                raise InvalidRequest("Unknown weigher %r in multipliers (known: %s)" % (key, ", ".join(WEIGHERS)))
            mult[name] = float(value)
        self.multipliers = mult
        if int(self.host_subset_size) < 1:
            raise InvalidRequest("host_subset_size must be >= 1")
        if int(self.max_attempts) < 1:
            raise InvalidRequest("max_attempts must be >= 1")
        if self.service_down_time <= 0:
            raise InvalidRequest("service_down_time must be > 0")
        if int(self.max_placement_results) < 1:
            raise InvalidRequest("max_placement_results must be >= 1")

    def multiplier(self, weigher: str) -> float:
        """Multiplier of a weigher (default 1.0, or Nova's own default in DEFAULT_MULTIPLIERS)."""
        return self.multipliers.get(weigher, DEFAULT_MULTIPLIERS.get(weigher, 1.0))


# ---------------------------------------------------------------------------------------------
# Filters: (host, spec, now, cfg) -> None when the host passes, else the reason.

FilterFunc = Callable[[HostState, RequestSpec, float, SchedulerConfig], Optional[str]]


def _parse_force_host(value: str) -> tuple[Optional[str], str]:
    """``host``, ``az:host`` or ``az:host:node`` (node ignored) -> (az or None, host)."""
    parts = value.split(":")
    if len(parts) == 1:
        return None, parts[0]
    return (parts[0] or None), parts[1]


def retry_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Nova's RetryFilter: a host where a build of this instance already failed is not tried again."""
    if host.name in spec.tried_hosts:
        return "already tried: a build of this instance failed on this host"
    return None


def force_host_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Admin ``az:host``: only the named host (in that zone, if given) passes."""
    if not spec.force_host:
        return None
    zone, name = _parse_force_host(spec.force_host)
    if name and host.name != name:
        return "not the forced host %s" % name
    if zone and host.availability_zone != zone:
        return "forced zone %s, host is in %s" % (zone, host.availability_zone)
    return None


def availability_zone_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Pre-filter like ``map_az_to_placement_aggregate``: the host must be in the requested zone."""
    if spec.availability_zone and host.availability_zone != spec.availability_zone:
        return "host is in zone %s, requested %s" % (host.availability_zone, spec.availability_zone)
    return None


def aggregate_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Pre-filter like Placement's ``member_of``: the host is in one of the aggregates the flavor's ``member_of`` names."""
    wanted = requested_aggregates(spec)
    if wanted and not wanted & host.aggregates:
        return "not in aggregate %s (host aggregates: %s)" % (
            " or ".join(sorted(wanted)), ", ".join(sorted(host.aggregates)) or "none")
    return None


def traits_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Pre-filter like Placement's ``required``: the flavor's required traits present, its forbidden traits absent."""
    required, forbidden = requested_traits(spec)
    if not required and not forbidden:
        return None
    missing = sorted(required - host.traits)
    if missing:
        return "lacks required trait%s %s" % ("s" if len(missing) > 1 else "", ", ".join(missing))
    present = sorted(forbidden & host.traits)
    if present:
        return "has forbidden trait%s %s" % ("s" if len(present) > 1 else "", ", ".join(present))
    return None


def compute_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """The compute service is enabled and up (heartbeat within ``service_down_time``)."""
    if host.disabled:
        return "disabled"
    if host.updated_at is None:
        return "down (never reported)"
    elapsed = now - host.updated_at
    # servicegroup db driver: abs(elapsed) <= service_down_time
    if abs(elapsed) > cfg.service_down_time:
        return "down (last update %ss ago, service_down_time %ss)" % (_num(round(elapsed, 1)), _num(cfg.service_down_time))
    return None


def capacity_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """VCPU, MEMORY_MB and DISK_GB checked as Placement would."""
    ok, reason = fits(host, spec)
    return None if ok else reason


def compute_capabilities_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Flavor extra_specs (bare or ``capabilities:`` scoped) against host attributes and stats."""
    for key, req in spec.flavor_extra_specs.items():
        scope = str(key).split(":")
        if len(scope) == 1:
            # Bare key: only considered when the host knows it (backward compatibility in Nova).
            if not _host_has(host, scope[0]):
                continue
        elif scope[0] != "capabilities":
            continue
        else:
            scope = scope[1:]
        cap = _capability(host, scope)
        if cap is None:
            return "%s: host does not report %s" % (key, ":".join(scope))
        if not match_extra_spec(_cap_str(cap), str(req)):
            return "%s: host has %s, requested %s" % (key, _cap_str(cap), req)
    return None


_ARCH_ALIASES = {"i386": "i686", "i486": "i686", "i586": "i686", "x86_32": "i686", "amd64": "x86_64", "arm64": "aarch64"}


def _canon_arch(value: Any) -> str:
    name = str(value).strip().lower()
    return _ARCH_ALIASES.get(name, name)


_VERSION_RE = re.compile(r"\s*(>=|<=|==|!=|>|<|=)?\s*([0-9]+(?:\.[0-9]+){0,2})\s*")
_VERSION_OPS: dict[str, Callable[[int, int], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "=": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}


def _version_to_int(value: str) -> Optional[int]:
    """'6.2.0' -> 6002000 (nova versionutils.convert_version_to_int)."""
    try:
        parts = [int(p) for p in str(value).split(".")]
    except ValueError:
        return None
    parts = (parts + [0, 0, 0])[:3]
    return parts[0] * 1000000 + parts[1] * 1000 + parts[2]


def image_properties_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Image ``hw_architecture``, ``img_hv_type`` and ``img_hv_requested_version`` against the host."""
    props = spec.image_properties
    want_arch = props.get("hw_architecture") or props.get("architecture")
    if want_arch:
        if not host.arch:
            return "hw_architecture %s requested, host architecture unknown" % want_arch
        if _canon_arch(want_arch) != _canon_arch(host.arch):
            return "hw_architecture %s requested, host is %s" % (want_arch, host.arch)
    want_hv = props.get("img_hv_type") or props.get("hypervisor_type")
    if want_hv:
        if not host.hypervisor_type:
            return "img_hv_type %s requested, host hypervisor type unknown" % want_hv
        if str(want_hv).lower() != str(host.hypervisor_type).lower():
            return "img_hv_type %s requested, host is %s" % (want_hv, host.hypervisor_type)
    want_ver = props.get("img_hv_requested_version")
    if want_ver:
        if host.hypervisor_version is None:
            return "img_hv_requested_version %s requested, host hypervisor version unknown" % want_ver
        match = _VERSION_RE.fullmatch(str(want_ver))
        wanted = _version_to_int(match.group(2)) if match else None
        compare = _VERSION_OPS[match.group(1) or ">="] if match else None
        if wanted is None or compare is None or not compare(int(host.hypervisor_version), wanted):
            return "img_hv_requested_version %s requested, host has %s" % (want_ver, host.hypervisor_version)
    return None


def server_group_violation(host_name: str, spec: RequestSpec) -> Optional[str]:
    """Why placing one more member of a hard (anti-)affinity group on ``host_name`` breaks the group's
    policy, given the hosts of the other members in ``spec.group_hosts``; None when it does not.

    The filters below use it on the scheduler's snapshot; the claim runs it again on the members'
    hosts read inside the claim transaction (Nova's late ``_validate_instance_group_policy``).
    Soft policies never forbid a host (their weighers only prefer).
    """
    if spec.group_policy == "anti-affinity":
        count = spec.group_hosts.count(host_name)
        if count >= spec.max_server_per_host:
            return "anti-affinity: %d group member(s) already on the host, max_server_per_host %d" % (
                count, spec.max_server_per_host)
    elif spec.group_policy == "affinity" and spec.group_hosts and host_name not in spec.group_hosts:
        return "affinity: group members are on %s" % ", ".join(sorted(set(spec.group_hosts)))
    return None


def server_group_anti_affinity_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Hard anti-affinity: fewer than ``max_server_per_host`` group members already on the host."""
    if spec.group_policy != "anti-affinity":
        return None
    return server_group_violation(host.name, spec)


def server_group_affinity_filter(host: HostState, spec: RequestSpec, now: float, cfg: SchedulerConfig) -> Optional[str]:
    """Hard affinity: the host of the other group members (any host for the first member)."""
    if spec.group_policy != "affinity":
        return None
    return server_group_violation(host.name, spec)


FILTERS: "OrderedDict[str, FilterFunc]" = OrderedDict([
    ("RetryFilter", retry_filter),
    ("ForceHostFilter", force_host_filter),
    ("AvailabilityZoneFilter", availability_zone_filter),
    ("AggregateFilter", aggregate_filter),
    ("TraitsFilter", traits_filter),
    ("ComputeFilter", compute_filter),
    ("CapacityFilter", capacity_filter),
    ("ComputeCapabilitiesFilter", compute_capabilities_filter),
    ("ImagePropertiesFilter", image_properties_filter),
    ("ServerGroupAntiAffinityFilter", server_group_anti_affinity_filter),
    ("ServerGroupAffinityFilter", server_group_affinity_filter),
])

# Not optional in Nova either (request pre-filters and Placement): always run, whatever enabled_filters says.
# RetryFilter too: a host where the build already failed is never tried again for this instance; and
# ComputeFilter: Nova's scheduler never offers a disabled or down compute service (its host manager leaves
# them out before any filter runs), so no enabled_filters list - not even an admin's - places on one.
MANDATORY_FILTERS = frozenset(("RetryFilter", "ForceHostFilter", "AvailabilityZoneFilter", "AggregateFilter",
                               "TraitsFilter", "ComputeFilter", "CapacityFilter"))

# Nova skips the configurable filters for a forced host, but still asks Placement (resources, traits,
# aggregates); the enabled/up check is kept here because booting on a disabled or dead host cannot succeed.
_KEPT_WHEN_FORCED = frozenset(("RetryFilter", "ForceHostFilter", "AvailabilityZoneFilter", "AggregateFilter",
                               "TraitsFilter", "ComputeFilter", "CapacityFilter"))


# ---------------------------------------------------------------------------------------------
# Weighers: raw value per host; higher wins with a positive multiplier.

@dataclasses.dataclass(frozen=True)
class _Weigher:
    # a host attribute (read with one attrgetter for every host) or a function of the host and the request
    func: Any
    minval: Optional[float] = None
    # set: the weigher only weighs a request for a server group of this policy; any other request gets
    # 0 on every host (nova/scheduler/weights/affinity.py), without asking each host
    group_policy: Optional[str] = None


WEIGHERS: "OrderedDict[str, _Weigher]" = OrderedDict([
    # nova/scheduler/weights/{ram,cpu,disk}.py: minval = 0
    ("RAMWeigher", _Weigher("free_ram_mb", 0.0)),
    ("CPUWeigher", _Weigher("free_vcpus", 0.0)),
    ("DiskWeigher", _Weigher("free_disk_gb", 0.0)),
    ("NumInstancesWeigher", _Weigher(lambda h, s: -h.num_instances, None)),
    # the number of the group's members on the host: soft-affinity, more is better; soft-anti-affinity,
    # fewer (the count negated)
    ("ServerGroupSoftAffinityWeigher", _Weigher(lambda h, s: s.group_hosts.count(h.name), None, "soft-affinity")),
    ("ServerGroupSoftAntiAffinityWeigher", _Weigher(lambda h, s: -s.group_hosts.count(h.name), None,
                                                    "soft-anti-affinity")),
    # nova/scheduler/weights/compute.py: a host whose builds keep failing (libvirtd down, a broken disk)
    # goes to the end of the list until a build succeeds there again, so a whole fleet, and the next runs,
    # do not pile up on it
    ("BuildFailureWeigher", _Weigher(lambda h, s: -h.failed_builds, None)),
])

# Nova's default multipliers where they are not 1.0: build_failure_weight_multiplier is 1000000.0, so
# that one failed build outweighs any difference in free capacity
DEFAULT_MULTIPLIERS = {"BuildFailureWeigher": 1000000.0}

_WEIGHER_ALIASES = {
    "ram": "RAMWeigher", "cpu": "CPUWeigher", "disk": "DiskWeigher", "num_instances": "NumInstancesWeigher",
    "soft_affinity": "ServerGroupSoftAffinityWeigher", "soft_anti_affinity": "ServerGroupSoftAntiAffinityWeigher",
    "ram_weight_multiplier": "RAMWeigher", "cpu_weight_multiplier": "CPUWeigher",
    "disk_weight_multiplier": "DiskWeigher", "num_instances_weight_multiplier": "NumInstancesWeigher",
    "soft_affinity_weight_multiplier": "ServerGroupSoftAffinityWeigher",
    "soft_anti_affinity_weight_multiplier": "ServerGroupSoftAntiAffinityWeigher",
    "build_failure": "BuildFailureWeigher", "build_failure_weight_multiplier": "BuildFailureWeigher",
}


def normalize(values: list[float], minval: Optional[float] = None, maxval: Optional[float] = None) -> list[float]:
    """Map values into 0..1 by (min, max), like ``nova/weights.py``; all equal -> all 0."""
    if not values:
        return []
    hi = float(max(values) if maxval is None else maxval)
    lo = float(min(values) if minval is None else minval)
    if lo == hi:
        return [0.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def weigh_hosts(hosts: list[HostState], spec: RequestSpec, cfg: SchedulerConfig) -> list[tuple[HostState, float, dict]]:
    """Total weight and per-weigher contribution (multiplier x normalised) per host, in input order."""
    totals, measured = _weigh(hosts, spec, cfg)
    return [(h, totals[i], _contributions(measured, i)) for i, h in enumerate(hosts)]


def _weigh(hosts: list, spec: RequestSpec, cfg: SchedulerConfig) -> tuple[list[float], dict]:
    """(total weight per host, {weigher: contribution per host} of the weighers that measured anything); the
    totals add the contributions in WEIGHERS order, a weigher that measured nothing adding 0."""
    totals = [0.0] * len(hosts)
    measured: dict[str, list[float]] = {}
    if len(hosts) <= 1:
        # Nova does not weigh a single host.
        return totals, measured
    for name, weigher in WEIGHERS.items():
        mult = cfg.multiplier(name)
        if mult == 0 or (weigher.group_policy is not None and spec.group_policy != weigher.group_policy):
            # contributes 0 to every host whatever it would measure: not measured
            continue
        func, minval = weigher.func, weigher.minval
        if isinstance(func, str):
            raw = [float(value) for value in map(operator.attrgetter(func), hosts)]
        else:
            raw = [float(func(host, spec)) for host in hosts]
        if minval is not None:
            raw = [max(value, minval) for value in raw]
        column = measured[name] = [mult * value for value in normalize(raw, minval=minval)]
        totals = [total + value for total, value in zip(totals, column)]
    return totals, measured


def _contributions(measured: dict, index: int) -> dict:
    return {name: measured[name][index] if name in measured else 0.0 for name in WEIGHERS}


# ---------------------------------------------------------------------------------------------
# Selection

@dataclasses.dataclass
class Selection:
    """Result of one scheduling pass: ``hosts[0]`` is the chosen host, the rest are alternates."""

    hosts: list
    rejected: dict
    spec: Optional[RequestSpec] = None

    @property
    def host(self) -> str:
        """Name of the chosen host."""
        return self.hosts[0][0]

    @property
    def alternates(self) -> list:
        """Names of the alternate hosts, best first."""
        return [h[0] for h in self.hosts[1:]]


def active_filters(spec: RequestSpec, cfg: SchedulerConfig) -> list[tuple[str, FilterFunc]]:
    """The (name, function) of the filters that run for ``spec``, in :data:`FILTERS` order."""
    enabled = set(cfg.enabled_filters or ()) | MANDATORY_FILTERS
    if spec.force_host:
        enabled &= _KEPT_WHEN_FORCED
    return [(fname, func) for fname, func in FILTERS.items() if fname in enabled]


# What a SQL prefilter can decide for sure (the database's own columns: zone, enabled and up, capacity)
SQL_PREFILTERS = frozenset(("AvailabilityZoneFilter", "ComputeFilter", "CapacityFilter"))
# Filters that read no more of a host than its name, aggregates and traits
_NAME_ONLY_FILTERS = frozenset(("RetryFilter", "AggregateFilter", "TraitsFilter", "ServerGroupAntiAffinityFilter",
                                "ServerGroupAffinityFilter"))
_IMAGE_HOST_KEYS = ("hw_architecture", "architecture", "img_hv_type", "hypervisor_type", "img_hv_requested_version")


def _reads_host(fname: str, spec: RequestSpec) -> bool:
    """Whether filter ``fname`` looks at more of a host than :data:`_NAME_ONLY_FILTERS` do, for this request
    (a host without ``stats``, as the database's compute nodes are)."""
    if fname == "ComputeCapabilitiesFilter":
        for key in spec.flavor_extra_specs:
            scope = str(key).split(":")
            if scope[0] == "capabilities" and len(scope) > 1 or len(scope) == 1 and (
                    scope[0] in _FIELD_NAMES or scope[0] in _PROPERTIES):
                return True
        return False
    if fname == "ImagePropertiesFilter":
        return any(spec.image_properties.get(key) for key in _IMAGE_HOST_KEYS)
    if fname == "ForceHostFilter":
        return bool(spec.force_host)
    return fname not in _NAME_ONLY_FILTERS


def light_filters(spec: RequestSpec, cfg: SchedulerConfig) -> Optional[list[tuple[str, FilterFunc]]]:
    """The filters left to run, in order, on a host that passed :data:`SQL_PREFILTERS` in the database, when
    they need only the host's ``name``, ``aggregates`` and ``traits`` (a :class:`HostRow`); None when one of
    them needs a whole :class:`HostState` (a forced host, a capability or image property to match)."""
    if spec.force_host:
        return None
    rest = [(fname, func) for fname, func in active_filters(spec, cfg) if fname not in SQL_PREFILTERS]
    if any(_reads_host(fname, spec) for fname, _func in rest):
        return None
    required, forbidden = requested_traits(spec)
    # nothing of the host to match (checked above), no forced host
    idle = {"ComputeCapabilitiesFilter", "ImagePropertiesFilter", "ForceHostFilter"}
    if not spec.tried_hosts:
        idle.add("RetryFilter")
    if not requested_aggregates(spec):
        idle.add("AggregateFilter")
    if not required and not forbidden:
        idle.add("TraitsFilter")
    if spec.group_policy != "anti-affinity":
        idle.add("ServerGroupAntiAffinityFilter")
    if spec.group_policy != "affinity":
        idle.add("ServerGroupAffinityFilter")
    return [(fname, func) for fname, func in rest if fname not in idle]


def filter_hosts(hosts: Iterable[HostState], spec: RequestSpec, cfg: SchedulerConfig, now: float,
                 filters: Optional[list] = None) -> tuple[list[HostState], dict]:
    """Apply the filters (``filters``: these (name, function) pairs, else :func:`active_filters`); return
    (passing hosts in input order, {host: 'FilterName: reason'})."""
    active = active_filters(spec, cfg) if filters is None else filters
    passed: list[HostState] = []
    rejected: dict[str, str] = {}
    seen: set[str] = set()
    for host in hosts:
        if host.name in seen:
            raise InvalidRequest("duplicate host %s" % host.name)
        seen.add(host.name)
        for fname, func in active:
            reason = func(host, spec, now, cfg)
            if reason is not None:
                rejected[host.name] = "%s: %s" % (fname, reason)
                break
        else:
            passed.append(host)
    return passed, rejected


def select_hosts(hosts: Iterable[HostState], spec: RequestSpec, cfg: Optional[SchedulerConfig] = None,
                 now: Optional[float] = None, rng: Optional[random.Random] = None) -> Selection:
    """Filter, weigh and choose a host for one instance of ``spec``; raise :class:`NoValidHost` when none passes."""
    cfg = cfg or SchedulerConfig()
    now = time.time() if now is None else float(now)
    rng = rng or random.Random()
    passed, rejected = filter_hosts(list(hosts), spec, cfg, now)
    return choose_host(passed, rejected, spec, cfg, rng)


def choose_host(passed: list, rejected: dict, spec: RequestSpec, cfg: SchedulerConfig,
                rng: Optional[random.Random] = None) -> Selection:
    """Weigh the hosts that passed the filters (input order breaks ties) and choose one; the second half of
    :func:`select_hosts`. ``passed`` may hold any objects with the attributes the weighers read (HostState's
    names). Raises :class:`NoValidHost` when ``passed`` is empty."""
    rng = rng or random.Random()
    if not passed:
        raise NoValidHost(rejected)
    totals, measured = _weigh(passed, spec, cfg)
    # Stable sort of the host indexes: ties keep the input order unless shuffled below.
    weighed = sorted(range(len(passed)), key=totals.__getitem__, reverse=True)
    if cfg.shuffle_best_same_weighed_hosts:
        best = [i for i in weighed if totals[i] == totals[weighed[0]]]
        rng.shuffle(best)
        weighed = best + weighed[len(best):]
    subset = weighed[:cfg.host_subset_size]
    chosen = rng.choice(subset) if len(subset) > 1 else subset[0]
    ordered = [chosen] + [i for i in weighed[:cfg.max_attempts + 1] if i != chosen]
    ordered = ordered[:cfg.max_attempts]
    return Selection(
        hosts=[(passed[i].name, totals[i], _contributions(measured, i)) for i in ordered],
        rejected=rejected,
        spec=spec,
    )


def schedule_instances(hosts: Iterable[HostState], spec: RequestSpec, cfg: Optional[SchedulerConfig] = None,
                       now: Optional[float] = None, rng: Optional[random.Random] = None) -> tuple[list[Selection], list[HostState]]:
    """Select a host for each of ``spec.num_instances`` instances, consuming as it goes.

    Returns the selections and the updated host states. The group's hosts grow with each
    choice, as Nova's ``_consume_selected_host`` does, so (anti-)affinity holds inside the request.
    Raises :class:`NoValidHost` if any instance cannot be placed (nothing is claimed here).
    """
    cfg = cfg or SchedulerConfig()
    now = time.time() if now is None else float(now)
    rng = rng or random.Random()
    state = OrderedDict((h.name, h) for h in hosts)
    selections: list[Selection] = []
    for index in range(spec.num_instances):
        try:
            sel = select_hosts(list(state.values()), spec, cfg, now=now, rng=rng)
        except NoValidHost as exc:
            if index:
                raise NoValidHost(exc.rejected, "Only %d of %d instances could be placed." % (index, spec.num_instances)) from None
            raise
        selections.append(sel)
        state[sel.host] = consume(state[sel.host], spec)
        if spec.group_policy:
            spec = dataclasses.replace(spec, group_hosts=list(spec.group_hosts) + [sel.host])
    return selections, list(state.values())
