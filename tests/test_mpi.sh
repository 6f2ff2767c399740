#!/usr/bin/env bash
# Data-parallel training across processes (mpirun), on a tiny model so the whole test takes well under a
# minute on two cores (one thread per process):
#  1. 2 processes give the loss sequence and weights of 1 process with the same global batch (within fp32
#     summation order); mpirun -np 1 is bit-identical to a plain run;
#  2. --zero1 (sharded AdamW moments) gives what plain data parallelism gives; 3 processes (uneven row and
#     shard splits) with --zero1 give what 1 process gives;
#  3. a process killed mid-run ends the job non-zero, within a bounded time, with the launcher naming it;
#     the last checkpoint (written by 2 processes) resumes with 1 process and continues the same sequence;
#  4. a process that hangs makes the others time out (--dist-timeout) with a clear message; its checkpoint
#     resumes with 2 processes and --zero1; a 1-process checkpoint resumes with 2 processes.
# Skipped (exit 0) when mpirun is absent or transxssm was built without MPI.
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
CORPUS=$SHARED/data/corpora/tinyshakespeare.txt
PY=/usr/bin/python3
CMP="$PY $SRC/tools/compare_runs.py"
fail() { echo "FAIL: $*" >&2; exit 1; }
if ! command -v mpirun >/dev/null; then echo "SKIP: mpirun not found (apt-get install openmpi-bin)"; exit 0; fi
if ! "$BIN" --version | grep -q "data parallelism: MPI"; then
  echo "SKIP: $BIN was built without MPI (TRANSXSSM_MPI=OFF): $("$BIN" --version)"; exit 0
fi
[[ -f $CORPUS ]] || CORPUS=/usr/share/games/fortunes
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Open MPI refuses root unless told; two processes on two cores, one thread each.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
unset TRANSXSSM_THREADS OMP_NUM_THREADS
MPIRUN=(mpirun --oversubscribe --bind-to none -x TRANSXSSM_TEST_FAULT)
export TRANSXSSM_TEST_FAULT=none

cat > "$WORK/tiny.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "ssm_state_size": 32,
 "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 32, "vocab_size": 256,
 "train": {"seq_len": 32, "batch_size": 4, "grad_accum": 2, "lr": 0.003, "warmup": 2, "val_every": 5,
           "val_batches": 2}}
JSON
# A small bucket (0.02 MB = 5000 floats) so that the all-reduce runs in several buckets during the backward.
COMMON=(--config "$WORK/tiny.json" --data "$CORPUS" --steps 12 --save-every 4 --seed 5 --threads 1 --bucket-mb 0.02)
train1() { "$BIN" train "${COMMON[@]}" "$@"; }
train2() { "${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" "$@"; }

# --- 1. 2 processes = 1 process ------------------------------------------------------------------------
train1 --out "$WORK/one" > "$WORK/one.log" 2>&1 || { cat "$WORK/one.log"; fail "1-process run"; }
train2 --out "$WORK/two" > "$WORK/two.log" 2>&1 || { cat "$WORK/two.log"; fail "2-process run"; }
grep -q "2 processes × 1 threads" "$WORK/two.log" || { cat "$WORK/two.log"; fail "the 2-process run does not say so"; }
[[ $(grep -c "^done:" "$WORK/two.log") -eq 1 ]] || fail "more than one process printed the result"
echo "2 processes vs 1 process:"
$CMP "$WORK/one" "$WORK/two" || fail "2 processes differ from 1"
"${MPIRUN[@]}" -np 1 "$BIN" train "${COMMON[@]}" --out "$WORK/np1" > "$WORK/np1.log" 2>&1 || { cat "$WORK/np1.log"; fail "mpirun -np 1"; }
cmp "$WORK/one/checkpoint/model.safetensors" "$WORK/np1/checkpoint/model.safetensors" || fail "mpirun -np 1 is not bit-identical"
echo "mpirun -np 1 vs plain run:"
$CMP --exact "$WORK/one" "$WORK/np1" || fail "mpirun -np 1 is not bit-identical"

# --- 2. ZeRO-1 = plain data parallelism ------------------------------------------------------------------
train2 --zero1 --out "$WORK/zero" > "$WORK/zero.log" 2>&1 || { cat "$WORK/zero.log"; fail "--zero1 run"; }
echo "--zero1 vs plain data parallelism (2 processes):"
$CMP "$WORK/two" "$WORK/zero" || fail "--zero1 differs"
# Uneven shares: 4 rows over 3 processes (1, 1, 2) and parameter shards of unequal size.
"${MPIRUN[@]}" -np 3 "$BIN" train "${COMMON[@]}" --zero1 --out "$WORK/three" > "$WORK/three.log" 2>&1 ||
  { cat "$WORK/three.log"; fail "3-process --zero1 run"; }
echo "3 processes --zero1 vs 1 process:"
$CMP "$WORK/one" "$WORK/three" || fail "3 processes differ from 1"

# --- 3. a killed process ends the job; its checkpoint resumes with 1 process ------------------------------
t0=$(date +%s.%N)
set +e
TRANSXSSM_TEST_FAULT=1:7:kill timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" --out "$WORK/killed" \
  > "$WORK/killed.log" 2>&1
rc=$?
set -e
secs=$($PY -c "import time; print(f'{time.time() - $t0:.1f}')")
echo "killed rank 1 at step 7: exit status $rc after $secs s"
[[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$WORK/killed.log"; fail "exit status $rc"; }
grep -Eq "rank 1 .*(exited on signal 9|Killed)|signal 9" "$WORK/killed.log" || { cat "$WORK/killed.log"; fail "no message naming the dead process"; }
grep -E "signal 9|Killed" "$WORK/killed.log" | head -2
"$BIN" info --model "$WORK/killed/checkpoint" | grep -q "parameters:" || fail "the checkpoint does not load"
"$BIN" train --resume "$WORK/killed" > "$WORK/resumed1.log" 2>&1 || { cat "$WORK/resumed1.log"; fail "resume with 1 process"; }
grep -q "steps 5..12" "$WORK/resumed1.log" || { cat "$WORK/resumed1.log"; fail "did not resume from step 4"; }
echo "2-process checkpoint (step 4) resumed with 1 process vs 1 process throughout (steps 5..12):"
$CMP --steps 5:12 "$WORK/one" "$WORK/killed" || fail "resumed with 1 process differs"

# --- 4. a hanging process: the others time out; resume with 2 processes and --zero1 ----------------------
t0=$(date +%s.%N)
set +e
TRANSXSSM_TEST_FAULT=1:3:hang timeout 120 "${MPIRUN[@]}" -np 2 "$BIN" train "${COMMON[@]}" --dist-timeout 3 \
  --save-every 2 --out "$WORK/hung" > "$WORK/hung.log" 2>&1
rc=$?
set -e
secs=$($PY -c "import time; print(f'{time.time() - $t0:.1f}')")
echo "rank 1 hangs at step 3 (--dist-timeout 3): exit status $rc after $secs s"
[[ $rc -ne 0 && $rc -ne 124 ]] || { cat "$WORK/hung.log"; fail "exit status $rc"; }
grep "collective timed out after 3 s (a peer died or hangs)" "$WORK/hung.log" || { cat "$WORK/hung.log"; fail "no timeout message"; }
$PY -c "import sys; sys.exit(0 if $secs < 60 else 1)" || fail "took $secs s to end"
"${MPIRUN[@]}" -np 2 "$BIN" train --resume "$WORK/hung" --zero1 > "$WORK/resumed2.log" 2>&1 || { cat "$WORK/resumed2.log"; fail "resume with 2 processes"; }
grep -q "steps 3..12" "$WORK/resumed2.log" || { cat "$WORK/resumed2.log"; fail "did not resume from step 2"; }
echo "2-process checkpoint (step 2) resumed with 2 processes --zero1 vs 2 processes throughout (steps 3..12):"
$CMP --steps 3:12 "$WORK/two" "$WORK/hung" || fail "resumed with --zero1 differs"
# A 1-process run stopped at step 6 (checkpoint at 4) resumed with 2 processes.
set +e
TRANSXSSM_TEST_FAULT=0:6:exit train1 --out "$WORK/stopped" > "$WORK/stopped.log" 2>&1
set -e
"${MPIRUN[@]}" -np 2 "$BIN" train --resume "$WORK/stopped" > "$WORK/resumed3.log" 2>&1 || { cat "$WORK/resumed3.log"; fail "resume 1 → 2"; }
echo "1-process checkpoint (step 4) resumed with 2 processes vs 1 process throughout (steps 5..12):"
$CMP --steps 5:12 "$WORK/one" "$WORK/stopped" || fail "1 → 2 processes differs"
# --- 5. bf16 mixed precision: 2 processes --zero1 vs 1 process; a bf16 run resumed in fp32 ----------------
# The masters and moments are fp32 and reduced as in fp32; a one-ulp difference of a master can flip its bf16
# rounding, so the runs agree to bf16 tolerance, not bit for bit.
train1 --precision bf16 --out "$WORK/bf1" > "$WORK/bf1.log" 2>&1 || { cat "$WORK/bf1.log"; fail "bf16 1-process run"; }
train2 --precision bf16 --zero1 --out "$WORK/bf2" > "$WORK/bf2.log" 2>&1 || { cat "$WORK/bf2.log"; fail "bf16 2-process run"; }
echo "bf16: 2 processes --zero1 vs 1 process:"
$CMP --loss-tol 2e-3 --weight-tol 5e-3 "$WORK/bf1" "$WORK/bf2" || fail "bf16 2 processes differ from 1"
set +e
TRANSXSSM_TEST_FAULT=0:6:exit train1 --precision bf16 --out "$WORK/bfstop" > "$WORK/bfstop.log" 2>&1
set -e
"$BIN" train --resume "$WORK/bfstop" --precision fp32 > "$WORK/bfres.log" 2>&1 || { cat "$WORK/bfres.log"; fail "bf16 → fp32 resume"; }
grep -q "steps 5..12" "$WORK/bfres.log" || { cat "$WORK/bfres.log"; fail "did not resume from step 4"; }
echo "bf16 checkpoint (step 4) resumed in fp32 vs bf16 throughout (steps 5..12):"
$CMP --steps 5:12 --loss-tol 2e-3 --weight-tol 5e-3 "$WORK/bf1" "$WORK/bfstop" || fail "bf16 → fp32 resume differs"
echo "OK all"
