#!/usr/bin/env bash
# The trainer on the GPU (--device cuda) follows the CPU: the same 200-step Tiny Shakespeare run (same seed,
# same data order, head dim 64, SSD and attention layers) on both devices, in bf16 mixed precision and in fp32:
#  - every logged training loss of the GPU run is within 2% (bf16) / 0.5% (fp32) of the CPU run's, and the final
#    validation losses within 1% / 0.2%;
#  - a GPU run killed (SIGKILL) after its first checkpoint and resumed with --resume ends within 1e-3 of the
#    uninterrupted GPU run (not bit-exact: the attention backward sums dq with atomics).
# Skipped (exit 77) where the CUDA backend cannot run: no GPU, or a build without it (`transxssm devices`).
# On the GPU machine (tools/gpu_check.sh) the whole script takes about a minute. TRANSXSSM_TEST_DEVICE=cpu runs
# the "GPU" side on the CPU: a dry run of this script's own logic on a machine without a GPU.
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
DEV=${TRANSXSSM_TEST_DEVICE:-cuda}
if ! why=$("$BIN" devices --require "$DEV" 2>&1); then echo "SKIPPED: $why"; exit 77; fi
echo "$why"
CORPUS=$SHARED/data/corpora/tinyshakespeare.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
cat > "$WORK/small.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
 "num_attention_heads": 4, "num_key_value_heads": 2, "attn_layer_period": 2, "attn_layer_offset": 1,
 "ssm_chunk_size": 64}
JSON
COMMON=(--config "$WORK/small.json" --data "$CORPUS" --seq-len 256 --batch-size 8 --lr 3e-3 --min-lr 3e-4
        --warmup 20 --val-every 100 --val-batches 8 --seed 11 --save-every 50)
run() {  # name device precision steps [extra...]
  local name=$1 dev=$2 prec=$3 steps=$4; shift 4
  "$BIN" train "${COMMON[@]}" --steps "$steps" --device "$dev" --precision "$prec" --out "$WORK/$name" "$@" \
    > "$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; fail "train $name"; }
  echo "train $name: done"
}
for prec in bf16 fp32; do
  run cpu_$prec cpu $prec 200
  run gpu_$prec "$DEV" $prec 200
done
# Killed (SIGKILL) once its first checkpoint exists, then resumed on the GPU.
"$BIN" train "${COMMON[@]}" --steps 200 --device "$DEV" --precision bf16 --out "$WORK/gpu_killed" > /dev/null 2>&1 &
PID=$!
for _ in $(seq 1 1200); do
  [[ -f "$WORK/gpu_killed/checkpoint/train_state.safetensors" ]] && break
  sleep 0.05
done
sleep 0.2
kill -9 $PID 2>/dev/null || fail "the GPU run finished before it could be killed"
wait $PID 2>/dev/null || true
"$BIN" train --resume "$WORK/gpu_killed" --device "$DEV" > "$WORK/resume.log" 2>&1 || { cat "$WORK/resume.log"; fail "resume"; }
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def load(name):
    rows = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")]
    train = {r["step"]: r["loss"] for r in rows if "loss" in r}
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    return train, val
for prec, tol_step, tol_val in (("bf16", 0.02, 0.01), ("fp32", 0.005, 0.002)):
    ct, cv = load(f"cpu_{prec}")
    gt, gv = load(f"gpu_{prec}")
    assert sorted(ct) == sorted(gt) and max(ct) == 200, (sorted(ct), sorted(gt))
    worst = max(abs(gt[s] - ct[s]) / ct[s] for s in ct)
    print(f"{prec}: training losses at {len(ct)} logged steps, worst relative difference GPU vs CPU {worst:.4%}")
    print(f"{prec}: CPU first/last {ct[min(ct)]:.4f} -> {ct[200]:.4f}; GPU {gt[min(gt)]:.4f} -> {gt[200]:.4f}")
    assert ct[200] < ct[min(ct)] - 1.0, "the CPU run did not learn"
    assert worst <= tol_step, f"{prec}: GPU loss curve leaves the CPU's by {worst:.4%} > {tol_step:.1%}"
    fv, gfv = cv[-1][1], gv[-1][1]
    print(f"{prec}: final validation loss CPU {fv:.4f}, GPU {gfv:.4f} ({abs(gfv - fv) / fv:.4%})")
    assert abs(gfv - fv) / fv <= tol_val, f"{prec}: final validation losses differ by more than {tol_val:.1%}"
full, _ = load("gpu_bf16")
res, _ = load("gpu_killed")
d = abs(full[200] - res[200])
print(f"killed and resumed vs uninterrupted, loss at step 200: {res[200]:.6f} vs {full[200]:.6f} (|diff| {d:.2e})")
assert d <= 1e-3, "the resumed GPU run does not continue where it stopped"
PY
echo "PASS"
