#!/usr/bin/env bash
# Boots Debian's kernel under qemu (software emulation) with the host root shared read-only over
# 9p, runs DIR/stage2.sh inside it as root (chrooted into the host root, so the repository, node,
# ip, wg and kmod are the host's own) and powers off. DIR is shared writable as /run/podcrypt-vm,
# so files the script writes there come back to the host. The script's exit status lands in
# DIR/rc; the console log in DIR/console.log.
#   usage: boot.sh DIR
#   env:   PODCRYPT_VM_TIMEOUT  seconds before the VM is killed (default 2700: the whole tier with all clusters takes about 20 minutes)
#          PODCRYPT_VM_KERNEL   kernel image (default: newest /boot/vmlinuz-*-amd64 with modules)
#          PODCRYPT_VM_VERBOSE  1: copy the console to stderr as it runs
#          PODCRYPT_VM_MEM / PODCRYPT_VM_SMP  guest memory in MiB (3072) and CPUs (2); a dual-stack
#                               cluster under traffic left 30 MiB of 1024 free (README.md, "Memory")
#          PODCRYPT_VM_REPO     a checkout to share on its own, seen at its path (run.sh sets it)
# Exit status: the script's, or 124 on timeout, or 125 when the VM died before the script ended.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "$1" && pwd)
[ -f "$dir/stage2.sh" ] || { echo "boot.sh: $dir/stage2.sh missing" >&2; exit 2; }

kernel=${PODCRYPT_VM_KERNEL:-}
if [ -z "$kernel" ]; then
  for k in $(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | sort -V -r); do
    v=${k#/boot/vmlinuz-}
    if [ -f "/lib/modules/$v/modules.dep" ]; then kernel=$k; break; fi
  done
fi
[ -n "$kernel" ] && [ -r "$kernel" ] || {
  echo "boot.sh: no Debian kernel with modules found (apt-get install linux-image-amd64)" >&2
  exit 2
}
kver=${kernel#/boot/vmlinuz-}
command -v qemu-system-x86_64 >/dev/null || { echo "boot.sh: qemu-system-x86_64 missing" >&2; exit 2; }
initrd=$("$here/build-initramfs.sh" "$kver")

rm -f "$dir/rc"
log=$dir/console.log
status=0
# No network device (-nic none): the guest's traffic stays inside its own namespaces.
# -no-reboot turns a guest panic or reboot into a qemu exit instead of a loop.
qemu=(
  qemu-system-x86_64 -machine accel=tcg -cpu max -m "${PODCRYPT_VM_MEM:-3072}" -smp "${PODCRYPT_VM_SMP:-2}"
  -nographic -no-reboot -nic none -monitor none -serial stdio
  -kernel "$kernel" -initrd "$initrd"
  -append "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check random.trust_cpu=on cryptomgr.notests=1 modprobe.blacklist=jitterentropy_rng"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$dir,mount_tag=results,security_model=none"
  -device virtio-rng-pci
)
# PODCRYPT_VM_REPO: the checkout, shared again on its own so that one under /tmp (which the guest
# mounts a tmpfs over) is still seen at its path.
rm -f "$dir/repo-path"
if [ -n "${PODCRYPT_VM_REPO:-}" ]; then
  qemu+=(-virtfs "local,path=$PODCRYPT_VM_REPO,mount_tag=repo,security_model=none,readonly=on,multidevs=remap")
  printf '%s\n' "$PODCRYPT_VM_REPO" >"$dir/repo-path"
fi
if [ "${PODCRYPT_VM_VERBOSE:-0}" = 1 ]; then
  timeout -k 10 "${PODCRYPT_VM_TIMEOUT:-2700}" "${qemu[@]}" </dev/null 2>&1 | tee "$log" >&2 || status=$?
else
  timeout -k 10 "${PODCRYPT_VM_TIMEOUT:-2700}" "${qemu[@]}" </dev/null >"$log" 2>&1 || status=$?
fi
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "boot.sh: VM timed out after ${PODCRYPT_VM_TIMEOUT:-2700}s; console tail:" >&2
  tail -n 30 "$log" >&2
  exit 124
fi
if [ ! -f "$dir/rc" ]; then
  echo "boot.sh: the VM stopped before its script finished (qemu status $status); console tail:" >&2
  tail -n 30 "$log" >&2
  exit 125
fi
exit "$(cat "$dir/rc")"
