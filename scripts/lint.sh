#!/usr/bin/env bash
# Static checks CI runs before any test: lint and format (ruff), the layering
# contracts (import-linter: the core is pure, agents never import the manager,
# the CLI only talks to daemons through the API), and types (mypy; strict on
# the core). Configuration lives in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
"$BIN/ruff" check .
"$BIN/ruff" format --check .
"$BIN/lint-imports"
"$BIN/mypy"
