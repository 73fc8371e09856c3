#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for developing and testing bootflow.cloud
# (called by `make setup`). Every step checks first and only does work when something is missing
# or changed; a second run takes about a second. One line per step, with its duration; the full
# output of apt / pip / the guest build goes to build/setup.log.
#
#   1. apt packages (apt-get update only when something is missing)
#   2. /dev/kvm permissions (no udev here)
#   3. controller venv .venv (python3.12) + requirements-dev.txt (re-run when its sha256 changes)
#   4. test guest image (tests/guest/build_guest.sh; rebuilt when that script changes)
#   5. ansible-test get-pip stand-in (only when ~/.ansible/test/cache has no get_pip for the version)
#   6. OpenStack services venv (Keystone, Glance, Placement) for the backend tests
#      (tests/openstack/requirements.txt; re-run when
#      its sha256 changes)
#   7. awx.awx for ansible-lint only (extensions/awx/): only ansible_collections/awx/awx of a pinned `ansible`
#      wheel from PyPI, into build/lint-collections (ansible.cfg's collections_path); Galaxy is not needed
#
# env: BOOTFLOW_PYTHON (interpreter for .venv), BOOTFLOW_GUEST_DIR (guest output dir),
#      BOOTFLOW_OPENSTACK_VENV (default /var/tmp/bootflow-openstack/venv)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$REPO/.venv
REQ=$REPO/requirements-dev.txt
GUEST_DIR=${BOOTFLOW_GUEST_DIR:-/var/cache/bootflow/guest}
LOG=$REPO/build/setup.log
OS_VENV=${BOOTFLOW_OPENSTACK_VENV:-/var/tmp/bootflow-openstack/venv}
OS_REQ=$REPO/tests/openstack/requirements.txt
export DEBIAN_FRONTEND=noninteractive

# postgresql: the tests and bench/ start private servers from its binaries (none runs as a service)
# chromium: the headless browser that renders the request_flow sequence diagram in its test
# strace: bench/bench_boot.py counts ansible-core run_command's 1 s stalls on the test host with it
APT_PACKAGES="qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-daemon-driver-qemu
  libvirt-clients libvirt-dev dnsmasq-base dnsmasq-utils busybox-static bridge-utils iproute2 kmod
  cpio xz-utils syslinux syslinux-common mtools dosfstools pkg-config gcc python3-dev python3-venv
  openssh-server python3-libvirt python3-lxml genisoimage shellcheck postgresql strace
  chromium"

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (apt, /dev/kvm, /var/cache/bootflow)" >&2; exit 1; }
mkdir -p "$REPO/build"
# One setup at a time (make setup from two shells): the lock lives outside the repo tree.
LOCKDIR=/run/lock; [ -d "$LOCKDIR" ] || LOCKDIR=/tmp
exec 8>"$LOCKDIR/bootflow-setup-$(echo "$REPO" | sha256sum | cut -c1-12).lock"
flock 8
: > "$LOG"

now() { date +%s%N; }
secs() { printf '%.1f' "$(( ($(now) - $1) / 1000000 ))e-3"; }
# step "title" function: runs the function in this shell (set -e applies inside it) and prints
# its one-line RESULT with the time taken. A failure ends the script via the EXIT trap below.
CURRENT=""
step() {
  local t0; CURRENT=$1; shift
  RESULT=""; t0=$(now)
  echo "=== $CURRENT" >> "$LOG"
  "$@"
  printf '%-22s %-58s %5s s\n' "$CURRENT" "${RESULT:-done}" "$(secs "$t0")"
  CURRENT=""
}
on_exit() {
  local rc=$?
  if [ $rc -ne 0 ] && [ -n "$CURRENT" ]; then
    printf '%-22s FAILED (rc=%d); last lines of %s:\n' "$CURRENT" "$rc" "$LOG" >&2
    tail -n 25 "$LOG" >&2
  fi
}
trap on_exit EXIT
run() { "$@" >> "$LOG" 2>&1; }   # command output only goes to the log

# --- 1. apt packages ------------------------------------------------------------------------------
apt_packages() {
  # openssh-server's postinst would start an sshd on 0.0.0.0:22 in the root namespace; with
  # policy-rc.d exiting 101 no service is started (the test hosts run their own sshd).
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# bootflow setup: never start services from package scripts\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
  fi
  local missing packages
  read -r -d '' -a packages <<<"$APT_PACKAGES" || true   # all lines, one word per package
  # dpkg-query exits 1 when a package is unknown to dpkg: that just means "missing"
  missing=$({ dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${packages[@]}" 2>/dev/null || true; } |
            awk '$2 == "ii" {ok[$1] = 1} END {for (p in ok) print p}' |
            sort | comm -13 - <(printf '%s\n' "${packages[@]}" | sort) | tr '\n' ' ')
  if [ -z "${missing// }" ]; then RESULT="all ${#packages[@]} present"; return 0; fi
  local -a todo
  read -r -a todo <<<"$missing"
  run apt-get update -q
  run apt-get install -y -q --no-install-recommends "${todo[@]}"
  RESULT="installed: $missing"
}

# --- 2. /dev/kvm ------------------------------------------------------------------------------------
kvm_perms() {
  # No udev: the node is root:root 0600. libvirtd checks KVM access as libvirt-qemu and, failing,
  # discards its QEMU capabilities cache on EVERY connect (4-12 s per virsh call instead of 10 ms).
  # Guests still run as type='qemu' (TCG): KVM here is PVM-backed and crashes stock kernels.
  if [ ! -e /dev/kvm ]; then RESULT="no /dev/kvm (TCG only, nothing to do)"; return 0; fi
  if [ "$(stat -c %G:%a /dev/kvm)" = kvm:660 ]; then RESULT="already kvm:0660"; return 0; fi
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  RESULT="set kvm:0660"
}

# --- 3. controller venv -----------------------------------------------------------------------------
venv() {
  local py=${BOOTFLOW_PYTHON:-} want sum stamp=$VENV/.bootflow-requirements-dev.sha256 made=""
  if [ -z "$py" ]; then
    if [ -x /root/.pyenv/versions/3.12.1/bin/python3.12 ]; then py=/root/.pyenv/versions/3.12.1/bin/python3.12
    else py=$(command -v python3.12 || true); fi
  fi
  [ -n "$py" ] || { echo "no python3.12 found (set BOOTFLOW_PYTHON)" >> "$LOG"; return 1; }
  want=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # Reuse a working venv of the same minor version (someone may be installing into it right now:
  # we only add what is missing). A venv of another version is rebuilt from scratch.
  if [ "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$want" ]; then
    if [ -e "$VENV" ]; then run "$py" -m venv --clear "$VENV"; else run "$py" -m venv "$VENV"; fi
    made="created ($want), "
  fi
  sum=$(sha256sum "$REQ" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then RESULT="${made}requirements-dev.txt unchanged"; return 0; fi
  run "$VENV/bin/python" -m pip install -q -r "$REQ"
  echo "$sum" > "$stamp"          # only after a successful install
  RESULT="${made}pip install -r requirements-dev.txt"
}

# --- 4. guest image ---------------------------------------------------------------------------------
guest() {
  local f sum builder=$REPO/tests/guest/build_guest.sh
  sum=$(sha256sum "$builder" | cut -d' ' -f1)
  for f in disk.raw disk.qcow2 vmlinuz initrd.gz guest.json; do [ -s "$GUEST_DIR/$f" ] || sum=missing; done
  if [ "$(cat "$GUEST_DIR/build_guest.sha256" 2>/dev/null)" = "$sum" ]; then
    RESULT="up to date in $GUEST_DIR"; return 0
  fi
  BOOTFLOW_GUEST_DIR=$GUEST_DIR run bash "$builder"      # writes build_guest.sha256 itself
  RESULT="built in $GUEST_DIR"
}

# --- 5. ansible-test get-pip stand-in ---------------------------------------------------------------
get_pip() {
  local ver dest src=$REPO/tests/ansible-test/get_pip_standin.py
  # the pip version this ansible-test bootstraps (the name of the file it looks for)
  ver=$(cd / && "$VENV/bin/python" -c '
import types
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(types.SimpleNamespace(version="3.12"))["pip"])' 2>> "$LOG") || {
    echo "cannot read the pip version from ansible-test" >> "$LOG"; return 1; }
  dest=$HOME/.ansible/test/cache/get_pip_${ver//./_}.py
  if [ ! -e "$dest" ]; then
    install -D -m 0644 "$src" "$dest"; RESULT="installed $dest"
  elif grep -q 'bootflow get-pip stand-in' "$dest" && ! cmp -s "$src" "$dest"; then
    install -m 0644 "$src" "$dest"; RESULT="refreshed $dest"      # our older copy
  else
    RESULT="present: ${dest/#$HOME/\~}"     # ours, or a real get-pip: left alone
  fi
}

# --- 6. OpenStack venv --------------------------------------------------------------------------
openstack_venv() {
  # Real Keystone, Glance and Placement (+ uwsgi) for tests/openstack/*.sh, in a venv of its own so that their
  # oslo/SQLAlchemy pins never move .venv's. Same interpreter as .venv. About 35 s to 4 min the first
  # time (downloads, uwsgi build), then only this check.
  local py sum stamp=$OS_VENV/.bootflow-openstack-requirements.sha256
  sum=$(sha256sum "$OS_REQ" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ] && [ -x "$OS_VENV/bin/keystone-manage" ] && [ -x "$OS_VENV/bin/glance-manage" ] \
     && [ -x "$OS_VENV/bin/placement-manage" ] && [ -x "$OS_VENV/bin/uwsgi" ]; then
    RESULT="up to date in $OS_VENV"; return 0
  fi
  py=$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)')
  [ -x "$OS_VENV/bin/python" ] || run "$py" -m venv "$OS_VENV"
  run "$OS_VENV/bin/python" -m pip install -q -r "$OS_REQ"
  echo "$sum" > "$stamp"          # only after a successful install
  RESULT="pip install -r tests/openstack/requirements.txt"
}

# --- 7. awx.awx for ansible-lint ----------------------------------------------------------------------
# extensions/awx/create_job_templates.yml uses awx.awx, which no test runs (no AWX here): ansible-lint resolves
# its modules from this copy. The community package `ansible` bundles it; only that one collection is taken from
# the wheel, into build/ (never into .venv), and again only when the pin changes.
AWX_FROM="ansible==10.7.0"      # bundles awx.awx 24.6.1
LINT_COLLECTIONS=$REPO/build/lint-collections
lint_collections() {
  local tmp dest=$LINT_COLLECTIONS/ansible_collections/awx/awx stamp=$LINT_COLLECTIONS/.bootflow-awx-from
  if [ "$(cat "$stamp" 2>/dev/null)" = "$AWX_FROM" ] && [ -s "$dest/MANIFEST.json" ]; then
    RESULT="awx.awx up to date (from $AWX_FROM)"; return 0
  fi
  tmp=$(mktemp -d)
  run "$VENV/bin/python" -m pip download -q --no-deps -d "$tmp" "$AWX_FROM"
  rm -rf "$LINT_COLLECTIONS/ansible_collections/awx"
  run "$VENV/bin/python" - "$tmp" "$LINT_COLLECTIONS" <<'PY'
import glob, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(src + "/ansible-*.whl")
with zipfile.ZipFile(wheel) as z:
    z.extractall(dest, [n for n in z.namelist() if n.startswith("ansible_collections/awx/awx/")])
PY
  rm -rf "$tmp"
  echo "$AWX_FROM" > "$stamp"     # only after a successful extraction
  RESULT="awx.awx extracted from $AWX_FROM into ${LINT_COLLECTIONS#"$REPO"/}"
}

T0=$(now)
step "apt packages"            apt_packages
step "/dev/kvm"                kvm_perms
step "venv .venv"              venv
step "guest image"             guest
step "ansible-test get-pip"    get_pip
step "openstack venv"         openstack_venv
step "awx.awx (lint)"         lint_collections
echo "setup done in $(secs "$T0") s (log: ${LOG#"$REPO"/})"
