# Copyright (c) bootflow.cloud contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""boot.yml end to end on a real test host: the guest boots, gets exactly the allocated IP from
dnsmasq, sees its volume as vdb and serves its page; a re-run changes nothing; delete.yml leaves
nothing behind. The tests in this module run in file order and share one instance."""

from __future__ import annotations

import datetime
import subprocess

import pytest

from conftest import REPO, console, wait_console

NAME = "it-vm"


@pytest.fixture(scope="module")
def booted(it_env):
    before = it_env.host_snapshot()
    res = it_env.play("boot.yml", "-e", "bootflow_instance_name=%s" % NAME)
    rows = it_env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME)
    assert len(rows) == 1, rows
    return {"env": it_env, "first": res, "instance": rows[0], "before": before}


def test_instance_is_active_on_the_test_host(booted):
    inst = booted["instance"]
    assert (inst["vm_state"], inst["task_state"], inst["power_state"]) == ("active", None, "RUNNING")
    assert inst["host"] == booted["env"].host
    state = booted["env"].ssh("virsh -c qemu:///system domstate bootflow-%s" % inst["uuid"]).strip()
    assert state == "running"


def test_guest_got_exactly_the_allocated_ip_from_dnsmasq(booted):
    env, inst = booted["env"], booted["instance"]
    ports = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])
    assert len(ports) == 1 and ports[0]["status"] == "ACTIVE"
    port = ports[0]
    m = wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: iface=\S+ ip=(\S+)")
    assert m.group(1) == port["ip"]
    assert port["mac"].startswith("fa:16:3e:")
    leases = env.ssh("cat /var/lib/bootflow/dhcp/%s/leases" % port["network_id"])
    assert any(line.split()[1:3] == [port["mac"], port["ip"]] for line in leases.splitlines()), leases
    hosts = env.ssh("cat /var/lib/bootflow/dhcp/%s/host" % port["network_id"])
    assert "%s,host-%s,%s" % (port["mac"], port["ip"].replace(".", "-"), port["ip"]) in hosts


def test_guest_sees_its_volume_as_vdb(booted):
    env, inst = booted["env"], booted["instance"]
    vols = env.query("SELECT * FROM volumes WHERE instance_uuid=?", inst["uuid"])
    assert [(v["status"], v["device"]) for v in vols] == [("in-use", "vdb")]
    wait_console(env, inst["uuid"], r"GUEST-BLOCK: .*\bvda\b.*\bvdb\b")
    blk = env.ssh("virsh -c qemu:///system domblklist bootflow-%s" % inst["uuid"])
    assert "vdb" in blk and vols[0]["name"] in blk


def test_guest_serves_its_page_inside_the_host_namespace(booted):
    env, inst = booted["env"], booted["instance"]
    ip = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]["ip"]
    wait_console(env, inst["uuid"], r"GUEST-HTTP: up")
    page = env.ssh("timeout 10 busybox wget -qO- http://%s/" % ip)  # (busybox 1.35 wget crashes on -T)
    assert "bootflow guest" in page and ip in page


def test_steps_recorded_in_seed_order_and_table_printed(booted):
    env, inst = booted["env"], booted["instance"]
    steps = env.query("SELECT seed_steps, vm_state, task_state FROM instance_steps WHERE instance_uuid=? ORDER BY id",
                      inst["uuid"])
    seeds = [s["seed_steps"] for s in steps]
    assert seeds[:3] == ["3-7", "8-12", "19-21"], seeds
    assert seeds[-1] == "28" and steps[-1]["vm_state"] == "active"
    order = ["3-7", "8-12", "19-21", "22-24", "25-27", "28"]
    assert [s for s in order if s in seeds] == order
    assert "REQUEST FLOW [%s]" % NAME in booted["first"].out


def test_second_boot_reports_no_changes(booted):
    env = booted["env"]
    again = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % NAME)
    recap = again.recap()
    assert recap and all(v["changed"] == 0 and v["failed"] == 0 for v in recap.values()), again.out[-3000:]
    assert len(env.query("SELECT * FROM instances WHERE name=? AND deleted=0", NAME)) == 1
    assert len(env.query("SELECT * FROM allocations")) == 1


def test_the_instances_inventory_plugin_lists_the_guest(booted):
    """The next job's view: ansible-inventory with bootflow.cloud.instances (state dir from the environment,
    the admin of the embedded identity) lists the ACTIVE guest at its fixed IP, in its hypervisor's group."""
    env, inst = booted["env"], booted["instance"]
    ip = env.query("SELECT ip FROM ports WHERE instance_uuid=?", inst["uuid"])[0]["ip"]
    source = env.state_dir.parent / "it.bootflow.yml"
    source.write_text("plugin: bootflow.cloud.instances\nstatuses: [ACTIVE]\n")
    graph = subprocess.run(["ansible-inventory", "-i", str(source), "--graph"], cwd=REPO, env=env.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120, check=True).stdout
    assert "@bootflow_host_%s:" % env.host in graph and "|--%s" % NAME in graph, graph
    listed = subprocess.run(["ansible-inventory", "-i", str(source), "--host", NAME], cwd=REPO, env=env.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120, check=True).stdout
    assert '"ansible_host": "%s"' % ip in listed and '"bootflow_uuid": "%s"' % inst["uuid"] in listed, listed


def test_delete_leaves_nothing(booted):
    env, inst = booted["env"], booted["instance"]
    port = env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"])[0]
    vol_id = env.query("SELECT id FROM volumes WHERE instance_uuid=?", inst["uuid"])[0]["id"]
    # the host last heard from 10 minutes ago (a clock, not a wait): delete.yml's domain step is its heartbeat
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    env.execute("UPDATE compute_nodes SET updated_at=? WHERE hostname=?", stale.isoformat(sep=" "), env.host)
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME)
    seen = env.query("SELECT updated_at FROM compute_nodes WHERE hostname=?", env.host)[0]["updated_at"]
    seen = datetime.datetime.fromisoformat(seen) if isinstance(seen, str) else seen
    assert seen > stale + datetime.timedelta(minutes=9), seen
    after = env.host_snapshot()
    assert after == booted["before"], (after, booted["before"])
    assert env.query("SELECT * FROM ports WHERE instance_uuid=?", inst["uuid"]) == []
    assert env.query("SELECT * FROM allocations WHERE consumer_id=?", inst["uuid"]) == []
    assert [v["status"] for v in env.query("SELECT status FROM volumes WHERE id=?", vol_id)] == ["deleted"]
    row = env.query("SELECT vm_state, deleted FROM instances WHERE uuid=?", inst["uuid"])[0]
    assert row["vm_state"] == "deleted" and row["deleted"] != 0
    # the lease was released too (dhcp_release), not just the reservation
    leases = env.ssh("cat /var/lib/bootflow/dhcp/%s/leases 2>/dev/null || true" % port["network_id"])
    assert port["mac"] not in leases, leases
    assert console(env, inst["uuid"]) == ""  # the instance dir (console log, overlay) is gone
    # and a second delete of a gone instance is a no-op that succeeds
    again = env.play("delete.yml", "-e", "bootflow_instance_name=%s" % NAME)
    assert all(v["failed"] == 0 for v in again.recap().values())


ALT_PATH = "/var/lib/bootflow/alt-instances"


def test_a_non_default_instances_path_is_used_for_every_instance_file(booted):
    """bootflow_instances_path is the host's instance directory for the whole build: the overlay, the
    config drive and the serial console log all go there (the console log once went to the default
    path whatever the variable said, and the domain step refused to start: its directory was missing)."""
    env = booted["env"]
    name = NAME + "-alt"
    res = env.play("boot.yml", "-e", "bootflow_instance_name=%s" % name, "-e", "bootflow_instances_path=%s" % ALT_PATH)
    inst = env.query("SELECT * FROM instances WHERE name=? AND deleted=0", name)[0]
    assert inst["vm_state"] == "active", res.out[-3000:]
    files = env.ssh("ls -1 %s/%s" % (ALT_PATH, inst["uuid"])).split()
    assert {"disk", "disk.config", "console.log"} <= set(files), files
    xml = env.ssh("virsh -c qemu:///system dumpxml bootflow-%s" % inst["uuid"])
    assert "%s/%s/console.log" % (ALT_PATH, inst["uuid"]) in xml
    assert "/var/lib/bootflow/instances/%s" % inst["uuid"] not in xml
    wait_console(env, inst["uuid"], r"GUEST-DHCP-LEASE: ", path="%s/%s/console.log" % (ALT_PATH, inst["uuid"]))
    env.play("delete.yml", "-e", "bootflow_instance_name=%s" % name, "-e", "bootflow_instances_path=%s" % ALT_PATH)
    left = env.ssh("ls -1 %s | grep -v -e '^_base$' -e '^locks$' || true" % ALT_PATH).split()
    assert left == [], left
    env.ssh("rm -rf %s" % ALT_PATH)
