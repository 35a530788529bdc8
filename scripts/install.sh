#!/usr/bin/env bash
# Installs what swarmlet's tests, demo and benchmarks need on a Debian 12
# machine (root, no Docker, only the Debian and PyPI registries reachable):
# the system packages of the testbed, then the project in a venv at .venv.
# Idempotent and quick when everything is already there.
#   SKIP_VENV=1  only the system packages (the caller brings its own Python)
set -euo pipefail
cd "$(dirname "$0")/.."

# docker.io: the engines (dockerd, containerd, runc); busybox-static: the one
# binary of the test image; the rest: namespaces, bridges, the FORWARD rule, ping.
# docker-registry + apache2-utils (htpasswd): the test registry (issue 9).
# prometheus: the real Prometheus server the metrics test scrapes the testbed with.
packages=(docker.io busybox-static iproute2 iptables iputils-ping docker-registry apache2-utils prometheus)
missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install.sh: missing ${missing[*]} and not root: cannot apt-get install" >&2
    exit 1
  fi
  echo "install.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
else
  echo "install.sh: system packages present"
fi

if [[ "${SKIP_VENV:-}" == 1 ]]; then
  exit 0
fi
if [[ ! -x .venv/bin/python ]]; then
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "install.sh: python3 >= 3.11 is needed, found $(python3 --version 2>&1)" >&2; exit 1; }
  python3 -m venv .venv
fi
# Reinstall only when the dependencies changed: an editable install already
# follows the source.
stamp=.venv/.swarmlet-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
  echo "$want" >"$stamp"
  echo "install.sh: installed swarmlet into .venv"
else
  echo "install.sh: .venv up to date"
fi
