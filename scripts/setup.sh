#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine for podcrypt, idempotently: the Debian packages the data
# planes and test tiers use, then the npm dependencies, the native addon and the TypeScript build.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  iproute2 nftables iputils-ping procps psmisc kmod # namespaces, veth, bridges, strict mode
  wireguard-tools wireguard-go                      # wg(8) and the reference userspace peer
  tshark tcpdump                                    # underlay captures, dissection and ESP decryption
  iperf3 socat                                      # traffic for tests and benchmarks
  etcd-server etcd-client                           # the etcd datastore, tested for real
  prometheus                                        # promtool for deploy/monitoring, the local cluster's Prometheus
  qemu-system-x86 linux-image-amd64 busybox-static  # the kernel test tier (WireGuard, XFRM)
  chromium                                          # the status page, tested in a headless browser
  python3 make g++                                  # node-gyp for the native addon
  clang-format                                      # npm run lint's check of native/
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's prometheus package starts a server on every address (:9090) where systemd runs; the
# tests run their own, bound to loopback inside the local cluster, so the system one stays off.
if command -v systemctl >/dev/null && systemctl is-enabled prometheus >/dev/null 2>&1; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi

stamp=node_modules/.podcrypt-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  touch "$stamp"
else
  # Dependencies are current; rebuild what may have changed since.
  [ -f build/Release/podcrypt_native.node ] && [ -z "$(find native binding.gyp -newer build/Release/podcrypt_native.node 2>/dev/null)" ] \
    || npm run --silent install
  npm run --silent build
fi
