#!/usr/bin/env bash
# Configures and builds transxssm (Release) into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" 2>&1 | grep -E "error|warning:|Error" || true
test -x build/transxssm || { echo "build failed" >&2; cmake --build build -j1; exit 1; }
