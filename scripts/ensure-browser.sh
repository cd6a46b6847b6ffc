#!/usr/bin/env bash
# Make sure Debian's Chromium is at /usr/bin/chromium, as the browser tests need (Playwright
# drives it; they never download a browser of their own). Installs the `chromium` package
# when it is missing.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
install_chromium() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

if [ ! -x "$CHROMIUM" ]; then
  echo "installing Debian's chromium for the browser tests"
  if ! install_chromium; then
    as_root apt-get update -qq
    install_chromium
  fi
fi
[ -x "$CHROMIUM" ] || { echo "no $CHROMIUM after installing chromium" >&2; exit 1; }
echo "chromium: $("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM")"
