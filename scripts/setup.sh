#!/usr/bin/env bash
# Installs every build, test and run dependency of transxssm from Debian packages.
# Idempotent: prints nothing and touches nothing when everything is already present.
set -euo pipefail
PACKAGES=(
  build-essential cmake pkg-config git
  libdnnl-dev libopenblas-dev
  nlohmann-json3-dev libcli11-dev libpcre2-dev libicu-dev libcpp-httplib-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch python3-numpy
  # Data-parallel training (mpirun) and its tests.
  openmpi-bin libopenmpi-dev
  # Sanitizer CI (.ci/run) and the libFuzzer targets of fuzz/: clang, its runtimes (libclang_rt.fuzzer,
  # asan, ubsan: libclang-rt-dev) and its OpenMP runtime (libomp-dev) for the clang build of build-fuzz.
  clang libclang-rt-dev libomp-dev

  fortunes
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm is used only by the tokenizer oracle test; this machine image ships Node.js with npm already.
command -v npm >/dev/null || { echo "setup: npm (Node.js) is required for the tokenizer oracle tests" >&2; exit 1; }
