#!/usr/bin/env bash
# Test "hypervisor host" N on this machine, reachable by Ansible over SSH like a production host.
#
#   root netns: bfrN 10.98.N.1/30  <--veth-->  eth0 10.98.N.2/30 in netns bfhvN (NO default route)
#
# One `ip netns exec bfhvN unshare --uts` invocation gives the host its own network, mount and UTS
# namespace (hostname bfhvN), bind-mounts private per-host state from $BOOTFLOW_TESTHOSTS/hostN/
# and starts virtlogd, libvirtd (qemu:///system of this host) and sshd (10.98.N.2:22 only). Every
# SSH session is a child of that sshd and so sees this host's network, mounts and hostname.
# Bridges and dnsmasq are NOT made here: the collection's hypervisor role / dhcp_lease module do it.
#
# Private per host (bind mounts):  /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt
#   /var/cache/libvirt /var/lib/bootflow /root /etc/hosts /etc/resolv.conf
# Shared with the machine: everything else (/usr, /tmp, /var/cache/bootflow/guest, ...).
#
# usage: testhost.sh start N | stop N | purge N | status N | ssh N [cmd...] | uri N [ssh]
#        N = 1..250; env BOOTFLOW_TESTHOSTS (default /var/tmp/bootflow-hosts)
set -euo pipefail

usage() { echo "usage: $0 start|stop|purge|status|ssh|uri N [args]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1; N=$2; shift 2
if ! [[ $N =~ ^[0-9]+$ && $N -ge 1 && $N -le 250 ]]; then echo "N must be 1..250" >&2; exit 2; fi

ROOT=${BOOTFLOW_TESTHOSTS:-/var/tmp/bootflow-hosts}
H=$ROOT/host$N
NS=bfhv$N; VR=bfr$N
IP_ROOT=10.98.$N.1; IP_HOST=10.98.$N.2
KEY=$ROOT/id_ed25519; KNOWN=$ROOT/known_hosts
SOCK=$H/run/libvirt-sock
URI="qemu+unix:///system?socket=$SOCK"
# pid file : expected process name (checked before any kill, so a recycled pid is never hit)
DAEMONS="$H/sshd/sshd.pid:sshd $H/run/libvirtd.pid:libvirtd $H/run/virtlogd.pid:virtlogd"

# PID 1 of this sandbox does not reap orphans, so a killed daemon stays a zombie and `kill -0`
# would still succeed: "alive" means the process exists, is not a zombie and has the right name.
alive() {   # alive PIDFILE NAME
  local pid st
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  st=$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null) || return 1
  [ "$st" != Z ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
all_alive() { local d; for d in $DAEMONS; do alive "${d%%:*}" "${d##*:}" || return 1; done; }
any_alive() { local d; for d in $DAEMONS; do alive "${d%%:*}" "${d##*:}" && return 0; done; return 1; }
ns_exists() { [ -e "/run/netns/$NS" ]; }
# One machine-wide lock on fd 9 for what parallel starts and purges must not interleave (key and
# known_hosts edits, the shared mount point against the netns list). Release it before starting daemons.
lock_root() { mkdir -p "$ROOT"; exec 9>"$ROOT/.lock"; flock 9; }
ssh_opts=(-i "$KEY" -o UserKnownHostsFile="$KNOWN" -o StrictHostKeyChecking=accept-new
          -o BatchMode=yes -o ConnectTimeout=5 -o LogLevel=ERROR)

# With BOOTFLOW_RESIDUE_LOG set (the integration suite's residue check, tests/integration/conftest.py),
# `start` logs the host and `stop`/`purge` log what it still holds before it goes: domains, paths
# under /var/lib/bootflow and the lines of its DHCP hosts/ports/leases files.
residue_log() {   # residue_log EVENT
  [ -n "${BOOTFLOW_RESIDUE_LOG:-}" ] || return 0
  {
    echo "@@ $NS $1 $(date +%s)"
    [ "$1" = start ] && return 0
    if [ -S "$SOCK" ] && alive "$H/run/libvirtd.pid" libvirtd; then
      timeout 20 virsh -c "$URI" list --all --name 2>/dev/null | sed '/^$/d; s/^/domain /'
    fi
    [ -d "$H/bootflow" ] && find "$H/bootflow" -mindepth 1 -printf 'path %P\n'
    for f in "$H"/bootflow/dhcp/*/host "$H"/bootflow/dhcp/*/ports "$H"/bootflow/dhcp/*/leases; do
      [ -f "$f" ] && sed "s|^|line ${f#"$H"/bootflow/} |" "$f"
    done
  } >> "$BOOTFLOW_RESIDUE_LOG" 2>/dev/null || true
}

do_stop() {
  if ns_exists; then residue_log "$([ "$cmd" = start ] && echo clear || echo "$cmd")"; fi
  # 1. running domains (qemu would otherwise be killed without libvirt noticing)
  if [ -S "$SOCK" ] && alive "$H/run/libvirtd.pid" libvirtd; then
    for d in $(timeout 20 virsh -c "$URI" list --name 2>/dev/null); do
      timeout 20 virsh -c "$URI" destroy "$d" >/dev/null 2>&1 || true
    done
  fi
  # 2. our daemons, by pid file
  local d pid
  for d in $DAEMONS; do
    if alive "${d%%:*}" "${d##*:}"; then kill "$(cat "${d%%:*}")" 2>/dev/null || true; fi
  done
  for _ in $(seq 1 30); do any_alive || break; sleep 0.1; done
  # 3. whatever still lives in the netns (ssh sessions, dnsmasq of dhcp_lease, qemu): by pid
  if ns_exists; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    for _ in $(seq 1 20); do [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break; sleep 0.1; done
    for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
  fi
  # 4. network
  ip link del "$VR" 2>/dev/null || true          # removes the peer in the netns too
  ip netns del "$NS" 2>/dev/null || true
  rm -f "$H/sshd/sshd.pid" "$H/run/libvirtd.pid" "$H/run/virtlogd.pid"
  # the shared mount point, once no test host uses it any more (only if empty). Under the lock that
  # start holds from making the mount points to adding its netns: without it, a purge running beside
  # the first start on a fresh machine removed that start's mount point before its netns existed.
  lock_root
  ls /run/netns/bfhv* >/dev/null 2>&1 || rmdir /var/lib/bootflow 2>/dev/null || true
  flock -u 9
}

do_start() {
  local t0=$SECONDS
  if all_alive && ns_exists; then residue_log start; echo "$NS already running ($IP_HOST)"; return 0; fi
  # half-started or crashed host: clear it first so start always converges to a clean state
  if ns_exists || ip link show "$VR" >/dev/null 2>&1; then do_stop; fi
  for b in ip unshare virtlogd libvirtd virsh ssh-keygen /usr/sbin/sshd /usr/bin/python3; do
    command -v "$b" >/dev/null || { echo "missing $b: run scripts/setup.sh" >&2; exit 1; }
  done

  mkdir -p "$ROOT" "$H"/{etc,run,lib,log,cache,bootflow,root/.ssh,sshd}
  chmod 755 "$ROOT" "$H" "$H/bootflow"
  chmod 700 "$H/root" "$H/root/.ssh"     # sshd StrictModes checks these (they are ~ and ~/.ssh)
  rm -rf "${H:?}/run/"*                  # /run is volatile: a start is a fresh boot
  lock_root                              # key / known_hosts edits: safe with parallel starts
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C bootflow-testhosts -f "$KEY"
  install -m 600 "$KEY.pub" "$H/root/.ssh/authorized_keys"
  [ -f "$H/sshd/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C "$NS" -f "$H/sshd/ssh_host_ed25519_key"
  # pin this host's current key, so a purged + recreated host never trips a "host key changed"
  touch "$KNOWN"
  ssh-keygen -q -R "$IP_HOST" -f "$KNOWN" >/dev/null 2>&1 || true
  echo "$IP_HOST $(cut -d' ' -f1,2 "$H/sshd/ssh_host_ed25519_key.pub")" >> "$KNOWN"
  rm -f "$KNOWN.old"
  flock -u 9

  cat > "$H/sshd/sshd_config" <<EOF
# test host $NS: own config (no Debian defaults, no PAM), key-only root login
ListenAddress $IP_HOST:22
HostKey $H/sshd/ssh_host_ed25519_key
PidFile $H/sshd/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# Ansible with forks and ControlMaster multiplexing opens many sessions at once
MaxStartups 100:30:200
MaxSessions 50
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
  if [ ! -f "$H/etc/libvirtd.conf" ]; then
    cp -a /etc/libvirt/. "$H/etc/"
    rm -f "$H"/etc/qemu/networks/autostart/*   # no 'default' NAT network (it would need iptables)
    echo 'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"' >> "$H/etc/libvirtd.conf"
  fi
  # A new host would probe QEMU once (~8 s: two binaries). The capabilities cache only depends on
  # this machine (binaries, kernel, CPU), so seed it from another test host; libvirtd validates it
  # and simply re-probes if it does not fit.
  if ! ls "$H"/cache/qemu/capabilities/*.xml >/dev/null 2>&1; then
    for c in "$ROOT"/host*/cache/qemu/capabilities; do
      if ls "$c"/*.xml >/dev/null 2>&1; then
        mkdir -p "$H/cache/qemu/capabilities"; cp -p "$c"/*.xml "$H/cache/qemu/capabilities/"; break
      fi
    done
  fi
  # bfhvN must resolve locally: libvirt's virGetHostname does getaddrinfo() and would otherwise wait
  # ~10 s per call for DNS. No nameserver: lookups fail at once inside the route-less netns.
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n%s\t%s\n%s\tcontroller\n' "$NS" "$IP_HOST" "$NS" "$IP_ROOT" > "$H/hosts"
  echo "# test host $NS: no DNS" > "$H/resolv.conf"

  # No udev here: /dev/kvm is root-only after boot and libvirtd then re-probes QEMU on every
  # connect (4-12 s). See docs / hypervisor REPORT Q2. Guests still run with type='qemu' (TCG).
  if [ -e /dev/kvm ] && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then chgrp kvm /dev/kvm; chmod 0660 /dev/kvm; fi
  # sshd's privsep dir, and the mount points (on a machine whose own libvirtd never ran, /run/libvirt
  # does not exist yet). These are empty directories on the real filesystem.
  # Under the lock (see do_stop): a purge beside us must not remove /var/lib/bootflow before our netns exists.
  lock_root
  mkdir -p /run/sshd /run/libvirt /etc/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /var/lib/bootflow
  ip netns add "$NS"
  flock -u 9
  ip -n "$NS" link set lo up
  ip link add "$VR" type veth peer name eth0 netns "$NS"
  ip addr add "$IP_ROOT/30" dev "$VR"; ip link set "$VR" up
  ip -n "$NS" addr add "$IP_HOST/30" dev eth0; ip -n "$NS" link set eth0 up
  # deliberately NO default route: the host reaches the controller and its own guests, nothing else

  # ONE invocation: every `ip netns exec` makes a fresh mount namespace, so all daemons must be
  # started from the same one to share the bind mounts.
  # shellcheck disable=SC2016  # the script is expanded by the inner sh, from its arguments
  ip netns exec "$NS" unshare --uts sh -ec '
    H=$1; hostname "$2"
    mount --make-rprivate /
    mount --bind "$H/etc"         /etc/libvirt
    mount --bind "$H/run"         /run/libvirt
    mount --bind "$H/lib"         /var/lib/libvirt
    mount --bind "$H/log"         /var/log/libvirt
    mount --bind "$H/cache"       /var/cache/libvirt
    mount --bind "$H/bootflow"    /var/lib/bootflow
    mount --bind "$H/root"        /root
    mount --bind "$H/hosts"       /etc/hosts
    mount --bind "$H/resolv.conf" /etc/resolv.conf
    mkdir -p /var/lib/libvirt/qemu /var/lib/libvirt/images /var/log/libvirt/qemu /var/cache/libvirt/qemu
    chown libvirt-qemu:kvm /var/lib/libvirt/qemu
    cd /
    # explicit pid files: the defaults (/run/libvirtd.pid, ...) would collide between hosts
    virtlogd -d -p /run/libvirt/virtlogd.pid
    # Pinned to one CPU: on this PVM-backed /dev/kvm the CPUID KVM reports differs between the two
    # CPUs, so an unpinned libvirtd finds its QEMU capabilities "outdated: host cpuid changed" about
    # every other lookup and re-probes QEMU (~4 s per binary, at start, define, start of a domain).
    # QEMU itself is not restricted: libvirt resets each guest'"'"'s affinity to all host CPUs.
    taskset -c 0 libvirtd -d -p /run/libvirt/libvirtd.pid
    /usr/sbin/sshd -f "$H/sshd/sshd_config" -E "$H/sshd/sshd.log"
  ' testhost "$H" "$NS" 9>&-

  for _ in $(seq 1 100); do [ -S "$SOCK" ] && all_alive && break; sleep 0.1; done
  all_alive || { echo "$NS: daemons did not come up (see $H/log/libvirtd.log, $H/sshd/sshd.log)" >&2; exit 1; }
  # first connect: libvirtd probes QEMU once (cached per host); do it now, not in the first test
  timeout 60 virsh -c "$URI" -q version >/dev/null || { echo "$NS: libvirtd not answering" >&2; exit 1; }
  residue_log start
  echo "$NS up in $((SECONDS - t0)) s: ssh root@$IP_HOST (testhost.sh ssh $N), state $H"
}

case "$cmd" in
start)
  # a failed start must not leave a half-built host behind (netns, veth, some daemons)
  trap 'rc=$?; [ $rc -eq 0 ] || { echo "$NS: start failed, cleaning up" >&2; do_stop >/dev/null 2>&1; }' EXIT
  do_start ;;
stop)  do_stop; echo "$NS stopped (state kept in $H)" ;;
purge)
  do_stop
  rm -rf "$H"
  if [ -f "$KNOWN" ]; then   # under the same lock as start's edits: hosts start and purge in parallel
    lock_root
    ssh-keygen -q -R "$IP_HOST" -f "$KNOWN" >/dev/null 2>&1 || true; rm -f "$KNOWN.old"
    flock -u 9
  fi
  echo "$NS stopped and $H removed" ;;
status)
  rc=0
  for d in $DAEMONS; do
    f=${d%%:*}; n=${d##*:}
    if alive "$f" "$n"; then echo "$NS $n pid $(cat "$f") alive"; else echo "$NS $n dead"; rc=1; fi
  done
  if ns_exists; then echo "$NS netns: $(ip -n "$NS" -br -4 addr show dev eth0 2>/dev/null | awk '{print $1, $3}')"
  else echo "$NS netns: absent"; rc=1; fi
  exit $rc ;;
ssh) exec ssh "${ssh_opts[@]}" "root@$IP_HOST" "$@" ;;
uri)
  if [ "${1:-}" = ssh ]; then
    echo "qemu+ssh://root@$IP_HOST/system?keyfile=$KEY&known_hosts=$KNOWN"
  else
    echo "$URI"          # from the root namespace, through the unix socket on the shared fs
  fi ;;
*) usage ;;
esac
