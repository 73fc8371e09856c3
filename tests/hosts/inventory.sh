#!/usr/bin/env bash
# Print an Ansible INI inventory for the test hosts started with tests/hosts/testhost.sh.
# usage: inventory.sh N1 [N2 ...] > inventory.ini
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 N1 [N2 ...]" >&2; exit 2; }
ROOT=${BOOTFLOW_TESTHOSTS:-/var/tmp/bootflow-hosts}
echo "[hypervisors]"
for N in "$@"; do
  if ! [[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 250 ]]; then echo "N must be 1..250: $N" >&2; exit 2; fi
  # /usr/bin/python3: the hosts' private /root hides pyenv; Debian's python3 has python3-libvirt
  echo "bfhv$N ansible_host=10.98.$N.2 ansible_user=root ansible_python_interpreter=/usr/bin/python3" \
       "ansible_ssh_private_key_file=$ROOT/id_ed25519" \
       "ansible_ssh_common_args='-o UserKnownHostsFile=$ROOT/known_hosts -o StrictHostKeyChecking=accept-new'"
done
echo
echo "[all:vars]"
# the test site playbooks/bootstrap.yml registers (the bootstrap role has no image and no network of its own):
# the offline-built test guest (tests/guest/build_guest.sh) and the test network on the hypervisor role's bridge
echo "bootflow_image_file=${BOOTFLOW_GUEST_DIR:-/var/cache/bootflow/guest}/disk.qcow2"
echo "bootflow_network_bridge=br-bootflow"
echo "bootflow_network_cidr=10.99.0.0/24"
echo
echo "[controller]"
# quoted: the INI parser splits host lines on whitespace (shlex)
echo "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\""
