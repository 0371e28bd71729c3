#!/usr/bin/env bash
# The kernel test tier: boots Debian's kernel under qemu (test/vm/boot.sh) and runs the compiled VM
# suite (dist/test/vm/*.test.js) inside it with the WireGuard, ESP and XFRM modules loaded. Prints
# the suite's spec report, writes its TAP report to TAP_OUT, exits non-zero when a test fails, the
# VM cannot boot, or it times out. The tests must be built first (npm run build; npm test does).
#   usage: test/vm/run.sh [TAP_OUT] [TEST_FILE.js ...]
#   env:   see boot.sh (PODCRYPT_VM_TIMEOUT, PODCRYPT_VM_VERBOSE, ...); PODCRYPT_VM_PATTERN runs
#          only the tests whose name matches (node --test-name-pattern; hooks still run);
#          PODCRYPT_VM_CLUSTERS=all, or some of kernel-wireguard,kernel-ipsec,mixed-wireguard,mixed-ipsec,
#          picks the local clusters cluster.test.ts brings up (default: all four; none for no
#          cluster; see README.md "Local clusters");
#          PODCRYPT_VM_DATASTORE=local runs them on the local datastore instead of etcd;
#          PODCRYPT_VM_TRAFFIC_S sets the rotation test's traffic window (cluster.test.ts);
#          PODCRYPT_VM_KEEP_LOGS=DIR keeps each cluster's controller and agent logs in DIR/<cluster>
# Cost (2-core host, TCG): about 4 s from qemu start to the suite, about 10 s for an empty run.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tap_out=${1:-}
[ $# -gt 0 ] && shift
cd "$repo"
if [ $# -gt 0 ]; then
  files=("$@")
else
  shopt -s nullglob
  files=(dist/test/vm/*.test.js)
  shopt -u nullglob
fi
if [ ${#files[@]} -eq 0 ]; then
  echo "== tier vm: no tests (build first: npm run build)"
  exit 0
fi
for f in "${files[@]}"; do
  case $f in /*) ;; *) f=$repo/$f ;; esac
  [ -f "$f" ] || { echo "test/vm/run.sh: $f not found" >&2; exit 2; }
done

# bin/podcrypt runs the CLI's bundle only when it is newer than the last tsc build: remake it, so the
# VM's many podcrypt processes each read a few files over 9p instead of hundreds (README.md, "Cost").
node scripts/bundle.mjs

work=$(mktemp -d /tmp/podcrypt-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp "$here/stage2-tests.sh" "$work/stage2.sh"
printf 'PODCRYPT_REPO=%q\nPODCRYPT_VM_FILES=%q\nPODCRYPT_VM_PATTERN=%q\nexport PODCRYPT_VM_CLUSTERS=%q PODCRYPT_VM_DATASTORE=%q PODCRYPT_VM_TRAFFIC_S=%q\n' \
  "$repo" "${files[*]}" "${PODCRYPT_VM_PATTERN:-}" "${PODCRYPT_VM_CLUSTERS:-}" "${PODCRYPT_VM_DATASTORE:-}" "${PODCRYPT_VM_TRAFFIC_S:-}" >"$work/env.sh"
# The clusters' logs go to the results share (mounted at /run/podcrypt-vm inside), then to the host.
keep_logs=${PODCRYPT_VM_KEEP_LOGS:-}
if [ -n "$keep_logs" ]; then
  mkdir -p "$keep_logs" "$work/logs"
  echo "export PODCRYPT_VM_KEEP_LOGS=/run/podcrypt-vm/logs" >>"$work/env.sh"
fi

echo "== tier vm (${#files[@]} files, Debian kernel under qemu)"
start=$(date +%s)
status=0
PODCRYPT_VM_REPO=$repo "$here/boot.sh" "$work" || status=$?
[ -f "$work/spec.txt" ] && cat "$work/spec.txt"
[ -n "$tap_out" ] && [ -f "$work/vm.tap" ] && cp "$work/vm.tap" "$tap_out"
[ -n "$keep_logs" ] && cp -r "$work/logs/." "$keep_logs/" && echo "== tier vm: cluster logs in $keep_logs"
if [ "$status" -ne 0 ] && [ ! -f "$work/vm.tap" ]; then
  echo "test/vm/run.sh: no test results; console:" >&2
  tail -n 40 "$work/console.log" >&2
fi
echo "== tier vm: status $status in $(($(date +%s) - start)) s"
exit "$status"
