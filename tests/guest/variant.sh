#!/usr/bin/env bash
# A copy of the test guest's disk that says another image name on its console (GUEST-IMAGE: NAME): the
# "new image" of a rebuild test. Only syslinux.cfg's bootflow_image= differs; no loop devices or mounts.
# usage: variant.sh SRC.raw DEST.qcow2 NAME
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 SRC.raw DEST.qcow2 NAME" >&2; exit 2; }
src=$1 dest=$2 name=$3
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || { echo "variant.sh: NAME must be [A-Za-z0-9._-]+" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$src" "$tmp/disk.raw"
export MTOOLS_SKIP_CHECK=1
mtype -i "$tmp/disk.raw" ::/syslinux.cfg | sed "s/bootflow_image=[^ ]*/bootflow_image=$name/" > "$tmp/syslinux.cfg"
grep -q "bootflow_image=$name" "$tmp/syslinux.cfg" || { echo "variant.sh: $src has no bootflow_image= (an older guest?)" >&2; exit 1; }
mcopy -o -i "$tmp/disk.raw" "$tmp/syslinux.cfg" ::/syslinux.cfg
qemu-img convert -f raw -O qcow2 "$tmp/disk.raw" "$dest"
