# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Issue 16 on a real test host (bfhv211): attack replays through the real playbooks and modules.

- finding 12: after a real boot, the instance directory, its config drive (holding the user data), its
  console log and its disk overlay have no bit for "other", the guest still boots and gets its lease, and
  the run's output (-v) and instance_info never hold the user data;
- finding 9: a hostname with a newline (or a newline plus a forged "mac,ip" line) for the guest's DHCP
  reservation or its config drive, and an instance named with a newline, are refused on the controller
  with nothing changed anywhere (DB, host files, controller files);
- finding 11: a member's instance named with U+202E or \\x9b is refused naming the code point;
- finding 14: a member's port or fleet list with a fixed IP (in the pool and outside it) is refused with
  nothing changed; an admin still may.
The tests run in file order and share the guest."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conftest import REPO, host_session, snapshot_diff, wait_console

HOST_N = 211
NAME = "sec-vm"
MARKER = "SECRET-USERDATA-MARKER-4b7e19"
USER_DATA = "#cloud-config\n# %s\n" % MARKER
INSTANCES = "/var/lib/bootflow/instances"


@pytest.fixture(scope="module")
def sec_env(tmp_path_factory):
    with host_session(tmp_path_factory, HOST_N, "bootflow-sec") as env:
        yield env


def adhoc(env, module, args, host="localhost", check=False):
    """One bootflow module through ``ansible`` (the real action plugin); its JSON result."""
    cmd = ["ansible", host, "-i", str(env.inventory), "-m", module, "-a", json.dumps(args), "-o"]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=REPO, env=dict(env.env, ANSIBLE_LOAD_CALLBACK_PLUGINS="0"), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300, check=False)
    assert " => " in proc.stdout, proc.stdout
    return json.loads(proc.stdout.split(" => ", 1)[1]), proc.stdout


def token(env, **args):
    res, out = adhoc(env, "bootflow.cloud.token", args)
    assert "token" in res, out
    return res["token"]


@pytest.fixture(scope="module")
def tokens(sec_env):
    env = sec_env
    admin_password = open(os.path.join(str(env.state_dir), "admin-password")).read().strip()
    admin = token(env, username="admin", password=admin_password)
    for module, args in (("bootflow.cloud.project", {"name": "sec-p"}),
                         ("bootflow.cloud.user", {"name": "sec-mallory", "password": "mpw", "default_project": "sec-p"}),
                         ("bootflow.cloud.role_assignment",
                          {"user": "sec-mallory", "project": "sec-p", "role": "member"})):
        res, out = adhoc(env, module, dict(args, auth_token=admin))
        assert not res.get("failed") and "| FAILED! =>" not in out, out
    return {"admin": admin, "member": token(env, username="sec-mallory", password="mpw", project="sec-p")}


@pytest.fixture(scope="module")
def guest(sec_env):
    extra = dict(bootflow_instance_name=NAME, bootflow_user_data=USER_DATA)
    res = sec_env.play("boot.yml", "-v", "-e", json.dumps(extra))
    inst = sec_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME)[0]
    port = sec_env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    yield dict(out=res.out, inst=inst, port=port, uuid=inst["uuid"])
    if sec_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME):   # a test failed before the delete
        sec_env.play("delete.yml", "-e", json.dumps(dict(bootflow_instance_name=NAME)), check=False)


def refused_unchanged(env, run, pattern):
    """``run()`` -> (result, output) must fail matching ``pattern`` and leave DB, host and controller as they were."""
    before = env.everything()
    res, out = run()
    # (the oneline callback leaves "failed" out of the JSON and says FAILED! before it)
    assert (res.get("failed") or "| FAILED! =>" in out) and re.search(pattern, res.get("msg", "")), out[-3000:]
    assert snapshot_diff(before, env.everything()) == []
    return res


def test_guest_files_are_not_world_readable_and_the_guest_still_boots(sec_env, guest):
    env, uuid = sec_env, guest["uuid"]
    m = wait_console(env, uuid, r"GUEST-DHCP-LEASE: iface=eth0 ip=(\S+)")
    assert m.group(1) == guest["port"]["ip"]
    assert env.query("SELECT vm_state, task_state FROM instances WHERE uuid=?", uuid) == \
        [{"vm_state": "active", "task_state": None}]
    d = "%s/%s" % (INSTANCES, uuid)
    stats = {}
    for line in env.ssh("stat -c '%%a %%U %%G %%n' %s %s/disk.config %s/console.log %s/disk" % (d, d, d, d)).splitlines():
        mode, user, group, path = line.split(" ", 3)
        stats[path] = (int(mode, 8), user, group)
    assert len(stats) == 4, stats
    for path, (mode, _user, _group) in stats.items():
        assert mode & 0o007 == 0, (path, oct(mode), stats)      # nothing for "other"
    assert stats[d][0] == 0o750 and stats[d][2] == "libvirt-qemu", stats
    assert stats[d + "/disk.config"][0] in (0o600, 0o640), stats
    # QEMU runs as libvirt-qemu:libvirt-qemu here (libvirt's Debian defaults, dynamic_ownership on)
    qemu = env.ssh("ps -o user:32=,group:32= -C qemu-system-x86_64").split()
    assert qemu[:2] == ["libvirt-qemu", "libvirt-qemu"], qemu


def test_the_user_data_is_in_no_task_result(sec_env, guest, tokens):
    assert MARKER not in guest["out"], "the -v output of boot.yml shows the user data"
    assert "user_data_sha256" in guest["out"] or "user_data_size" in guest["out"] or NAME in guest["out"]
    res, out = adhoc(sec_env, "bootflow.cloud.instance_info", {"auth_token": tokens["admin"], "instance": NAME})
    assert res["instance"]["user_data_size"] == len(USER_DATA) and MARKER not in out, out[-2000:]
    # the drive on the host still carries it for the guest
    assert MARKER in sec_env.ssh("isoinfo -J -i %s/%s/disk.config -x /user-data" % (INSTANCES, guest["uuid"]))


@pytest.mark.parametrize("hostname", ["vm1\n", "vm1\nfa:16:3e:00:00:01,10.0.0.99"])
def test_a_hostname_with_a_newline_is_refused_before_the_host_is_touched(sec_env, guest, tokens, hostname):
    env = sec_env
    host = "bfhv%d" % HOST_N
    refused_unchanged(env, lambda: adhoc(env, "bootflow.cloud.dhcp_lease", {
        "auth_token": tokens["admin"], "port_id": guest["port"]["id"], "hostname": hostname}, host=host),
        r"invalid hostname")
    refused_unchanged(env, lambda: adhoc(env, "bootflow.cloud.config_drive", {
        "auth_token": tokens["admin"], "instance_uuid": guest["uuid"], "hostname": hostname}, host=host),
        r"invalid hostname")
    hosts = env.ssh("cat /var/lib/bootflow/dhcp/*/host")
    assert "10.0.0.99" not in hosts and hosts.count("\n") == 1, hosts


def test_an_instance_named_with_a_newline_is_refused_by_boot_yml(sec_env, guest):
    env = sec_env
    before = env.everything()
    res = env.play("boot.yml", "-e", json.dumps(dict(bootflow_instance_name="vm1\nfa:16:3e:00:00:01,10.0.0.99")),
                   check=False)
    assert res.rc != 0 and "U+000A" in res.out, res.out[-3000:]
    assert snapshot_diff(before, env.everything()) == []


@pytest.mark.parametrize("char,code", [("\u202e", "U+202E"), ("\x9b", "U+009B"), ("\u200b", "U+200B")])
def test_a_members_name_with_a_format_or_c1_character_is_refused(sec_env, guest, tokens, char, code):
    refused_unchanged(sec_env, lambda: adhoc(sec_env, "bootflow.cloud.instance", {
        "auth_token": tokens["member"], "name": "evil" + char + "gpj.exe", "flavor": "m1.tiny",
        "image": "bootflow-guest", "networks": ["private"], "volume_size_gb": 0}), re.escape(code))


def test_a_member_may_not_choose_a_fixed_ip(sec_env, guest, tokens):
    env = sec_env
    res, out = adhoc(env, "bootflow.cloud.instance", {
        "auth_token": tokens["member"], "name": "sec-member-vm", "flavor": "m1.tiny", "image": "bootflow-guest",
        "networks": ["private"], "volume_size_gb": 0})
    assert not res.get("failed") and "| FAILED! =>" not in out, out
    sub = env.query("SELECT * FROM subnets")[0]
    in_pool = ".".join(sub["pool_end"].split(".")[:3] + [str(int(sub["pool_end"].split(".")[3]) - 1)])
    outside = "10.98.%d.5" % HOST_N    # outside the pool (and the subnet)
    rule = r"Policy doesn't allow network:create_port:fixed_ips:ip_address"
    for ip in (in_pool, outside):
        refused_unchanged(env, lambda ip=ip: adhoc(env, "bootflow.cloud.port", {
            "auth_token": tokens["member"], "instance": "sec-member-vm", "fixed_ips": {"private": ip}}), rule)
        refused_unchanged(env, lambda ip=ip: adhoc(env, "bootflow.cloud.boot_request", {
            "auth_token": tokens["member"], "instances": [
                {"name": "sec-f1", "flavor": "m1.tiny", "image": "bootflow-guest", "networks": ["private"]},
                {"name": "sec-f2", "flavor": "m1.tiny", "image": "bootflow-guest",
                 "networks": [{"network": "private", "fixed_ip": ip}]}]}), rule)
    assert env.query("SELECT name FROM instances WHERE name LIKE 'sec-f%'") == []
    # an admin still may (check mode: validated the same way, nothing kept)
    res, out = adhoc(env, "bootflow.cloud.boot_request", {
        "auth_token": tokens["admin"], "instances": [
            {"name": "sec-f2", "flavor": "m1.tiny", "image": "bootflow-guest",
             "networks": [{"network": "private", "fixed_ip": in_pool}]}]},
        check=True)
    assert "| FAILED! =>" not in out and res["changed"], out
    res, out = adhoc(env, "bootflow.cloud.instance", {"auth_token": tokens["member"], "name": "sec-member-vm",
                                                      "state": "absent"})
    assert "| FAILED! =>" not in out, out


def test_delete_leaves_the_host_clean(sec_env, guest):
    res = sec_env.play("delete.yml", "-e", json.dumps(dict(bootflow_instance_name=NAME)))
    assert sec_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME) == [], res.out[-3000:]
    assert "No such file" in sec_env.ssh("ls %s/%s 2>&1 || true" % (INSTANCES, guest["uuid"]))
