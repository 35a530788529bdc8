#!/usr/bin/env bash
# A 3-host swarmlet cluster on this machine, to try the CLI by hand:
#   scripts/demo.sh        bring it up (hosts h1-h3 at 198.18.3.1-3), form the
#                          cluster, start a 6-replica service
#   scripts/demo.sh down   remove it all
# Needs root. Installs missing prerequisites like CI does (scripts/install.sh).
# PYTHON=/path/to/python uses that interpreter instead of .venv.
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

PREFIX=demo
MANAGER_IP=198.18.3.1
sock() { echo "unix:///run/$PREFIX-swarmlet-$1.sock"; }

if [[ "${1:-up}" == down ]]; then
  py=${PYTHON:-.venv/bin/python}
  [[ -x $py ]] || py=python3  # testbed.py down needs only the standard library
  exec "$py" scripts/testbed.py down --prefix "$PREFIX"
fi

if [[ -n "${PYTHON:-}" ]]; then
  SKIP_VENV=1 bash scripts/install.sh
  PY=$PYTHON
else
  bash scripts/install.sh
  PY=.venv/bin/python
fi

step() { printf '\n==> %s\n' "$*"; }
swarmlet() {  # swarmlet HOST ARGS...: the CLI against that host's daemon
  local host=$1
  shift
  echo "\$ swarmlet -H $(sock "$host") $*" >&2
  "$PY" -m swarmlet -H "$(sock "$host")" "$@"
}

step "3 hosts: network namespaces, a dockerd and a swarmlet daemon each"
"$PY" scripts/testbed.py up --hosts 3 --prefix "$PREFIX" --subnet-index 3

step "h1 starts the cluster; h2 and h3 join as workers"
swarmlet h1 init --advertise-addr "$MANAGER_IP"
token=$(swarmlet h1 join-token worker -q)
swarmlet h2 join --token "$token" "$MANAGER_IP:4242"
swarmlet h3 join --token "$token" "$MANAGER_IP:4242"
swarmlet h1 node ls

step "a service of 6 replicas across the 3 hosts"
swarmlet h1 service create --name web --replicas 6 swarmlet-test:busybox sleep 3600
# Give the replicas up to a minute to start; show where they are either way.
deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  running=$("$PY" -m swarmlet -H "$(sock h1)" service ps web 2>/dev/null | grep -c Running || true)
  ((running >= 6)) && break
  sleep 0.5
done
swarmlet h1 service ps web

cat <<EOT

The cluster is up. Use the CLI against the manager (h1):
  export SWARMLET_HOST=$(sock h1)
  $PY -m swarmlet node ls
  $PY -m swarmlet service ls
  $PY -m swarmlet service scale web=9
Each host's engine: docker -H unix:///run/$PREFIX-docker-h1.sock ps   (h1..h3)
State and logs: /var/lib/swarmlet-testbed/$PREFIX/demoh*/
Status:   $PY scripts/testbed.py status --prefix $PREFIX
Tear down: scripts/demo.sh down
EOT
