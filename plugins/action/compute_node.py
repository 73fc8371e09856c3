# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.compute_node (nova-compute resource tracker report and heartbeat)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.module_utils.argspec import AUTH_KEYS, PLACEMENT_KEYS
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import placement as _placement
from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep, SkipModule


class ActionModule(HostStep):
    POLICY_RULE = "compute:report_node"
    SERVICE = "nova-compute"
    # the host only reports what it has; the settings, the heartbeat and the backend are the controller's
    CONTROLLER_ONLY = frozenset(AUTH_KEYS + PLACEMENT_KEYS + _placement.NODE_SETTINGS + ("heartbeat", "report_interval"))

    _settings = None
    _placement = None

    def policy_rule(self, args):
        # a heartbeat records only that the host answered this controller's SSH round trip just now; boot.yml
        # sends it with the booting user's token, so a member's boot does not find the hosts "down"
        return "compute:heartbeat" if args["heartbeat"] else self.POLICY_RULE

    def _hostname(self, ctx):
        """The compute node's name: the inventory host the module runs on (also when delegated to it)."""
        return self._task.delegate_to or ctx.host

    def prepare(self, ctx, args):
        self._settings = _placement.node_settings(args)
        hostname = self._hostname(ctx)
        if args["heartbeat"]:
            # the service heartbeat: skip the host round trip while the last one is fresh enough
            age = _placement.report_age(ctx.db, hostname)
            if args["report_interval"] and age is not None and 0 <= age < args["report_interval"]:
                raise SkipModule({"changed": False, "heartbeat": "fresh", "report_age": round(age, 1),
                                  "compute_node": {"hostname": hostname}})
        else:
            self._placement = _placement.for_step(ctx)
        return None

    def record(self, ctx, args, result, instance):
        hostname = self._hostname(ctx)
        if args["heartbeat"]:
            node = _placement.heartbeat(ctx.db, hostname, ctx.check_mode)
            result.update(changed=False, heartbeat="sent", compute_node=dict(result["compute_node"], hostname=hostname,
                                                                             updated_at=node["updated_at"]))
            return
        changed, node = _placement.upsert_compute_node(ctx.db, hostname, result["compute_node"], self._settings,
                                                       ctx.check_mode)
        result["changed"] = changed
        result["compute_node"] = dict(result["compute_node"], hostname=hostname,
                                      **{k: node.get(k) for k in _placement.NODE_SETTINGS if k in node})
        if self._placement is not None:
            # the resource provider follows the report (record runs only outside check mode)
            changes = _placement.sync_provider(self._placement, node)
            result["placement"] = changes
            result["changed"] = changed or bool(changes)
            result["compute_node"]["resource_provider"] = node["id"]
