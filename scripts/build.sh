#!/usr/bin/env bash
# Configures and builds transxssm (Release) into build/. Quiet when the build is clean; otherwise prints
# every compiler/linker diagnostic in full (the "In file included from" / "In function" context lines
# that say where a warning comes from included). On a failed build it prints the whole build log and
# exits non-zero. BUILD_JOBS overrides the number of parallel jobs (default: all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
log=$(mktemp) diag=$(mktemp)
trap 'rm -f "$log" "$diag"' EXIT
# The build tool's progress goes to stdout, compiler and linker diagnostics to stderr: the full log
# gets both (in order), the diagnostics file only stderr.
status=0
{ cmake --build build -j "${BUILD_JOBS:-$(nproc)}" 2>&1 >&3 3>&- | tee "$diag" >&3; } 3>> "$log" || status=$?
if [ "$status" -ne 0 ] || [ ! -x build/transxssm ]; then
  cat "$log" >&2
  echo "build failed (exit $status)" >&2
  exit 1
fi
cat "$diag" >&2
