#!/bin/bash
# Runs inside the test VM (chrooted into the host root; see initramfs-init.sh): loads the kernel
# modules the kernel data planes need, then node:test over the compiled VM suite. The spec report
# goes to the console and spec.txt, the TAP report to vm.tap, both in the results share.
#   env (from run.sh via env.sh): PODCRYPT_REPO, PODCRYPT_VM_FILES (space-separated, relative to the repo),
#   PODCRYPT_VM_PATTERN (node --test-name-pattern, optional); PODCRYPT_VM_CLUSTERS and
#   PODCRYPT_VM_DATASTORE are exported for cluster.test.ts
set -u
out=/run/podcrypt-vm
# shellcheck disable=SC1091
. "$out/env.sh"
echo "podcrypt-vm: up after $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r)"
# Loaded up front, crypto included: every module the kernel would autoload later costs a modprobe
# round trip through 9p in the middle of a test.
# xfrm_interface for route-based IPsec; nf_tables, bridge and tun for the local cluster (strict
# rules, the fabric bridge, userspace data planes).
modprobe -a wireguard esp4 xfrm_user xfrm_interface ip_tunnel ipip veth dummy bridge tun nf_tables \
  aesni_intel gcm ghash_clmulni_intel seqiv drbg ctr || { echo "podcrypt-vm: modprobe failed"; exit 3; }
# The first ESP SA instantiates seqiv(rfc4106(gcm(aes))), and the kernel first asks modprobe (over
# 9p, emulated) for modules of that name: tens of seconds on a busy host. Pay it here, once.
ip netns add podcrypt-vm-warmup &&
  ip -n podcrypt-vm-warmup xfrm state add src 10.0.0.1 dst 10.0.0.2 proto esp spi 0x100 mode tunnel \
    aead 'rfc4106(gcm(aes))' 0x0000000000000000000000000000000000000000 128 &&
  ip netns del podcrypt-vm-warmup || { echo "podcrypt-vm: ESP warm-up failed"; exit 3; }
echo "podcrypt-vm: modules ready after $(cut -d' ' -f1 /proc/uptime)s"
cd "$PODCRYPT_REPO" || exit 3
pattern=()
[ -n "${PODCRYPT_VM_PATTERN:-}" ] && pattern=(--test-name-pattern="$PODCRYPT_VM_PATTERN")
# shellcheck disable=SC2086
node --test --test-concurrency=1 "${pattern[@]}" \
  --test-reporter=spec --test-reporter-destination="$out/spec.txt" \
  --test-reporter=tap --test-reporter-destination="$out/vm.tap" $PODCRYPT_VM_FILES
rc=$?
echo "podcrypt-vm: tests done after $(cut -d' ' -f1 /proc/uptime)s, status $rc"
exit $rc
