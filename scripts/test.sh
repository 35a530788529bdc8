#!/usr/bin/env bash
# The whole CI run, from a fresh Debian 12 machine (root, no Docker) to the
# last integration test: install, check generated code, unit tests,
# integration tests on the multi-host testbed. Exits non-zero on the first
# failure and always removes the testbeds it may have left.
set -euo pipefail
cd "$(dirname "$0")/.."

# Needs root (namespaces, bridges, dockerd). As root it just runs; from
# another account it re-runs itself through sudo when sudo is installed.
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    exec sudo -E bash "$PWD/scripts/$(basename "$0")" "$@"
  fi
  echo "$(basename "$0"): run this as root (sudo is not installed)" >&2
  exit 1
fi

started=$SECONDS
# Integration modules run in this many parallel pytest processes, each on its
# own testbed (scripts/integration_shards.py balances them by run time).
SHARDS=${SWARMLET_IT_SHARDS:-2}
section() {
  printf '\n======== %s  (+%ds)\n' "$*" "$((SECONDS - started))"
}

teardown() {
  local rc=$?
  section "teardown"
  local py=.venv/bin/python
  [[ -x $py ]] || py=python3  # testbed.py down needs only the standard library
  # Every prefix the test suite uses: per shard sl0, sl1... (cluster) and
  # sl0x, sl1x... (engine), and st (testbed tests).
  local p=${SWARMLET_TESTBED_PREFIX:-sl} prefixes=(st) i
  for ((i = 0; i < SHARDS; i++)); do prefixes+=("$p$i" "$p${i}x"); done
  for prefix in "${prefixes[@]}"; do
    "$py" scripts/testbed.py down --prefix "$prefix" || echo "teardown of $prefix failed" >&2
  done
  if ((rc == 0)); then
    section "CI passed"
  else
    section "CI FAILED (exit $rc)"
  fi
  exit "$rc"
}
trap teardown EXIT

section "install"
bash scripts/install.sh
PY=.venv/bin/python

section "generated gRPC code"
PYTHON=$PY bash scripts/gen_proto.sh --check

section "lint, layering contracts, types"
bash scripts/lint.sh

section "unit tests"
"$PY" -m pytest tests/unit -q

section "integration tests ($SHARDS shards in parallel)"
logs=$(mktemp -d)
mapfile -t shard_modules < <("$PY" scripts/integration_shards.py "$SHARDS")
pids=()
for i in "${!shard_modules[@]}"; do
  read -r -a modules <<<"${shard_modules[$i]}"
  echo "shard $i: ${modules[*]}"
  # Prefix slN and underlay 198.18.(10+N).0/24 (the engine fixture adds 100;
  # test_testbed.py keeps its own "st" on 198.18.2.0/24).
  SWARMLET_TESTBED_PREFIX=${SWARMLET_TESTBED_PREFIX:-sl}$i SWARMLET_TESTBED_SUBNET=$((10 + i)) \
    "$PY" -m pytest "${modules[@]}" -q -x -p no:cacheprovider --junitxml="$logs/shard$i.xml" >"$logs/shard$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then status=passed; else status=FAILED; failed=1; fi
  printf '\n---- shard %d %s (+%ds)\n' "$i" "$status" "$((SECONDS - started))"
  cat "$logs/shard$i.log"
done
# Seconds per module, to keep scripts/integration_shards.py's table current.
echo "integration seconds per module:"
"$PY" scripts/integration_shards.py --report "$logs"/shard*.xml 2>/dev/null || true
rm -rf "$logs"
((failed == 0))
