#!/usr/bin/env bash
# Builds the podcrypt test VM's initramfs (busybox + the 9p/virtio modules of KVER + init) and
# prints its path. Cached under .vm/ in the repository, keyed by a hash of every input, so it is
# rebuilt only when the kernel, busybox or the init script changes.
#   usage: build-initramfs.sh KVER
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
kver=$1
moddir=/lib/modules/$kver
busybox=$(command -v busybox)
[ -f "$moddir/modules.dep" ] || { echo "build-initramfs: $moddir/modules.dep not found" >&2; exit 1; }
# virtio_pci carries the 9p transport; virtio_rng seeds the guest's entropy pool quickly.
wanted=(virtio_pci 9pnet_virtio 9p virtio_rng)

cache=$root/.vm
mkdir -p "$cache"
key=$(
  {
    echo "$kver" "${wanted[*]}"
    sha256sum "$busybox" "$here/initramfs-init.sh" "$here/build-initramfs.sh" "$moddir/modules.dep"
  } | sha256sum | cut -c1-16
)
out=$cache/initramfs-$key.cpio.gz
if [ -f "$out" ]; then echo "$out"; exit 0; fi

# Modules in load order: each module's dependencies (from modules.dep) before the module itself.
declare -A seen=()
order=()
path_of() { awk -v m="$1" -F: '{ n = $1; sub(/.*\//, "", n); sub(/\.ko(\..*)?$/, "", n); gsub(/-/, "_", n) } n == m { print $1; exit }' "$moddir/modules.dep"; }
add() {
  local rel=$1
  [ -n "${seen[$rel]:-}" ] && return
  seen[$rel]=1
  local deps
  deps=$(awk -v r="$rel" -F': *' '$1 == r { print $2; exit }' "$moddir/modules.dep")
  local i arr=()
  read -r -a arr <<<"$deps"
  # modules.dep lists the deepest dependency last; load from the end.
  for ((i = ${#arr[@]} - 1; i >= 0; i--)); do add "${arr[$i]}"; done
  order+=("$rel")
}
for m in "${wanted[@]}"; do
  rel=$(path_of "${m//-/_}")
  [ -n "$rel" ] || { echo "build-initramfs: module $m not in $moddir" >&2; exit 1; }
  add "$rel"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/modules"
cp "$busybox" "$stage/bin/busybox"
install -m 0755 "$here/initramfs-init.sh" "$stage/init"
: >"$stage/modules/order"
for rel in "${order[@]}"; do
  name=$(basename "$rel")
  case $name in
    *.ko) cp "$moddir/$rel" "$stage/modules/$name" ;;
    *.ko.xz) xz -dc "$moddir/$rel" >"$stage/modules/${name%.xz}"; name=${name%.xz} ;;
    *.ko.zst) zstd -qdc "$moddir/$rel" >"$stage/modules/${name%.zst}"; name=${name%.zst} ;;
    *) echo "build-initramfs: unsupported module file $rel" >&2; exit 1 ;;
  esac
  echo "$name" >>"$stage/modules/order"
done
tmp=$(mktemp "$cache/.initramfs.XXXXXX")
(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) >"$tmp"
rm -f "$cache"/initramfs-*.cpio.gz
mv "$tmp" "$out"
echo "$out"
