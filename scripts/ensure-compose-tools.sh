#!/usr/bin/env bash
# Make sure `docker-compose` (Compose v1, Debian's package) is on PATH: tests/integration/
# test_compose.py validates docker-compose.yml with `docker-compose config -q`. No Docker engine
# is needed for that; the other validator, check-jsonschema, comes with the Python environment.
set -euo pipefail

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

if command -v docker-compose >/dev/null 2>&1; then
  exit 0
fi

# An update first when the package is unknown (a fresh machine has empty package lists).
if ! apt-cache show docker-compose >/dev/null 2>&1; then
  as_root apt-get update -qq
fi
echo "installing docker-compose from Debian's packages"
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  docker-compose >/dev/null
command -v docker-compose >/dev/null || { echo "docker-compose did not install" >&2; exit 1; }
