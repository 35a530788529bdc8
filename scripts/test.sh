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
section() {
  printf '\n======== %s  (+%ds)\n' "$*" "$((SECONDS - started))"
}

teardown() {
  local rc=$?
  section "teardown"
  local py=.venv/bin/python
  [[ -x $py ]] || py=python3  # testbed.py down needs only the standard library
  # Every prefix the test suite uses: sl (cluster), slx (engine), st (testbed tests).
  local p=${SWARMLET_TESTBED_PREFIX:-sl}
  for prefix in "$p" "${p}x" st; do
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

section "integration tests"
"$PY" -m pytest tests/integration -q -x
