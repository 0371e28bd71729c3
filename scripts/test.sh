#!/usr/bin/env bash
# Runs every test tier that works on this machine and prints one closing line for all of them.
#   unit     pure code, beside the sources (src/**/*.test.ts)
#   netns    namespaces, userspace data planes, interop with wireguard-go/wg/tshark/etcd (test/)
#   vm       the kernel tier under qemu (test/vm), when its prerequisites are installed
# PODCRYPT_TIERS="unit netns" limits the tiers; PODCRYPT_SLOW=1 adds the slow cases (long re-key runs).
set -uo pipefail
cd "$(dirname "$0")/.."
npm run --silent build || exit 1
npm run --silent lint || exit 1

tiers=${PODCRYPT_TIERS:-unit netns vm}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0

run_tier() {
  local tier=$1 concurrency=$2
  shift 2
  local files=("$@")
  if [ ${#files[@]} -eq 0 ]; then echo "== tier $tier: no tests"; return; fi
  echo "== tier $tier (${#files[@]} files)"
  # --test-force-exit: a test file whose tests all finished must not hang on a handle a client
  # library left open (etcd3 reconnect timers); the hooks still clean up first.
  # The spec report goes to the terminal and to a file whose closing lines are counted below (a
  # second reporter writing to a file is not flushed before --test-force-exit ends the run).
  node --test --test-force-exit --test-timeout=600000 --test-concurrency="$concurrency" \
    --test-reporter=spec "${files[@]}" | tee "$results/$tier.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

for tier in $tiers; do
  case $tier in
    unit) mapfile -t f < <(find dist/src -name '*.test.js' | sort); run_tier unit 2 "${f[@]}" ;;
    netns)
      node dist/test/helpers/sweep.js
      mapfile -t f < <(find dist/test -name '*.test.js' -not -path 'dist/test/vm/*' | sort)
      run_tier netns 1 "${f[@]}"
      ;;
    vm) if [ -x test/vm/run.sh ]; then bash test/vm/run.sh "$results/vm.tap" || status=1; fi ;;
    *) echo "unknown tier $tier"; exit 2 ;;
  esac
done

pass=0 fail=0 skip=0
count() { grep -aE "^$1 $2 [0-9]+" "$3" | tail -1 | awk '{print $3}'; }
for t in "$results"/*.out "$results"/*.tap; do
  [ -f "$t" ] || continue
  case $t in *.out) m="ℹ" ;; *) m="#" ;; esac
  p=$(count "$m" pass "$t"); pass=$((pass + ${p:-0}))
  f=$(count "$m" fail "$t"); fail=$((fail + ${f:-0}))
  s=$(count "$m" skipped "$t"); skip=$((skip + ${s:-0}))
done
[ "$fail" -gt 0 ] && status=1
# A digest of the failures last, so that a log cut to its tail still says what failed and why:
# each failing test's location, name and first lines of its error, without stack frames.
for t in "$results"/*.out; do
  [ -f "$t" ] || continue
  sed -n '/failing tests:/,$p' "$t" | grep -av -E '^\s+at |^\s*$|^\s+(generatedMessage|code|actual|expected|operator):|^\s*[{}]' |
    awk '/^test at /{n=0} {if (n++ < 8) print}' | head -120
done
echo "tests: $pass passed, $fail failed, $skip skipped"
exit $status
