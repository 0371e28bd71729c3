#!/usr/bin/env bash
# Runs every test tier that works on this machine and prints one closing line for all of them.
# A test's tier is what it needs, declared in its source (scripts/test-files.mjs lists them):
#   unit     needs neither root nor namespaces (no marker): pure code, fakes, the Kubernetes API
#            test server, etcd on 127.0.0.1; runs as any user, several files at a time
#   netns    `// test-tier: netns`: root, namespaces, userspace data planes, interop with
#            wireguard-go/wg/tshark, the local cluster; one file at a time
#   vm       `// test-tier: vm`: the kernel tier under qemu (test/vm/run.sh), when installed
# PODCRYPT_TIERS="unit netns" limits the tiers; PODCRYPT_SLOW=1 adds the slow cases (long re-key runs);
# PODCRYPT_NO_BUILD=1 runs the tests already in dist/ without building and linting first
# (`npm run test:unit`, which an unprivileged user can run).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${PODCRYPT_NO_BUILD:-}" != 1 ]; then
  npm run --silent build || exit 1
  npm run --silent lint || exit 1
fi

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
  # It ends a file's process with process.exit(), so scripts/test-stdio.mjs makes every test
  # process's stdout blocking: no report still queued for the runner is lost.
  # The spec report goes to the terminal and to a file whose closing lines are counted below (a
  # second reporter writing to a file is not flushed before --test-force-exit ends the run).
  node --test --test-force-exit --import ./scripts/test-stdio.mjs --test-timeout=600000 \
    --test-concurrency="$concurrency" --test-reporter=spec "${files[@]}" | tee "$results/$tier.out"
  [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}

# Sets f to the compiled test files of tier $1 (scripts/test-files.mjs); exits when listing fails.
tier_files() {
  local list
  list=$(node scripts/test-files.mjs "$1") || exit 2
  mapfile -t f < <([ -z "$list" ] || printf '%s\n' "$list")
}

for tier in $tiers; do
  case $tier in
    unit)
      tier_files unit
      # Most unit-tier time is waiting (etcd, polling, timeouts), so more files run than cores.
      run_tier unit 4 "${f[@]}"
      ;;
    netns)
      tier_files netns
      node dist/test/support/sweep.js
      run_tier netns 1 "${f[@]}"
      ;;
    vm)
      tier_files vm
      if [ -x test/vm/run.sh ] && [ ${#f[@]} -gt 0 ]; then bash test/vm/run.sh "$results/vm.tap" "${f[@]}" || status=1; fi
      ;;
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
