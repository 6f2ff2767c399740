#!/usr/bin/env bash
# The GPU check of the CUDA backend: one run on a fresh GPU machine (an H200, lent for ~15 minutes when at all)
# that builds the project, runs every GPU test and the GPU benchmark, and writes the results into one file,
# $OUT/gpu_check.md (a table of stages, then each stage's log tail), beside bench_gpu.json and logs.tar.gz.
#
# The GPU machine has CUDA, CMake, Ninja, a compiler and PyTorch but none of this project's Debian libraries and
# no network. Prepare here first:   tools/gpu_bundle.sh        (→ .gpu_deps/: the .debs + the corpus)
# then run there, carrying .gpu_deps:   bash tools/gpu_check.sh   (the device tool: carry [".gpu_deps"])
#
# Stages run in order of what matters most (GPU correctness, then the numbers the issue asks for); each is logged, timed and marked PASS / FAIL /
# SKIP / TIMEOUT, a failed stage does not stop the later ones, and the whole run stays within GPU_CHECK_BUDGET
# seconds (default 540, for a 600-second call). Nothing is installed into /: the packages are unpacked into
# /tmp/txs_deps and the build finds them through CMAKE_PREFIX_PATH and pkg-config's sysroot.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu_check_out}
mkdir -p "$OUT"
LOGS=/tmp/gpu_check_logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
REPORT=$OUT/gpu_check.md
BUDGET=${GPU_CHECK_BUDGET:-540}
DEPS=/tmp/txs_deps
BUILD=$ROOT/build-gpu
JOBS=${JOBS:-$(nproc)}
STAGES=()

# stage NAME LIMIT_S COMMAND...: runs it with its output in $LOGS/NAME.log, within what is left of the budget.
stage() {
  local name=$1 limit=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if ((left < 15)); then
    STAGES+=("$name|NOT RUN (budget spent)|0")
    return 1
  fi
  ((limit > left)) && limit=$left
  local t0=$SECONDS rc
  echo "== $name (limit ${limit} s)"
  if declare -F "$1" > /dev/null; then  # a function of this script: timeout runs it in a child bash
    timeout --kill-after=10 "$limit" bash -c '"$@"' stage "$@" > "$LOGS/$name.log" 2>&1
  else
    timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  fi
  rc=$?
  local result="PASS"
  if ((rc == 124 || rc == 137)); then result="TIMEOUT after ${limit} s"
  elif ((rc == 77)); then result="SKIP"
  elif ((rc != 0)); then result="FAIL (exit $rc)"; fi
  STAGES+=("$name|$result|$((SECONDS - t0))")
  echo "   $result in $((SECONDS - t0)) s"
  return $rc
}

machine() {
  date -u
  nvidia-smi || true
  nvcc --version | tail -2
  g++ --version | head -1
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())' || true
  nproc
  free -g | head -2
}

unpack_deps() {
  [ -d .gpu_deps/debs ] || { echo "no .gpu_deps/debs: run tools/gpu_bundle.sh here and carry .gpu_deps"; return 1; }
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  for d in .gpu_deps/debs/*.deb; do dpkg-deb -x "$d" "$DEPS" || return 1; done
  # Debian's OpenBLAS .pc and libopenblas.so live in its flavour folder (the generic names are alternatives,
  # made by maintainer scripts that dpkg-deb -x does not run).
  ls "$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread/"
  # The loader path of this run (LD_LIBRARY_PATH, which the Python tests and the PyTorch peer inherit too):
  # every unpacked library except OpenSSL's, whose older Debian build could shadow the one the machine's
  # Python was built against. Our binaries reach their direct dependencies through their RUNPATH anyway.
  mkdir -p "$DEPS/runtime"
  for f in "$DEPS"/usr/lib/x86_64-linux-gnu/*.so.* "$DEPS"/usr/lib/x86_64-linux-gnu/openblas-pthread/*.so*; do
    case $(basename "$f") in libssl*|libcrypto*) ;; *) ln -sf "$f" "$DEPS/runtime/" ;; esac
  done
  du -sh "$DEPS"
}

export PKG_CONFIG=$DEPS/usr/bin/pkgconf
export PKG_CONFIG_LIBDIR=$DEPS/usr/lib/x86_64-linux-gnu/pkgconfig:$DEPS/usr/share/pkgconfig:$DEPS/usr/lib/x86_64-linux-gnu/openblas-pthread/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$DEPS
# Multiarch headers (openssl/opensslconf.h) sit where the compiler looks only under a real /usr.
export CPLUS_INCLUDE_PATH=$DEPS/usr/include/x86_64-linux-gnu${CPLUS_INCLUDE_PATH:+:$CPLUS_INCLUDE_PATH}
export C_INCLUDE_PATH=$DEPS/usr/include/x86_64-linux-gnu${C_INCLUDE_PATH:+:$C_INCLUDE_PATH}
export LD_LIBRARY_PATH=$DEPS/runtime${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export TRANSXSSM_SHARED_DIR=$ROOT/.gpu_deps/shared
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$JOBS}

configure() {
  local gen=()
  command -v ninja > /dev/null && gen=(-G Ninja)
  cmake -S . -B "$BUILD" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$DEPS/usr" \
    -DPKG_CONFIG_EXECUTABLE="$PKG_CONFIG" -DTRANSXSSM_BACKEND_CUDA=ON -DTRANSXSSM_MPI=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="90-real;90-virtual"
}

TARGETS=(transxssm bench_gpu test_backend_conformance test_cuda_model test_fake_device)
for t in tests/test_cuda_*.cpp; do TARGETS+=("$(basename "$t" .cpp)"); done
# GPU_CHECK_TARGETS="a b": build only these (a dry run of the set-up on a machine without a GPU).
[ -n "${GPU_CHECK_TARGETS:-}" ] && read -r -a TARGETS <<< "$GPU_CHECK_TARGETS"
TARGETS_LIST=$(printf '%s\n' "${TARGETS[@]}" | sort -u | tr '\n' ' ')
export TARGETS_LIST
# Ninja keeps going past a failed target (-k 0): one that does not compile leaves the other stages their binaries.
build() {
  local keep=()
  [ -f "$BUILD/build.ninja" ] && keep=(-- -k 0)
  cmake --build "$BUILD" -j "$JOBS" --target $TARGETS_LIST "${keep[@]}"
}

body_tests() {  # the host-side tests of the kernel bodies and the device-clean model (no GPU needed)
  local rc=0
  for t in "$BUILD"/tests/test_cuda_*bodies* "$BUILD"/tests/test_cuda_*math* "$BUILD/tests/test_fake_device"; do
    [ -x "$t" ] || continue
    echo "--- $(basename "$t")"
    "$t" --gtest_brief=1 || rc=1
  done
  return $rc
}

export DEPS BUILD JOBS
export -f machine unpack_deps configure build body_tests
stage machine 30 machine
stage deps 60 unpack_deps
stage configure 90 configure
stage build 300 build
stage devices 20 "$BUILD/transxssm" devices --require cuda
stage conformance 120 "$BUILD/tests/test_backend_conformance"
stage model 120 "$BUILD/tests/test_cuda_model"
stage gpu_train 150 bash tests/test_gpu_train.sh "$BUILD/transxssm" "$ROOT"
stage bench 200 "$BUILD/bench/bench_gpu" --steps 2 --json "$OUT/bench_gpu.json"
stage gpu_infer 120 bash tests/test_gpu_infer.sh "$BUILD/transxssm" "$ROOT"
stage memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 1 \
  "$BUILD/tests/test_backend_conformance" --gtest_filter='*cuda*'
# Last: the host-side kernel-body tests (CI runs them on every commit) and the SSD launchers' own GPU tests.
stage body_tests 60 body_tests

{
  echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo "$(cat .gpu_deps/commit 2>/dev/null || echo '?') (at bundling)")"
  echo
  echo "| stage | result | seconds |"
  echo "|---|---|---|"
  for s in "${STAGES[@]}"; do IFS='|' read -r n r t <<< "$s"; echo "| $n | $r | $t |"; done
  echo
  echo "Total: $SECONDS s of a $BUDGET s budget."
  for s in "${STAGES[@]}"; do
    IFS='|' read -r n r t <<< "$s"
    [ -f "$LOGS/$n.log" ] || continue
    local_lines=60
    [[ $r != PASS ]] && local_lines=150
    [[ $n == bench || $n == machine ]] && local_lines=200
    echo
    echo "## $n: $r ($t s) — last $local_lines lines"
    echo '```'
    tail -n "$local_lines" "$LOGS/$n.log"
    echo '```'
  done
} > "$REPORT"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" . 2> /dev/null
echo "gpu_check: report in $REPORT"
