#!/usr/bin/env bash
# Regenerate swarmlet/api/*_pb2*.py from proto/. With --check, fail if the
# committed files differ from a fresh generation (CI runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m grpc_tools.protoc -I proto --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" proto/swarmlet/api/*.proto
if [[ "${1:-}" == "--check" ]]; then
  if ! diff -r -x __init__.py -x __pycache__ "$out/swarmlet/api" swarmlet/api >/dev/null; then
    diff -r -x __init__.py -x __pycache__ "$out/swarmlet/api" swarmlet/api | head -40
    echo "generated gRPC code is stale: run scripts/gen_proto.sh" >&2
    exit 1
  fi
  echo "generated gRPC code is fresh"
else
  cp "$out"/swarmlet/api/*.py "$out"/swarmlet/api/*.pyi swarmlet/api/
fi
