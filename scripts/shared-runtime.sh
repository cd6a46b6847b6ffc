#!/usr/bin/env bash
# A Python environment with cellbus installed that every user on the machine can read, in DEST.
#
# .venv is built from whatever Python made it (here pyenv's, under /root, mode 0700) inside the
# checkout (which may sit in a 0700 folder): a process that drops to another user cannot read
# it. A deployment runs cellbus from an installation every user can read (the images do); the
# sandbox tests do the same to run the program as an unprivileged user, or as root with
# CELLBUS_SESSION_USER. Built from Debian's /usr/bin/python3.11 and the locked dependencies,
# the cellbus packages installed (not editable) from this checkout each time.
set -euo pipefail
dest=${1:?usage: scripts/shared-runtime.sh DEST}
cd "$(dirname "$0")/.."
python=/usr/bin/python3.11
uv=.tools/bin/uv
if [ ! -x "$python" ]; then
  apt-get update -qq && apt-get install -y -qq python3.11 >/dev/null
fi
[ -x "$dest/bin/python" ] || "$uv" venv -q --python "$python" "$dest"
"$uv" export -q --frozen --no-dev --no-emit-workspace --no-hashes --all-packages \
  -o "$dest/requirements.txt"
"$uv" pip install -q --python "$dest/bin/python" -r "$dest/requirements.txt" numpy matplotlib
"$uv" pip install -q --python "$dest/bin/python" --no-deps --reinstall \
  ./shared/protocol ./services/kernel ./services/web ./services/accounts ./services/allinone
chmod -R a+rX "$dest"
