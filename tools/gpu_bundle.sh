#!/usr/bin/env bash
# Prepares what tools/gpu_check.sh needs on a GPU machine that has CUDA, CMake and PyTorch but none of this
# project's Debian libraries and no network: the Debian packages of the build dependencies (downloaded here
# with apt-get, not installed) and the corpus of the training check, in .gpu_deps/ (git-ignored; ~47 MiB).
# Carry that folder to the GPU machine next to the checkout, then run tools/gpu_check.sh there.
#   tools/gpu_bundle.sh [SHARED_DIR]     (default ../shared)
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared}
DEST=.gpu_deps
# Runtime + development packages of: oneDNN, OpenBLAS (pthread flavour), nlohmann-json, CLI11, PCRE2, ICU,
# cpp-httplib (with its OpenSSL, Brotli and zlib), fmt, GoogleTest/GoogleMock, Google Benchmark, pkgconf, and the
# runtime libraries oneDNN and OpenBLAS need beyond a base system (OpenCL ICD loader, gfortran runtime).
PACKAGES=(libdnnl-dev libdnnl2 libopenblas-dev libopenblas0 libopenblas-pthread-dev libopenblas0-pthread
          nlohmann-json3-dev libcli11-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3
          libicu-dev libicu72 libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev libssl3
          zlib1g-dev libfmt-dev libfmt9 libgtest-dev libgmock-dev googletest libbenchmark-dev libbenchmark1debian
          pkgconf pkgconf-bin libpkgconf3
          libgfortran5 libquadmath0 ocl-icd-libopencl1)
rm -rf "$DEST" && mkdir -p "$DEST/debs" "$DEST/shared/data/corpora"
(cd "$DEST/debs" && apt-get download "${PACKAGES[@]}" 2>&1 | grep -v '^Get:' | grep -v 'unsandboxed' || true)
n=$(ls "$DEST/debs"/*.deb | wc -l)
[ "$n" -eq "${#PACKAGES[@]}" ] || { echo "gpu_bundle: downloaded $n of ${#PACKAGES[@]} packages" >&2; exit 1; }
# The tests find it as TRANSXSSM_SHARED_DIR=.gpu_deps/shared, the layout of ../shared.
cp "$SHARED/data/corpora/tinyshakespeare.txt" "$DEST/shared/data/corpora/"
# The commit the bundle was made at (the GPU machine's copy of the tree may have no .git).
echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+uncommitted changes')" > "$DEST/commit"
echo "gpu_bundle: $(du -sh "$DEST" | cut -f1) in $DEST ($n packages + corpus). Carry it: device run with carry [\".gpu_deps\"]"
