#!/usr/bin/env bash
# One-time set-up on a fresh machine: build dependencies, the default model, a Release build
# in build/. Safe to re-run. Then `build/pdvm run` generates text.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/fetch_model.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
