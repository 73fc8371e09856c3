# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nova-api's state machine for the power actions (plugin_utils/compute/actions.py) and the API status of the
new vm_states and task_states."""

from __future__ import annotations

from collections import namedtuple

import pytest

from ansible_collections.bootflow.cloud.plugins.module_utils.common.errors import Conflict
from ansible_collections.bootflow.cloud.plugins.plugin_utils.compute import actions, instances
from ansible_collections.bootflow.cloud.plugins.plugin_utils.identity.policy import POLICY

Row = namedtuple("Row", "name uuid vm_state task_state")
STATES = ("active", "stopped", "paused", "suspended", "error", "building")
# Nova's check_instance_state for each action (nova/compute/api.py, vm_states.ALLOW_*_REBOOT)
NOVA_ALLOWED = {
    "stop": {"active", "error"}, "start": {"stopped"}, "reboot_soft": {"active"},
    "reboot_hard": {"active", "stopped", "paused", "suspended", "error"}, "pause": {"active"},
    "unpause": {"paused"}, "suspend": {"active"}, "resume": {"suspended"},
}
ALREADY_THERE = {"stop": "stopped", "start": "active", "pause": "paused", "unpause": "active", "suspend": "suspended",
                 "resume": "active"}


@pytest.mark.parametrize("action", sorted(actions.ACTIONS))
@pytest.mark.parametrize("vm_state", STATES)
def test_each_action_is_allowed_where_nova_allows_it_and_a_noop_where_it_leads(action, vm_state):
    inst = Row("web-1", "u-1", vm_state, None)
    if vm_state in NOVA_ALLOWED[action]:
        assert actions.plan(inst, action) is actions.ACTIONS[action]
    elif ALREADY_THERE.get(action) == vm_state:
        assert actions.plan(inst, action) is None
    else:
        with pytest.raises(Conflict, match=r"Cannot '%s' instance web-1 \(u-1\) while it is in vm_state %s"
                           % (action, vm_state)):
            actions.plan(inst, action)


@pytest.mark.parametrize("action", sorted(actions.ACTIONS) + ["rebuild"])
def test_no_action_while_another_task_runs(action):
    other = "spawning"
    with pytest.raises(Conflict, match="while it is in task_state spawning"):
        actions.plan(Row("web-1", "u-1", "active", other), action)


@pytest.mark.parametrize("action", sorted(actions.ACTIONS) + ["rebuild"])
def test_the_same_action_found_interrupted_in_its_task_state_is_carried_on(action):
    act = actions.REBUILD if action == "rebuild" else actions.ACTIONS[action]
    inst = Row("web-1", "u-1", act.allowed[0], act.task)
    assert actions.plan(inst, action) is act and actions.resumes(inst, act)
    others = [a for a in actions.ACTIONS.values() if a.task != act.task]
    assert not any(actions.resumes(inst, a) for a in others)


def test_a_rebuild_interrupted_in_its_spawn_is_carried_on():
    assert actions.plan(Row("web-1", "u-1", "stopped", "rebuild_spawning"), "rebuild") is actions.REBUILD


def test_every_action_has_a_task_state_a_result_and_a_policy_rule():
    for act in actions.ACTIONS.values():
        assert act.task in instances.TASK_STATES and act.done in instances.VM_STATES
        assert POLICY[act.rule] == ("admin", "member")


@pytest.mark.parametrize("vm_state,task_state,status", [
    ("active", None, "ACTIVE"), ("active", "rebooting", "REBOOT"), ("active", "rebooting_hard", "HARD_REBOOT"),
    ("active", "powering-off", "ACTIVE"), ("stopped", None, "SHUTOFF"), ("stopped", "powering-on", "SHUTOFF"),
    ("paused", None, "PAUSED"), ("suspended", None, "SUSPENDED"), ("building", "spawning", "BUILD"),
    ("error", None, "ERROR"), ("deleted", None, "DELETED"),
])
def test_api_status_as_nova_shows_it(vm_state, task_state, status):
    assert instances.api_status(vm_state, task_state) == status


@pytest.mark.parametrize("vm_state", STATES)
def test_rebuild_is_allowed_where_nova_allows_it_and_never_a_noop(vm_state):
    inst = Row("web-1", "u-1", vm_state, None)
    if vm_state in ("active", "stopped", "error"):
        assert actions.plan(inst, "rebuild") is actions.REBUILD
    else:
        with pytest.raises(Conflict, match=r"Cannot 'rebuild' instance web-1 \(u-1\) while it is in vm_state %s"
                           % vm_state):
            actions.plan(inst, "rebuild")


@pytest.mark.parametrize("vm_state,task_state", [("active", "rebuilding"), ("stopped", "rebuild_spawning"),
                                                 ("error", "rebuilding")])
def test_a_rebuild_shows_as_rebuild(vm_state, task_state):
    assert instances.api_status(vm_state, task_state) == "REBUILD"


@pytest.mark.parametrize("vm_state", STATES)
def test_a_snapshot_is_allowed_where_nova_allows_create_image(vm_state):
    inst = Row("web-1", "u-1", vm_state, None)
    if vm_state in ("active", "stopped", "paused", "suspended"):
        assert actions.plan(inst, "snapshot") is actions.SNAPSHOT
    else:
        with pytest.raises(Conflict, match=r"Cannot 'snapshot' instance web-1 \(u-1\) while it is in vm_state %s"
                           % vm_state):
            actions.plan(inst, "snapshot")


@pytest.mark.parametrize("task_state", ["image_snapshot", "image_uploading"])
def test_an_interrupted_snapshot_is_made_again_and_blocks_the_other_actions(task_state):
    inst = Row("web-1", "u-1", "active", task_state)
    assert actions.plan(inst, "snapshot") is actions.SNAPSHOT
    with pytest.raises(Conflict, match="while it is in task_state %s" % task_state):
        actions.plan(inst, "stop")
    assert instances.api_status("active", task_state) == "ACTIVE"     # Nova shows a snapshotting server ACTIVE
    assert POLICY[actions.SNAPSHOT.rule] == ("admin", "member")
