#!/usr/bin/env bash
# Installs the Debian packages roadseg needs when they are missing:
#   redis-server (always), chromium (with --browser: only the tests' headless page checks need it).
# Uses sudo when not root. Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail
want=()
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
if [[ "${1:-}" == "--browser" ]]; then
  command -v chromium >/dev/null 2>&1 || want+=(chromium)
fi
[[ ${#want[@]} -eq 0 ]] && exit 0
SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
echo "installing system packages: ${want[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}"
