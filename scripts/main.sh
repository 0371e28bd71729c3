#!/usr/bin/env bash
# The main job on a fresh machine: set up, bring up the local cluster, prove it is encrypted, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -f "${PODCRYPT_HOME:-/var/lib/podcrypt/local}/cluster.json" ]; then
  echo "main: a local cluster is already running; replacing it"
  bin/podcrypt cluster down
fi
bin/podcrypt cluster up
bin/podcrypt verify
bin/podcrypt status
