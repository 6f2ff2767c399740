#!/usr/bin/env bash
# Data parallelism on one machine: 2 processes × 1 thread (mpirun) against 1 process × 2 threads, same
# global batch. Prints the median tokens/s (steps after the first 5) and the step time of each, and the
# parameter count (for tools/dist_estimate.py).
# usage: tools/bench_mpi.sh [BIN] [STEPS]   (defaults: build/transxssm, 40)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/transxssm}
STEPS=${2:-40}
CORPUS=${CORPUS:-../shared/data/corpora/tinyshakespeare.txt}
[[ -f $CORPUS ]] || CORPUS=/usr/share/games/fortunes
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset TRANSXSSM_THREADS OMP_NUM_THREADS
ARGS=(--arch transxssm --size tiny --data "$CORPUS" --steps "$STEPS" --seq-len 256 --batch-size 8 --seed 1
      --val-every 0 --lr 1e-3 --warmup 5)
median() {
  /usr/bin/python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
tps = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > 5]
m = statistics.median(tps)
print(f"{m:9.0f} tokens/s   {8 * 256 / m * 1000:7.1f} ms/step ({len(tps)} steps)")
PY
}
"$BIN" train "${ARGS[@]}" --threads 2 --out "$WORK/t2" > "$WORK/t2.log" 2>&1
mpirun --oversubscribe -np 2 "$BIN" train "${ARGS[@]}" --threads 1 --out "$WORK/r2" > "$WORK/r2.log" 2>&1
"$BIN" train "${ARGS[@]}" --threads 1 --out "$WORK/t1" > "$WORK/t1.log" 2>&1
grep -m1 "^model:" "$WORK/t2.log"
echo "1 process  × 1 thread : $(median "$WORK/t1/metrics.jsonl")"
echo "1 process  × 2 threads: $(median "$WORK/t2/metrics.jsonl")"
echo "2 processes × 1 thread: $(median "$WORK/r2/metrics.jsonl")"
