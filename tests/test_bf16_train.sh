#!/usr/bin/env bash
# End-to-end check of the bf16 mixed-precision mode (--precision bf16) on real text:
#  1. the same 300-step Tiny Shakespeare run (same seed, same data order) in fp32 and in bf16: the bf16
#     final validation loss is within 2% of fp32's;
#  2. greedy generation (--temperature 0) from the fp32-trained checkpoint, in fp32 and with --precision
#     bf16, 64 tokens from a few prompts: the share of positions where both pick the same token is ≥ 50%;
#  3. `convert --dtype bf16` of that checkpoint: the bf16 checkpoint generates, refuses to train, and
#     `info` prints the memory per precision.
# Sized for 2 threads (a 4-layer, 128-wide transxssm; sequences of 64, batches of 4): the whole script took
# 6 s on an idle 2-core machine (ctest, 2026-11-30), 135 s on the same machine under other load.
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
CORPUS=$SHARED/data/corpora/tinyshakespeare.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRANSXSSM_THREADS=${TRANSXSSM_THREADS:-2}
fail() { echo "FAIL: $*" >&2; exit 1; }
SECONDS=0

# --- 1. fp32 and bf16 training, same seed ---------------------------------------------------------------
cat > "$WORK/small.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
 "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 32}
JSON
COMMON=(--config "$WORK/small.json" --data "$CORPUS" --steps 300 --seq-len 64 --batch-size 4 --lr 3e-3
        --min-lr 3e-4 --warmup 30 --val-every 150 --val-batches 8 --seed 5)
for p in fp32 bf16; do
  t0=$SECONDS
  "$BIN" train "${COMMON[@]}" --precision $p --out "$WORK/$p" > "$WORK/$p.out" 2>&1 || { cat "$WORK/$p.out"; fail "train --precision $p"; }
  echo "train --precision $p: $((SECONDS - t0)) s"
done
/usr/bin/python3 - "$WORK/fp32/metrics.jsonl" "$WORK/bf16/metrics.jsonl" <<'PY'
import json, sys
def val(p):
    return [(r["step"], r["val_loss"]) for r in map(json.loads, open(p)) if "val_loss" in r]
a, b = val(sys.argv[1]), val(sys.argv[2])
print("validation losses fp32:", a)
print("validation losses bf16:", b)
assert [s for s, _ in a] == [s for s, _ in b] and a[-1][0] == 300, (a, b)
assert a[0][1] > 5.0 and a[-1][1] < 3.0, f"fp32 did not learn: {a}"
f, h = a[-1][1], b[-1][1]
rel = abs(h - f) / f
print(f"final validation loss: fp32 {f:.4f}, bf16 {h:.4f}, difference {h - f:+.4f} ({100 * rel:.2f}%)")
assert rel <= 0.02, f"bf16 final validation loss {h} is not within 2% of fp32's {f}"
PY

# --- 2. greedy generation from the fp32-trained checkpoint in fp32 and bf16 ------------------------------
CK=$WORK/fp32/checkpoint
PROMPTS=("ROMEO:" "First Citizen:" "KING RICHARD III:" "To be, or not to be")
for i in "${!PROMPTS[@]}"; do
  for p in fp32 bf16; do
    "$BIN" generate --model "$CK" --prompt "${PROMPTS[$i]}" --max-tokens 64 --temperature 0 --ignore-eos --json \
      --precision $p > "$WORK/gen_${p}_$i.json" 2> "$WORK/gen_${p}_$i.err" || { cat "$WORK/gen_${p}_$i.err"; fail "generate --precision $p"; }
  done
done
/usr/bin/python3 - "$WORK" "${#PROMPTS[@]}" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
same = total = 0
for i in range(n):
    a = json.load(open(f"{work}/gen_fp32_{i}.json"))["ids"]
    b = json.load(open(f"{work}/gen_bf16_{i}.json"))["ids"]
    assert len(a) == len(b) == 64, (len(a), len(b))
    eq = sum(x == y for x, y in zip(a, b))
    first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), 64)
    same, total = same + eq, total + 64
    print(f"prompt {i}: {eq}/64 tokens agree, first divergence at {first}")
    print("  fp32:", repr(json.load(open(f"{work}/gen_fp32_{i}.json"))["text"]))
    print("  bf16:", repr(json.load(open(f"{work}/gen_bf16_{i}.json"))["text"]))
rate = same / total
print(f"greedy token agreement fp32 vs bf16: {same}/{total} = {100 * rate:.1f}%")
assert rate >= 0.5, f"greedy agreement {rate:.3f} < 0.5"
PY

# --- 3. convert --dtype bf16, info ----------------------------------------------------------------------
"$BIN" convert --model "$CK" --out "$WORK/ck16" --dtype bf16
s32=$(stat -c %s "$CK/model.safetensors"); s16=$(stat -c %s "$WORK/ck16/model.safetensors")
echo "model.safetensors: fp32 $s32 bytes, bf16 $s16 bytes"
(( s16 * 10 < s32 * 6 )) || fail "the bf16 checkpoint is not about half the fp32 one"
/usr/bin/python3 - "$WORK/ck16/model.safetensors" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    h = json.loads(f.read(n))
dt = {v["dtype"] for k, v in h.items() if k != "__metadata__"}
assert dt == {"BF16"}, dt
print(f"bf16 checkpoint: {len(h) - ('__metadata__' in h)} tensors, all BF16")
PY
"$BIN" generate --model "$WORK/ck16" --prompt "ROMEO:" --max-tokens 16 --temperature 0 --ignore-eos --json \
  --precision bf16 > "$WORK/gen_ck16.json" 2>/dev/null || fail "generate from the bf16 checkpoint"
set +e
"$BIN" train --resume "$WORK/ck16" > /dev/null 2> "$WORK/resume16.err"; rc=$?
"$BIN" info --model "$WORK/ck16" > "$WORK/info16.out" 2>&1; rc_info=$?
set -e
[[ $rc -ne 0 ]] || fail "training resumed from a bf16 checkpoint"
[[ $rc_info -eq 0 ]] || { cat "$WORK/info16.out"; fail "info on the bf16 checkpoint"; }
"$BIN" info --model "$CK" > "$WORK/info.out"
cat "$WORK/info.out"
grep -q "^weights for inference: fp32 .* MiB, bf16 .* MiB" "$WORK/info.out" || fail "info: no inference memory per precision"
grep -q "^training memory .*fp32 .* MiB, bf16 .* MiB" "$WORK/info.out" || fail "info: no training memory per precision"
cmp <(grep "^weights" "$WORK/info.out") <(grep "^weights" "$WORK/info16.out") || fail "info differs between the fp32 and bf16 checkpoints"
echo "OK bf16 end to end in $SECONDS s"
