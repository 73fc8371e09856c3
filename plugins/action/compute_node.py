# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.compute_node (nova-compute resource tracker report and heartbeat)."""

from __future__ import annotations

import re

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import PLACEMENT_KEYS
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute.scheduler import TRAIT_RE
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule
from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import InvalidRequest

# configured on the controller side, not read from the host
OVERRIDES = ("reserved_host_memory_mb", "cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio",
             "vcpus", "memory_mb", "local_gb", "disabled", "availability_zone", "aggregates", "traits")
# the module's documented defaults (the action sees the task's own arguments, without them)
# (no default for disabled: a host an admin disabled stays disabled when hypervisors.yml reports it again)
DEFAULTS = {"reserved_host_memory_mb": 512, "cpu_allocation_ratio": 4.0, "ram_allocation_ratio": 1.0,
            "disk_allocation_ratio": 1.0, "availability_zone": "nova", "aggregates": [], "traits": []}
CONTROLLER_ONLY = OVERRIDES + ("heartbeat", "report_interval") + PLACEMENT_KEYS
_NAME_RE = re.compile(r"^[^\x00-\x1f:,]{1,255}$")


def _bool(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y", "t")


def overrides_of(args):
    """The controller-side options with their defaults, type-converted and checked before the host is contacted
    (the module never sees them). Raises InvalidRequest."""
    out = {}
    try:
        for key in OVERRIDES:
            value = args.get(key)
            if value is None:
                value = DEFAULTS.get(key)
            if value is None:
                out[key] = None
            elif key in ("reserved_host_memory_mb", "vcpus", "memory_mb", "local_gb"):
                out[key] = int(value)
                if out[key] < 0:
                    raise ValueError("%s must not be negative, got %s" % (key, value))
            elif key.endswith("_allocation_ratio"):
                out[key] = float(value)
                if not out[key] > 0:
                    raise ValueError("%s must be greater than 0, got %s" % (key, value))
            elif key == "disabled":
                out[key] = _bool(value)
            else:
                out[key] = value
    except (TypeError, ValueError) as exc:
        raise InvalidRequest("compute_node: %s." % str(exc).rstrip(".")) from exc
    zone = out["availability_zone"]
    if not isinstance(zone, str) or not _NAME_RE.match(zone) or zone != zone.strip():
        raise InvalidRequest("availability_zone must be 1-255 characters without ':' ',' or control characters and "
                             "without surrounding spaces, got %r." % (zone,))
    for key, pattern, what in (
            ("aggregates", _NAME_RE, "names of 1-255 characters without ':' ',' or control characters"),
            ("traits", TRAIT_RE, "trait names (upper-case letters, digits and _, e.g. CUSTOM_SSD or HW_CPU_X86_AVX2)")):
        values = out[key]
        if isinstance(values, str) or not isinstance(values, (list, tuple)):
            raise InvalidRequest("%s must be a list of %s, got %r." % (key, what, values))
        bad = [v for v in values if not isinstance(v, str) or not pattern.match(v) or v != v.strip()]
        if bad:
            raise InvalidRequest("%s must be %s; not: %s." % (key, what, ", ".join(repr(b) for b in bad)))
        out[key] = sorted(set(values))
    return out


class ActionModule(HostStep):
    POLICY_RULE = "compute:report_node"
    SERVICE = "nova-compute"

    def policy_rule(self, args):
        # a heartbeat records only that the host answered this controller's SSH round trip just now; boot.yml
        # sends it with the booting user's token, so a member's boot does not find the hosts "down"
        return "compute:heartbeat" if _bool(args.get("heartbeat", False)) else self.POLICY_RULE

    def _hostname(self, ctx):
        """The compute node's name: the inventory host the module runs on (also when delegated to it)."""
        return self._task.delegate_to or ctx.host

    def prepare(self, ctx, args):
        self._overrides = overrides_of(args)
        try:
            interval = int(args.get("report_interval") or 0)
        except (TypeError, ValueError) as exc:
            raise InvalidRequest("report_interval must be a number of seconds, got %r." % args.get("report_interval")) from exc
        self._heartbeat = _bool(args.get("heartbeat", False))
        self._placement = None
        hostname = self._hostname(ctx)
        if self._heartbeat:
            # the service heartbeat: skip the host round trip while the last one is fresh enough
            age = _placement.report_age(ctx.db, hostname)
            if interval and age is not None and 0 <= age < interval:
                raise SkipModule({"changed": False, "heartbeat": "fresh", "report_age": round(age, 1),
                                  "compute_node": {"hostname": hostname}})
        else:
            self._placement = _placement.for_step(ctx)
        return None

    def run_module(self, ctx, module_args):
        return super().run_module(ctx, {k: v for k, v in module_args.items() if k not in CONTROLLER_ONLY})

    def record(self, ctx, args, result, instance):
        hostname = self._hostname(ctx)
        if self._heartbeat:
            node = _placement.heartbeat(ctx.db, hostname, ctx.check_mode)
            result.update(changed=False, heartbeat="sent", compute_node=dict(result["compute_node"], hostname=hostname,
                                                                             updated_at=node["updated_at"]))
            return
        changed, node = _placement.upsert_compute_node(ctx.db, hostname, result["compute_node"], self._overrides,
                                                       ctx.check_mode)
        result["changed"] = changed
        result["compute_node"] = dict(result["compute_node"], **{k: node.get(k) for k in OVERRIDES if k in node},
                                      hostname=hostname)
        if self._placement is not None:
            # the resource provider follows the report (record runs only outside check mode)
            changes = _placement.sync_provider(self._placement, node)
            result["placement"] = changes
            result["changed"] = changed or bool(changes)
            result["compute_node"]["resource_provider"] = node["id"]
