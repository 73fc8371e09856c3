# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for bootflow.cloud.image_cache (nova-compute's image cache manager on one host)."""

from __future__ import annotations

from ansible_collections.bootflow.cloud.plugins.plugin_utils.steps import HostStep


class ActionModule(HostStep):
    # nova-compute's own periodic task (like the resource tracker's report): admin only
    POLICY_RULE = "compute:report_node"
