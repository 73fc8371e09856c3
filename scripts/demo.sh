#!/usr/bin/env bash
# make demo: one test hypervisor host, the embedded defaults (local identity + SQLite in
# ~/.bootflow), then boot.yml; finally show what the guest itself reports.
# usage: demo.sh [HOST_NUMBER]
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
N=${1:-1}
HOST=bfhv$N
export ANSIBLE_CONFIG=$REPO/ansible.cfg PATH=$REPO/.venv/bin:$PATH
NAME=${BOOTFLOW_DEMO_NAME:-demo}

tests/hosts/testhost.sh start "$N"
# the inventory also holds the test site that bootstrap.yml registers (test guest image, br-bootflow, 10.99.0.0/24)
tests/hosts/inventory.sh "$N" > build/inventory.ini

echo "== bootstrap: identity, flavor, image, network (controller state in ${BOOTFLOW_STATE_DIR:-~/.bootflow})"
ansible-playbook playbooks/bootstrap.yml
echo "== hypervisors: prepare $HOST and report its capacity"
ansible-playbook playbooks/hypervisors.yml
echo "== boot: the Nova request flow"
ansible-playbook playbooks/boot.yml -e bootflow_instance_name="$NAME"

echo "== what the guest says (serial console on $HOST)"
python3 - "$NAME" <<'PY'
import json, os, sqlite3, sys
db = sqlite3.connect(os.path.join(os.environ.get("BOOTFLOW_STATE_DIR") or os.path.expanduser("~/.bootflow"), "bootflow.db"))
row = db.execute("select uuid, host, vm_state, task_state from instances where name=? and deleted=0", (sys.argv[1],)).fetchone()
ports = db.execute("select mac, ip, network_id from ports where instance_uuid=?", (row[0],)).fetchall()
json.dump({"uuid": row[0], "host": row[1], "vm_state": row[2], "ports": ports}, open("build/demo-instance.json", "w"))
PY
UUID=$(python3 -c 'import json; print(json.load(open("build/demo-instance.json"))["uuid"])')
IP=$(python3 -c 'import json; print(json.load(open("build/demo-instance.json"))["ports"][0][1])')
MAC=$(python3 -c 'import json; print(json.load(open("build/demo-instance.json"))["ports"][0][0])')
NET=$(python3 -c 'import json; print(json.load(open("build/demo-instance.json"))["ports"][0][2])')
for _ in $(seq 1 60); do
  tests/hosts/testhost.sh ssh "$N" "grep -q GUEST-HTTP /var/lib/bootflow/instances/$UUID/console.log" && break
  sleep 0.5
done
tests/hosts/testhost.sh ssh "$N" "grep -E 'GUEST-(DHCP-LEASE|BLOCK|HOSTNAME|HTTP)' /var/lib/bootflow/instances/$UUID/console.log"
echo "== dnsmasq's leases file on $HOST"
tests/hosts/testhost.sh ssh "$N" "grep -i '$MAC' /var/lib/bootflow/dhcp/$NET/leases"
echo "== libvirt on $HOST"
tests/hosts/testhost.sh ssh "$N" "virsh -c qemu:///system domstate bootflow-$UUID; virsh -c qemu:///system domblklist bootflow-$UUID"
echo "== the guest's HTTP page, fetched from inside $HOST's network namespace"
tests/hosts/testhost.sh ssh "$N" "timeout 10 busybox wget -qO- http://$IP/"
echo
echo "demo: instance $NAME ($UUID) is ACTIVE on $HOST with IP $IP. Remove it with: make demo-delete"
