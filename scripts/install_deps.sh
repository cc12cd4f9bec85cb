#!/usr/bin/env bash
# Installs the Debian packages pdvm builds with, if missing. Safe to re-run; needs root or sudo.
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config googletest libgtest-dev libbenchmark-dev
      nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev zlib1g-dev tmux clang libclang-rt-dev
      python3 python3-pip)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
# python3/pip may come from elsewhere (pyenv): only require them from Debian when absent.
if command -v python3 >/dev/null; then
  missing=("${missing[@]/python3}"); missing=("${missing[@]/python3-pip}")
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
fi
read -ra missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "install_deps: all build dependencies present"
