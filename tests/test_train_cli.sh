#!/usr/bin/env bash
# End-to-end checks of `transxssm train` and the model commands:
#  1. training `tiny` on Tiny Shakespeare lowers the validation loss well below its start;
#  2. a run killed with SIGKILL and resumed gives a loss sequence bit-identical to an uninterrupted run;
#  3. malformed inputs end with a one-line `error:` message and exit status 1 (never a crash).
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
CORPUS=$SHARED/data/corpora/tinyshakespeare.txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRANSXSSM_THREADS=${TRANSXSSM_THREADS:-2}
fail() { echo "FAIL: $*" >&2; exit 1; }

# --- 1. learning on real text -------------------------------------------------------------------------
"$BIN" train --arch transxssm --size tiny --data "$CORPUS" --steps 250 --seq-len 128 --batch-size 8 \
  --lr 3e-3 --min-lr 3e-4 --warmup 25 --val-every 125 --val-batches 4 --seed 3 --out "$WORK/learn" \
  --sample-tokens 40 --sample-prompt "ROMEO:" > "$WORK/learn.out"
cat "$WORK/learn.out"
/usr/bin/python3 - "$WORK/learn/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
print("validation losses:", val)
assert val[0][0] == 0 and val[-1][0] == 250, val
start, end = val[0][1], val[-1][1]
# Bytes: ln(256) = 5.55 at the start; a model that learned nothing stays above ~3.3 (unigram entropy).
assert start > 5.0, start
assert end < 0.55 * start and end < 3.0, f"validation loss only went from {start} to {end}"
for r in rows:
    if "loss" in r:
        for k in ("step", "loss", "lr", "tokens_per_s"):
            assert k in r, (k, r)
print("OK learning:", start, "->", end)
PY
test -s "$WORK/learn/loss.svg" || fail "no loss curve"
grep -q "<polyline" "$WORK/learn/loss.svg" || fail "empty loss curve"
test -s "$WORK/learn/checkpoint/model.safetensors" || fail "no checkpoint"
"$BIN" info --model "$WORK/learn/checkpoint" | grep -q "parameters:" || fail "info"

# --- 2. exact resume after SIGKILL -------------------------------------------------------------------
cat > "$WORK/small.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
 "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 32,
 "train": {"seq_len": 128, "batch_size": 4, "grad_accum": 2, "lr": 0.003, "warmup": 5, "val_every": 10,
           "val_batches": 2}}
JSON
COMMON=(--config "$WORK/small.json" --data "$CORPUS" --steps 120 --save-every 20 --seed 9)
"$BIN" train "${COMMON[@]}" --out "$WORK/full" > /dev/null 2>&1
"$BIN" train "${COMMON[@]}" --out "$WORK/killed" > /dev/null 2>&1 &
PID=$!
for _ in $(seq 1 600); do
  [[ -f "$WORK/killed/checkpoint/train_state.safetensors" ]] && break
  sleep 0.05
done
sleep 0.2
kill -9 $PID 2>/dev/null || fail "the run finished before it could be killed"
wait $PID 2>/dev/null || true
"$BIN" train --resume "$WORK/killed" > "$WORK/resume.out" 2>&1 || { cat "$WORK/resume.out"; fail "resume failed"; }
/usr/bin/python3 - "$WORK/full/metrics.jsonl" "$WORK/killed/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    out = {}
    for l in open(p):
        r = json.loads(l)
        out[r["step"]] = (r.get("loss"), r.get("val_loss"))
    return out
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert sorted(a) == sorted(b) == list(range(0, 121)), (sorted(a), sorted(b))
bad = [(s, a[s], b[s]) for s in a if a[s] != b[s]]
assert not bad, f"resumed run differs: {bad[:5]}"
print("OK resume: 120 steps bit-identical")
PY
cmp "$WORK/full/checkpoint/model.safetensors" "$WORK/killed/checkpoint/model.safetensors" || fail "final weights differ"

# --- 3. malformed inputs -------------------------------------------------------------------------------
expect_error() {  # expect_error PATTERN CMD...
  local pattern=$1; shift
  set +e
  "$@" > "$WORK/err.out" 2> "$WORK/err.txt"
  local rc=$?
  set -e
  [[ $rc -eq 1 ]] || { cat "$WORK/err.txt"; fail "exit status $rc for: $*"; }
  [[ $(wc -l < "$WORK/err.txt") -eq 1 ]] || { cat "$WORK/err.txt"; fail "not one line: $*"; }
  grep -q "^error: .*$pattern" "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "message lacks '$pattern': $*"; }
}
CK=$WORK/learn/checkpoint
echo '[1, 2, 3, 4]' > "$WORK/ids.json"
"$BIN" score --model "$CK" --ids "$WORK/ids.json" | /usr/bin/python3 -c '
import json, sys; r = json.load(sys.stdin); assert len(r["logprobs"]) == 3 and r["loss"] > 0, r'
expect_error "cannot open" "$BIN" score --model "$CK" --ids "$WORK/nope.json"
echo '[1, 2, "x"]' > "$WORK/bad_ids.json";  expect_error "integers" "$BIN" score --model "$CK" --ids "$WORK/bad_ids.json"
echo '[1, 2, 99999]' > "$WORK/oov.json";    expect_error "outside the vocabulary" "$BIN" score --model "$CK" --ids "$WORK/oov.json"
echo '[1, 2' > "$WORK/trunc.json";          expect_error "invalid JSON" "$BIN" score --model "$CK" --ids "$WORK/trunc.json"
mkdir -p "$WORK/broken"; cp "$CK/config.json" "$WORK/broken/"
head -c 1000 "$CK/model.safetensors" > "$WORK/broken/model.safetensors"
expect_error "model.safetensors" "$BIN" info --model "$WORK/broken"
expect_error "not a checkpoint" "$BIN" info --model "$WORK/none"
echo '{"arch": "transxssm", "size": "tiny", "hidden_sizee": 8}' > "$WORK/cfg.json"
expect_error "unknown field 'hidden_sizee'" "$BIN" init --config "$WORK/cfg.json" --out "$WORK/x"
echo '{"arch": "retnet"}' > "$WORK/cfg2.json"
expect_error "unknown architecture 'retnet'" "$BIN" init --config "$WORK/cfg2.json" --out "$WORK/x"
printf 'abc\xff\xfedef' > "$WORK/latin1.txt"
expect_error "not valid UTF-8" "$BIN" train --data "$WORK/latin1.txt" --steps 1 --out "$WORK/y"
echo "short" > "$WORK/short.txt"
expect_error "too few" "$BIN" train --data "$WORK/short.txt" --steps 1 --out "$WORK/y"
expect_error "no such file" "$BIN" train --data "$WORK/absent.txt" --steps 1 --out "$WORK/y"
expect_error "no training checkpoint" "$BIN" train --resume "$WORK/none"
echo "OK all"
