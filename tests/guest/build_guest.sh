#!/usr/bin/env bash
# Build the bootflow test guest OFFLINE from Debian packages (only the Debian mirror is used, and
# only when a .deb is not cached yet: the kernel, and dropbear-bin with its Depends closure).
# The result is a small cloud-style *disk* image:
#
#   disk.raw     64 MiB unpartitioned FAT ("superfloppy") with SYSLINUX, vmlinuz, initrd.gz.
#                SeaBIOS boots it with <boot dev='hd'/>, like a cloud image (no direct kernel boot).
#   disk.qcow2   the same disk as qcow2 (a Glance-style image to upload / use as a _base)
#   vmlinuz      Debian cloud kernel (linux-image-*-cloud-amd64, extracted, never installed)
#   initrd.gz    busybox-static initramfs + dropbear (SSH server, with its libc and libraries);
#                its /init prints GUEST-* lines on ttyS0 (see below)
#   guest.json   sizes, sha256, md5, kernel version, module list, package versions, builder sha256
#
# Console protocol (one line each, on ttyS0):
#   GUEST-INIT: started
#   GUEST-IMAGE: <name>               bootflow_image= on the kernel command line (syslinux.cfg; variant.sh
#                                     makes a copy of the disk with another name: a rebuild's new image)
#   GUEST-MEM: <kB> kB                MemTotal: the memory the guest sees
#   GUEST-BLOCK: vda vdb ...          at start and whenever /sys/block changes (1 s poll)
#   GUEST-BLOCK-SIZE: <dev> <sectors> after each GUEST-BLOCK, one per device
#   GUEST-DISK-MARKER: <text>|none    marker.txt on the root disk (FAT label BOOTFLOW): `guest-marker TEXT`
#                                     over SSH writes it there, so an image made from the disk shows it
#   GUEST-HOSTNAME: <local-hostname>  from a NoCloud config drive (label cidata), else "none"
#   GUEST-INSTANCE-ID: <instance-id>  only with a config drive
#   GUEST-DHCP-LEASE: iface=eth0 ip=.. mask=.. router=.. hostname=..
#   GUEST-DHCP-FAILED: iface=eth0     no lease within ~20 s (udhcpc keeps trying in background)
#   GUEST-SSH-KEYS: <n>               public keys taken from the config drive's meta-data (0 without one)
#   GUEST-HTTP: up                    busybox httpd on :80 serves "bootflow guest <hostname> <ip>"
#   GUEST-SSH-HOSTKEY: ssh-ed25519 <base64>  the host key dropbear offers (made at each boot)
#   GUEST-SSH: up                     dropbear listens on :22: root, public key only, PTY or not
#   GUEST-SSH: failed                 no host key, or dropbear not listening within 5 s
#   GUEST-POWER: off                  ACPI power button pressed (virsh shutdown) -> clean power-off
#
# SSH: meta-data's cloud-init NoCloud "public-keys:" list (one YAML string per "- " line, quoted or
# not) becomes /root/.ssh/authorized_keys; `ssh root@<ip>` works with a TTY and without one (`ssh
# host cmd`, Ansible's raw). No sftp/scp server and no python: Ansible can use raw only.
#
# No loop devices, no mounts, no root needed except for apt-get download. Takes ~3-4 s.
# Output dir: ${BOOTFLOW_GUEST_DIR:-/var/cache/bootflow/guest}; cache: $OUT/.work (.debs + trees).
# Needs: apt dpkg kmod busybox-static cpio gzip dosfstools mtools syslinux syslinux-common qemu-utils
#        python3 binutils (objdump/readelf: dropbear's libraries)
set -euo pipefail
umask 022                # file modes go into the cpio archive: the same whatever the caller's umask

OUT=${BOOTFLOW_GUEST_DIR:-/var/cache/bootflow/guest}
WORK=${BOOTFLOW_GUEST_WORK:-$OUT/.work}
DISK_MB=64
SELF=$(readlink -f "$0")
mkdir -p "$OUT" "$WORK/debs"
STAGE=$(mktemp -d "$WORK/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT

# --- 1. kernel: resolve the concrete package behind the meta package; cache the .deb -------------
KPKG=${BOOTFLOW_GUEST_KERNEL_PKG:-$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
                                    awk '/Depends: linux-image-[0-9]/{print $2; exit}')}
[ -n "$KPKG" ] || { echo "build_guest: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
KVER=${KPKG#linux-image-}
KROOT=$WORK/kernel-$KVER
if [ ! -f "$KROOT/lib/modules/$KVER/modules.dep" ]; then
  deb=$(find "$WORK/debs" /var/cache/apt/archives -maxdepth 1 -name "${KPKG}_*_amd64.deb" 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    # the sandbox user _apt cannot write here; downloading as root avoids the (harmless) warning
    ( cd "$WORK/debs" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >/dev/null )
    deb=$(find "$WORK/debs" -maxdepth 1 -name "${KPKG}_*_amd64.deb" | head -1)
  fi
  rm -rf "$KROOT.tmp"; mkdir -p "$KROOT.tmp"
  dpkg -x "$deb" "$KROOT.tmp"
  depmod -b "$KROOT.tmp" "$KVER"     # the .deb ships no modules.dep (its postinst would make it)
  rm -rf "$KROOT"; mv "$KROOT.tmp" "$KROOT"
fi
# Reproducible timestamps: everything we produce gets the kernel's mtime, so the same kernel and
# the same script give byte-identical images (stable checksums for image tests).
# mtools (used by syslinux --install and mcopy) honours SOURCE_DATE_EPOCH for FAT timestamps.
EPOCH=${SOURCE_DATE_EPOCH:-$(stat -c %Y "$KROOT/boot/vmlinuz-$KVER")}
export SOURCE_DATE_EPOCH=$EPOCH

# --- 1b. dropbear (SSH server): dropbear-bin and its Depends closure, cached like the kernel ------
# The .debs come from $WORK/debs only (downloaded once: the candidate versions of that moment), so
# the image does not depend on what this machine has installed. They are extracted, never installed.
deb_of() {   # deb_of PKG: print the cached .deb of PKG, downloading it first if there is none
  local d
  d=$(find "$WORK/debs" -maxdepth 1 -name "${1}_*.deb" | LC_ALL=C sort | tail -1)
  if [ -z "$d" ]; then
    ( cd "$WORK/debs" && apt-get download -q -o APT::Sandbox::User=root "$1" >/dev/null )
    d=$(find "$WORK/debs" -maxdepth 1 -name "${1}_*.deb" | LC_ALL=C sort | tail -1)
  fi
  [ -n "$d" ] || { echo "build_guest: no .deb for $1" >&2; exit 1; }
  echo "$d"
}
SSH_DEBS=(); queue=(dropbear-bin); seen=" "
while [ ${#queue[@]} -gt 0 ]; do
  p=${queue[0]}; queue=("${queue[@]:1}")
  case $seen in *" $p "*) continue ;; esac
  seen="$seen$p "
  deb=$(deb_of "$p"); SSH_DEBS+=("$deb")
  # "a (>= 1), b | c" -> a b (the first of alternatives; versions and :any dropped)
  mapfile -t -O ${#queue[@]} queue < <(dpkg-deb -f "$deb" Pre-Depends Depends | sed 's/^[A-Za-z-]*://' |
    tr ',' '\n' | sed 's/|.*//; s/(.*//; s/:any//; s/[[:space:]]//g' | sed '/^$/d')
done
DROOT=$WORK/dropbear
DSTAMP=$(for d in "${SSH_DEBS[@]}"; do basename "$d"; done | LC_ALL=C sort)
if [ "$(cat "$DROOT/.debs" 2>/dev/null)" != "$DSTAMP" ]; then
  rm -rf "$DROOT.tmp"; mkdir -p "$DROOT.tmp"
  for d in "${SSH_DEBS[@]}"; do dpkg -x "$d" "$DROOT.tmp"; done
  echo "$DSTAMP" > "$DROOT.tmp/.debs"
  rm -rf "$DROOT"; mv "$DROOT.tmp" "$DROOT"
fi
# shellcheck disable=SC2016  # ${Package} is dpkg-deb's format, not the shell's
SSH_PKGS=$(for d in "${SSH_DEBS[@]}"; do dpkg-deb -W --showformat='${Package}=${Version}\n' "$d"; done |
          LC_ALL=C sort | tr '\n' ' ')

# --- 2. initramfs ---------------------------------------------------------------------------------
IR=$STAGE/initramfs
mkdir -p "$IR"/{bin,sbin,etc,proc,sys,dev,mnt,tmp,run,www,lib/modules,usr/share/udhcpc}
cp /bin/busybox "$IR/bin/busybox"            # busybox-static: no libc needed in the initramfs
for a in $(/bin/busybox --list); do
  [ "$a" = busybox ] || ln -s busybox "$IR/bin/$a"   # (the applet list contains "busybox" itself)
done
# In the Debian cloud kernel all of these are modules (=m). modprobe --show-depends gives the insmod
# order (dependencies first); busybox insmod cannot resolve dependencies itself.
#   virtio_*: root disk, NIC, volumes (virtio-blk and virtio-scsi)
#   ata_piix + sr_mod + isofs: the config-drive CD-ROM (IDE on the i440fx "pc" machine)
#   vfat + nls: the FAT root disk;  button + evdev: ACPI power button for graceful shutdown
MODS="virtio_pci virtio_net virtio_blk virtio_scsi virtio_rng ata_piix sr_mod sd_mod isofs
      vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859_1 button evdev"
for m in $MODS; do
  modprobe -d "$KROOT" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
  cp "$ko" "$IR/lib/modules/"; basename "$ko"
done > "$IR/lib/modules/load-order"

# dropbear (server) and dropbearkey, and the shared libraries they need: the DT_NEEDED closure,
# looked up in the extracted tree only (as the Debian loader would: /lib/x86_64-linux-gnu, then
# /usr/lib/x86_64-linux-gnu), each copied as a plain file under its soname into /lib/x86_64-linux-gnu,
# which the Debian loader searches by default (no ld.so.cache). PT_INTERP (/lib64/ld-linux-x86-64.so.2)
# is a symlink to the loader there.
ML=lib/x86_64-linux-gnu
mkdir -p "$IR/usr/sbin" "$IR/usr/bin" "$IR/$ML" "$IR/etc/dropbear" "$IR/root"
cp "$DROOT/usr/sbin/dropbear" "$IR/usr/sbin/dropbear"
cp "$DROOT/usr/bin/dropbearkey" "$IR/usr/bin/dropbearkey"
INTERP=$(readelf -l "$DROOT/usr/sbin/dropbear" | sed -n 's/.*Requesting program interpreter: \(.*\)\]$/\1/p')
[ -n "$INTERP" ] || { echo "build_guest: dropbear has no ELF interpreter" >&2; exit 1; }
queue=("$IR/usr/sbin/dropbear" "$IR/usr/bin/dropbearkey"); need=("${INTERP##*/}")
while [ ${#queue[@]} -gt 0 ] || [ ${#need[@]} -gt 0 ]; do
  if [ ${#queue[@]} -gt 0 ]; then
    mapfile -t -O ${#need[@]} need < <(objdump -p "${queue[0]}" | awk '$1 == "NEEDED" {print $2}')
    queue=("${queue[@]:1}")
  fi
  for so in "${need[@]}"; do
    [ -e "$IR/$ML/$so" ] && continue
    src=
    for dir in "$DROOT/$ML" "$DROOT/usr/$ML"; do [ -e "$dir/$so" ] && { src=$dir/$so; break; }; done
    [ -n "$src" ] || { echo "build_guest: $so (for dropbear) is in none of: ${SSH_PKGS}" >&2; exit 1; }
    cp -L "$src" "$IR/$ML/$so"; queue+=("$IR/$ML/$so")
  done
  need=()
done
mkdir -p "$IR$(dirname "$INTERP")"
[ -e "$IR$INTERP" ] || ln -s "/$ML/${INTERP##*/}" "$IR$INTERP"
SSH_LIBS=$(find "$IR/$ML" -mindepth 1 -printf '%f\n' | LC_ALL=C sort | tr '\n' ' ')
# root with a locked password ('*': no password matches, public keys still work), /bin/sh a valid
# shell; users and groups from files only (libc's built-in nss files, nothing dlopen()ed)
echo 'root:x:0:0:root:/root:/bin/sh' > "$IR/etc/passwd"
printf 'root:x:0:\ntty:x:5:\n' > "$IR/etc/group"
echo 'root:*:0:0:99999:7:::' > "$IR/etc/shadow"
echo '/bin/sh' > "$IR/etc/shells"
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' > "$IR/etc/nsswitch.conf"
chmod 0600 "$IR/etc/shadow"; chmod 0700 "$IR/root" "$IR/etc/dropbear"
# meta-data "public-keys:" (cloud-init NoCloud) -> one key a line. The block list that follows the
# top-level key, up to the next top-level key; entries "- key", "- 'key'" or "- \"key\"" (YAML
# double quotes: \" and \\ unescaped; no other escapes). A separate file: no shell quoting.
cat > "$IR/etc/public-keys.sed" <<'EOF'
/^["']\{0,1\}public-keys["']\{0,1\}[[:space:]]*:/,/^[^[:space:]#-]/{
  s/\r$//
  /^[[:space:]]*-[[:space:]]/!d
  s/^[[:space:]]*-[[:space:]]*//
  s/[[:space:]]*$//
  /^"/{
    s/^"\(.*\)"$/\1/
    s/\\"/"/g
    s/\\\\/\\/g
  }
  /^'/{
    s/^'\(.*\)'$/\1/
    s/''/'/g
  }
  /^$/d
  p
}
EOF

# guest-marker TEXT: writes TEXT into marker.txt on the root disk (FAT, label BOOTFLOW) and syncs it, so that
# a snapshot of the disk carries it and a guest booted from that image prints GUEST-DISK-MARKER: TEXT
cat > "$IR/bin/guest-marker" <<'EOF'
#!/bin/sh
set -e
dev=$(findfs LABEL=BOOTFLOW)
mkdir -p /mnt/root
mount -t vfat "$dev" /mnt/root
printf '%s\n' "$1" > /mnt/root/marker.txt
umount /mnt/root
sync
echo "marker written: $1"
EOF

# udhcpc hook. Debian's busybox does not default to /usr/share/udhcpc/default.script: /init passes
# it with -s, otherwise the lease is taken but nothing gets configured or printed.
cat > "$IR/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
exec >/dev/console 2>&1     # udhcpc's own output is discarded by /init; GUEST-* lines must not be
case "$1" in
  deconfig)
    ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    old=$(cat "/run/lease.$interface" 2>/dev/null)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    printf '%s\n' "$ip" > "/run/lease.$interface"
    # a renew with the same address is not news; a new address is printed again
    if [ "$1" = bound ] || [ "$old" != "$ip" ]; then
      echo "GUEST-DHCP-LEASE: iface=$interface ip=$ip mask=$mask router=${router%% *} hostname=$hostname"
    fi
    # like dhclient: take the DHCP host name unless the config drive already named us
    [ -n "$hostname" ] && [ ! -s /run/hostname.cidata ] && hostname "$hostname"
    # the web page describes the primary NIC only, and is (re)written after each lease
    if [ "$interface" = "$(cat /run/primary-nic 2>/dev/null)" ]; then
      echo "bootflow guest $(hostname) $ip" > /www/index.html.new && mv /www/index.html.new /www/index.html
    fi ;;
esac
exit 0
EOF

cat > "$IR/init" <<'EOF'
#!/bin/sh
# bootflow test guest, PID 1. All GUEST-* lines go to the serial console for the tests to parse.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts && mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts   # PTYs for ssh
exec </dev/console >/dev/console 2>&1
# GUEST-* lines end in a plain \n (no tty \r\n), so tests can compare whole lines. SYSLINUX leaves
# terminal escape codes without a newline on the console: start on a fresh line.
stty -onlcr 2>/dev/null
echo
echo "GUEST-INIT: started"
IMG=$(sed -n 's/.*bootflow_image=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "GUEST-IMAGE: ${IMG:-none}"
echo "GUEST-MEM: $(sed -n 's/^MemTotal: *\([0-9]*\) kB$/\1/p' /proc/meminfo) kB"
# insmod waits for the drivers' async probing (libata port scan, virtio), so devices exist after it
while read -r ko; do insmod "/lib/modules/$ko" 2>/dev/null; done < /lib/modules/load-order
ip link set lo up

blocks() { ls /sys/block | grep -v -E '^(loop|ram)' | tr '\n' ' ' | sed 's/ *$//'; }
report_blocks() {
  echo "GUEST-BLOCK: $1"
  for d in $1; do echo "GUEST-BLOCK-SIZE: $d $(cat /sys/block/$d/size)"; done
}
BLK=$(blocks); report_blocks "$BLK"

# --- the root disk (FAT, label BOOTFLOW): the marker a test wrote on it before a snapshot (guest-marker)
ROOT=$(findfs LABEL=BOOTFLOW 2>/dev/null || true)
mkdir -p /mnt/root
if [ -n "$ROOT" ] && mount -t vfat -o ro "$ROOT" /mnt/root 2>/dev/null; then
  MARK=$(head -c 200 /mnt/root/marker.txt 2>/dev/null | tr -cd 'A-Za-z0-9._-')
  umount /mnt/root
fi
echo "GUEST-DISK-MARKER: ${MARK:-none}"

# --- NoCloud config drive (ISO9660 or FAT labelled cidata), read-only; files copied to /run/cidata
md() { sed -n "s/^[\"']\{0,1\}$1[\"']\{0,1\}[[:space:]]*:[[:space:]]*//p" /run/cidata/meta-data | head -1 | tr -d "\"',\r"; }
CD=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null || true)
mkdir -p /mnt/cidata /run/cidata
if [ -n "$CD" ] && { mount -t iso9660 -o ro "$CD" /mnt/cidata 2>/dev/null || mount -t vfat -o ro "$CD" /mnt/cidata 2>/dev/null; }; then
  cp /mnt/cidata/* /run/cidata/ 2>/dev/null
  umount /mnt/cidata            # unmounted again so the CD-ROM can be ejected / detached freely
  HN=$(md local-hostname); IID=$(md instance-id)
  [ -n "$HN" ] && hostname "$HN" && echo "$HN" > /run/hostname.cidata
  echo "GUEST-HOSTNAME: ${HN:-none}"
  echo "GUEST-INSTANCE-ID: ${IID:-none}"
else
  echo "GUEST-HOSTNAME: none"
fi
# --- root's authorized_keys from meta-data public-keys (cloud-init NoCloud); none without a drive
mkdir -p /root/.ssh && chmod 0700 /root /root/.ssh
( umask 077; sed -n -f /etc/public-keys.sed /run/cidata/meta-data 2>/dev/null > /root/.ssh/authorized_keys )
chmod 0600 /root/.ssh/authorized_keys
echo "GUEST-SSH-KEYS: $(grep -c . /root/.ssh/authorized_keys)"

# --- DHCP on every ethernet NIC; the first one is "primary" (web page, GUEST-HTTP)
NICS=$(ls /sys/class/net | grep -v '^lo$'); PIDS=
set -- $NICS
echo "${1:-}" > /run/primary-nic
for nic in $NICS; do
  ip link set "$nic" up
  # 20 tries 1 s apart, then udhcpc goes to the background (-b) and keeps trying. It also forks to
  # the background once it has a lease (and keeps renewing), so the parent returns right after the
  # hook printed the lease. NICs are tried in parallel; udhcpc's own chatter stays off the console.
  udhcpc -s /usr/share/udhcpc/default.script -i "$nic" -t 20 -T 1 -A 1 -b >"/run/udhcpc.$nic.log" 2>&1 &
  PIDS="$PIDS $!"
done
[ -n "$PIDS" ] && wait $PIDS
for nic in $NICS; do [ -s "/run/lease.$nic" ] || echo "GUEST-DHCP-FAILED: iface=$nic"; done

# --- web page + httpd
P=$(cat /run/primary-nic)
[ -s /www/index.html ] || echo "bootflow guest $(hostname) $(cat "/run/lease.$P" 2>/dev/null || echo none)" > /www/index.html
httpd -p 80 -h /www
for i in 1 2 3 4 5 6 7 8 9 10; do
  wget -q -O /dev/null http://127.0.0.1/ 2>/dev/null && { echo "GUEST-HTTP: up"; break; }
  sleep 0.2
done

# --- SSH: dropbear, public keys only (-s), and only an ed25519 host key, made now (with -R dropbear
# would make the type the client asks for first, maybe RSA: slow under TCG). dropbearkey first waits
# for the kernel's random pool (~1 s under TCG), so this comes after the lease and GUEST-HTTP.
# Listens on all addresses: a NIC that gets its lease later is served too. Log: /run/dropbear.log.
HK=/etc/dropbear/dropbear_ed25519_host_key
if [ -s "$HK" ] || /usr/bin/dropbearkey -t ed25519 -f "$HK" >/run/dropbearkey.log 2>&1; then
  echo "GUEST-SSH-HOSTKEY: $(/usr/bin/dropbearkey -y -f "$HK" 2>/dev/null | grep '^ssh-' | cut -d' ' -f1,2)"
  /usr/sbin/dropbear -F -E -s -r "$HK" -p 22 -P /run/dropbear.pid </dev/null >/run/dropbear.log 2>&1 &
  for i in $(seq 1 50); do
    # /proc/net/tcp{,6}: local port 22 (0016) in state LISTEN (0A)
    grep -q ':0016 [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null && { echo "GUEST-SSH: up"; break; }
    sleep 0.1
  done
fi
grep -q ':0016 [0-9A-F:]* 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null || echo "GUEST-SSH: failed"

# --- ACPI power button (virsh shutdown / Nova soft stop): power off cleanly. The first input
# event of the "Power Button" device is the press.
for ev in /sys/class/input/event*; do
  [ -e "$ev" ] || continue
  if [ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ]; then
    ( dd if="/dev/input/${ev##*/}" bs=24 count=1 >/dev/null 2>&1
      echo "GUEST-POWER: off"; sync; poweroff -f ) &
  fi
done

# --- stay up; report block devices whenever they change (volume attach / detach)
while true; do
  sleep 1
  cur=$(blocks)
  [ "$cur" != "$BLK" ] && { BLK=$cur; report_blocks "$BLK"; }
done
EOF
chmod 0755 "$IR/init" "$IR/usr/share/udhcpc/default.script" "$IR/bin/guest-marker"
find "$IR" -exec touch -h -d "@$EPOCH" {} +
( cd "$IR" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet -R 0:0 | gzip -9 -n ) > "$STAGE/initrd.gz"
cp "$KROOT/boot/vmlinuz-$KVER" "$STAGE/vmlinuz"

# --- 3. bootable disk: unpartitioned FAT + SYSLINUX, without loop devices or mounts -------------
cat > "$STAGE/syslinux.cfg" <<'EOF'
DEFAULT guest
PROMPT 0
TIMEOUT 1
LABEL guest
  KERNEL vmlinuz
  INITRD initrd.gz
  APPEND console=ttyS0 panic=-1 quiet bootflow_image=bootflow-guest
EOF
touch -d "@$EPOCH" "$STAGE/vmlinuz" "$STAGE/initrd.gz" "$STAGE/syslinux.cfg"
truncate -s "${DISK_MB}M" "$STAGE/disk.raw"
mkfs.vfat --invariant -n BOOTFLOW "$STAGE/disk.raw" >/dev/null
syslinux --install "$STAGE/disk.raw"          # boot sector + ldlinux.sys, written through mtools
MTOOLS_SKIP_CHECK=1 mcopy -m -o -i "$STAGE/disk.raw" "$STAGE/vmlinuz" "$STAGE/initrd.gz" "$STAGE/syslinux.cfg" ::/
qemu-img convert -f raw -O qcow2 "$STAGE/disk.raw" "$STAGE/disk.qcow2"

# --- 4. guest.json, then move everything into place (renames on one filesystem) ----------------
MODLIST=$(tr '\n' ' ' < "$IR/lib/modules/load-order")
python3 - "$STAGE" "$KPKG" "$KVER" "$(sha256sum "$SELF" | cut -d' ' -f1)" "$MODLIST" "$EPOCH" "$SSH_PKGS" "$SSH_LIBS" <<'EOF'
import hashlib, json, os, subprocess, sys
stage, kpkg, kver, builder, mods, epoch, ssh_pkgs, ssh_libs = sys.argv[1:]
files = {}
for name in ("disk.raw", "disk.qcow2", "vmlinuz", "initrd.gz"):
    path = os.path.join(stage, name)
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk); md5.update(chunk)
    files[name] = {"size": os.path.getsize(path), "sha256": sha.hexdigest(), "md5": md5.hexdigest()}
info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", os.path.join(stage, "disk.qcow2")]))
files["disk.qcow2"]["virtual_size"] = files["disk.raw"]["virtual_size"] = info["virtual-size"]
doc = {"kernel_package": kpkg, "kernel_version": kver, "source_date_epoch": int(epoch),
       "builder_sha256": builder, "modules": mods.split(),
       "ssh": {"server": "dropbear", "packages": dict(p.split("=", 1) for p in ssh_pkgs.split()),
               "libraries": ssh_libs.split()},
       "boot": "disk: unpartitioned FAT + SYSLINUX, console=ttyS0", "files": files}
with open(os.path.join(stage, "guest.json"), "w") as f:
    json.dump(doc, f, indent=2, sort_keys=True)
    f.write("\n")
EOF
for f in vmlinuz initrd.gz disk.raw disk.qcow2 guest.json; do mv -f "$STAGE/$f" "$OUT/$f"; done
# stamp read by scripts/setup.sh: rebuild only when this script changes
sha256sum "$SELF" | cut -d' ' -f1 > "$OUT/build_guest.sha256"
echo "guest built in $OUT: kernel $KVER, initrd $(stat -c %s "$OUT/initrd.gz") B, modules: $MODLIST"
echo "  ssh: $SSH_PKGS"
