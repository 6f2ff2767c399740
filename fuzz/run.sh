#!/usr/bin/env bash
# Runs one libFuzzer target for SECONDS: run.sh BINARY SEED_CORPUS WORK_DIR SECONDS [libFuzzer flags...]
# New inputs are kept in WORK_DIR/corpus (the seed corpus is only read), findings in WORK_DIR (crash-*,
# leak-*, timeout-*, oom-*). Exits non-zero on a finding. Example, one hour of the safetensors reader:
#   fuzz/run.sh build-fuzz/fuzz/fuzz_safetensors fuzz/corpus/fuzz_safetensors /tmp/f 3600
set -euo pipefail
bin=$1 seeds=$2 work=$3 seconds=$4
shift 4
mkdir -p "$work/corpus"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# -rss_limit_mb: 2 GB (the default); -timeout: one input may take at most 10 s; -max_len: 64 KiB.
exec "$bin" -max_total_time="$seconds" -timeout=10 -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$@" "$work/corpus" "$seeds"
