#!/usr/bin/env bash
# Regression checks of the training and loading guards (a tiny model, a few steps each; ~1 minute):
#  A. non-finite steps: --nonfinite stop keeps the last good checkpoint and names the step; skip drops the
#     update, logs it, stops past --max-skips, and a resumed skipping run equals the uninterrupted one;
#     non-finite hyper-parameters are refused;
#  B. a tampered train_state (negative step, wrong types, inconsistent counts) is refused on resume;
#  C. NaN/inf in model.safetensors or in a state snapshot is refused, naming the tensor or the layer;
#  D. a failed write (RLIMIT_FSIZE: EFBIG, which works as root) leaves no checkpoint.tmp or *.tmp, and a
#     stale checkpoint.tmp is removed when a run starts;
#  E. a checkpoint carries its tokenizer: generate, serve and eval work from --model alone.
# Usage: test_guard.sh BINARY SOURCE_DIR
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRANSXSSM_THREADS=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "OK $*"; }
expect_error() {  # expect_error PATTERN CMD...: exit status 1, one line "error: ...PATTERN..."
  local pattern=$1; shift
  set +e
  "$@" > "$WORK/err.out" 2> "$WORK/err.all"
  local rc=$?
  set -e
  grep -v '^step \|^model: \|^data: \|^training: ' "$WORK/err.all" > "$WORK/err.txt" || true
  [[ $rc -eq 1 ]] || { cat "$WORK/err.all"; fail "exit status $rc for: $*"; }
  [[ $(wc -l < "$WORK/err.txt") -eq 1 ]] || { cat "$WORK/err.txt"; fail "not one line: $*"; }
  grep -q "^error: .*$pattern" "$WORK/err.txt" || { cat "$WORK/err.txt"; fail "message lacks '$pattern': $*"; }
  [[ -z ${VERBOSE:-} ]] || cat "$WORK/err.txt"
}
# state_field FILE KEY: a field of a checkpoint's train_state metadata.
state_field() {
  /usr/bin/python3 - "$@" <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    print(json.loads(json.loads(f.read(n))["__metadata__"]["train_state"]).get(sys.argv[2]))
PY
}

# A UTF-8 corpus that is always there: the project's own sources.
cat "$SRC"/src/*/*.cpp "$SRC"/src/*/*.h > "$WORK/corpus.txt"
cat > "$WORK/small.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 32,
 "train": {"seq_len": 64, "batch_size": 2, "lr": 0.003, "warmup": 2, "val_every": 0, "val_batches": 1,
           "threads": 1}}
JSON
T=("$BIN" train --config "$WORK/small.json" --data "$WORK/corpus.txt")

# --- A. non-finite steps -----------------------------------------------------------------------------
# lr 1e6: step 1 is finite, step 2's loss is NaN. The step-1 checkpoint must survive, finite.
expect_error "step 2: non-finite loss" "${T[@]}" --steps 6 --save-every 1 --warmup 0 --lr 1e6 --out "$WORK/div"
[[ $(state_field "$WORK/div/checkpoint/train_state.safetensors" step) == 1 ]] || fail "the step-1 checkpoint was replaced"
"$BIN" info --model "$WORK/div/checkpoint" > /dev/null || fail "the kept checkpoint does not load"
[[ ! -e "$WORK/div/checkpoint.tmp" ]] || fail "checkpoint.tmp left behind"
[[ $(grep -c '"step"' "$WORK/div/metrics.jsonl") == 1 ]] || fail "the failed step was logged as a normal step"
ok "A stop: step 2 named, the step-1 checkpoint kept"

# skip: steps 2, 3, 4 skipped, the 4th consecutive skip (step 5) stops the run.
expect_error "step 5: .* 4 steps in a row" "${T[@]}" --steps 8 --save-every 1 --warmup 0 --lr 1e6 --nonfinite skip \
  --max-skips 3 --out "$WORK/skip"
/usr/bin/python3 - "$WORK/skip/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["step"] for r in rows] == [1, 2, 3, 4], rows
assert "skipped" not in rows[0] and "skipped_steps" not in rows[0], rows[0]
for i, r in enumerate(rows[1:], start=1):
    assert r["skipped"] is True and r["skipped_steps"] == i and r["loss"] is None, r
PY
[[ $(state_field "$WORK/skip/checkpoint/train_state.safetensors" step) == 4 ]] || fail "skip: checkpoint step"
[[ $(state_field "$WORK/skip/checkpoint/train_state.safetensors" optimizer_steps) == 1 ]] || fail "skip: optimizer_steps"
[[ $(state_field "$WORK/skip/checkpoint/train_state.safetensors" consecutive_skips) == 3 ]] || fail "skip: consecutive_skips"
# Resumed with the same policy it stops at once (the count of consecutive skips was saved) ...
expect_error "step 5: .* 4 steps in a row" "$BIN" train --resume "$WORK/skip"
# ... and with a larger --max-skips it ends exactly like a run that had that policy from the start.
"${T[@]}" --steps 8 --save-every 1 --warmup 0 --lr 1e6 --nonfinite skip --max-skips 10 --out "$WORK/skipfull" \
  > /dev/null 2>&1 || fail "skipping run with --max-skips 10"
"$BIN" train --resume "$WORK/skip" --max-skips 10 > /dev/null 2>&1 || fail "resumed skipping run"
/usr/bin/python3 - "$WORK/skipfull/metrics.jsonl" "$WORK/skip/metrics.jsonl" <<'PY'
import json, sys
def rows(p):
    return [{k: v for k, v in json.loads(l).items() if k not in ("elapsed_s", "tokens_per_s")} for l in open(p)]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert a == b, (a, b)
assert a[-1]["step"] == 8 and a[-1]["skipped_steps"] == 7, a[-1]
PY
cmp "$WORK/skipfull/checkpoint/model.safetensors" "$WORK/skip/checkpoint/model.safetensors" || fail "skip resume weights differ"
ok "A skip: logged, stopped past --max-skips, resume identical"

for flag in "--lr inf" "--lr nan" "--min-lr inf" "--beta1 nan" "--beta2 inf" "--weight-decay nan" "--clip-norm inf" \
            "--val-fraction nan" "--decay-fraction inf"; do
  # shellcheck disable=SC2086
  expect_error "${flag%% *} must be a finite number" "${T[@]}" --steps 2 --out "$WORK/hp" $flag
done
expect_error "nonfinite must be stop or skip" "${T[@]}" --steps 2 --out "$WORK/hp" --nonfinite maybe
expect_error "max-skips must be at least 1" "${T[@]}" --steps 2 --out "$WORK/hp" --max-skips 0
ok "A hyper-parameters"

# --- B. tampered train state -----------------------------------------------------------------------------
"${T[@]}" --steps 4 --save-every 2 --out "$WORK/good" > /dev/null 2>&1 || fail "good run"
# tamper SRC_RUN DST_RUN PYTHON-STATEMENT (on dict `s`, the train_state): a copy of the run, state rewritten.
tamper() {
  rm -rf "$2"; cp -r "$1" "$2"
  /usr/bin/python3 - "$2/checkpoint/train_state.safetensors" "$3" <<'PY'
import json, struct, sys
path, stmt = sys.argv[1], sys.argv[2]
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
s = json.loads(header["__metadata__"]["train_state"])
exec(stmt)
header["__metadata__"]["train_state"] = json.dumps(s)
h = json.dumps(header).encode()
h += b" " * ((8 - (len(h) + 8) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + data[8 + n:])
PY
}
tamper "$WORK/good" "$WORK/t" 's["step"] = -3';                expect_error "step -3 is outside 0..4" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["step"] = 9';                 expect_error "step 9 is outside 0..4" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["step"] = "4"';               expect_error '"step" must be an integer' "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["step"] = 2.5';               expect_error '"step" must be an integer' "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 'del s["optimizer_steps"]';      expect_error 'no "optimizer_steps"' "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["optimizer_steps"] = 7';      expect_error "optimizer_steps 7 is outside 0..4" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["optimizer_steps"] = -1';     expect_error "optimizer_steps -1 is outside" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["consecutive_skips"] = 1';    expect_error "consecutive_skips 1 is outside 0..0" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["format"] = "v0"';            expect_error "format" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["options"]["lr"] = "fast"';   expect_error "options: training option 'lr' has the wrong type" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["options"]["lr"] = -1';       expect_error "lr > 0" "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's["data"] = 5';                 expect_error '"data" must be a string' "$BIN" train --resume "$WORK/t"
tamper "$WORK/good" "$WORK/t" 's = [1]';                       expect_error "not a JSON object" "$BIN" train --resume "$WORK/t"
expect_error "steps 2 is below the checkpoint's step 4" "$BIN" train --resume "$WORK/good" --steps 2
# A checkpoint from before the guard (no consecutive_skips) still resumes.
tamper "$WORK/good" "$WORK/t" 'del s["consecutive_skips"]; del s["options"]["nonfinite"]; del s["options"]["max_skips"]'
"$BIN" train --resume "$WORK/t" --steps 5 > /dev/null 2>&1 || fail "an older train state does not resume"
ok "B train state validated"

# --- C. non-finite weights and snapshots -------------------------------------------------------------------
# poison FILE TENSOR: the tensor's first value becomes NaN.
poison() {
  /usr/bin/python3 - "$@" <<'PY'
import json, struct, sys
path, name = sys.argv[1], sys.argv[2]
data = bytearray(open(path, "rb").read())
n = struct.unpack("<Q", data[:8])[0]
start = 8 + n + json.loads(data[8:8 + n])[name]["data_offsets"][0]
data[start:start + 4] = struct.pack("<f", float("nan"))
open(path, "wb").write(bytes(data))
PY
}
# The last tensor of the file (any would do).
TENSOR=$(/usr/bin/python3 -c 'import json,struct,sys; f=open(sys.argv[1],"rb"); n=struct.unpack("<Q",f.read(8))[0]; h=json.loads(f.read(n)); print([k for k in h if k!="__metadata__"][-1])' "$WORK/good/checkpoint/model.safetensors")
cp -r "$WORK/good/checkpoint" "$WORK/nan"; poison "$WORK/nan/model.safetensors" "$TENSOR"
echo '[84, 104, 101, 32]' > "$WORK/ids.json"
expect_error "tensor '$TENSOR' holds non-finite values" "$BIN" score --model "$WORK/nan" --ids "$WORK/ids.json"
expect_error "tensor '$TENSOR' holds non-finite values" "$BIN" generate --model "$WORK/nan" --ids "$WORK/ids.json"
expect_error "tensor '$TENSOR' holds non-finite values" "$BIN" train --resume "$WORK/nan"
rm -rf "$WORK/nanm"; cp -r "$WORK/good" "$WORK/nanm"; poison "$WORK/nanm/checkpoint/train_state.safetensors" adamw.v
expect_error "AdamW moments hold non-finite values" "$BIN" train --resume "$WORK/nanm"
# A snapshot: magic, version, fingerprint, position, layer count (36 bytes), then layer 0's ssm array:
# its length (8 bytes) and its first value.
"$BIN" generate --model "$WORK/good/checkpoint" --ids "$WORK/ids.json" --max-tokens 2 --save-state "$WORK/s.bin" \
  > /dev/null 2>&1 || fail "save-state"
"$BIN" generate --model "$WORK/good/checkpoint" --load-state "$WORK/s.bin" --ids "$WORK/ids.json" --max-tokens 2 \
  > /dev/null 2>&1 || fail "load-state of a good snapshot"
/usr/bin/python3 - "$WORK/s.bin" <<'PY'
import struct, sys
data = bytearray(open(sys.argv[1], "rb").read())
assert struct.unpack("<Q", data[36:44])[0] > 0
data[44:48] = struct.pack("<f", float("inf"))
open(sys.argv[1], "wb").write(bytes(data))
PY
expect_error "state snapshot layer 0 holds non-finite values" "$BIN" generate --model "$WORK/good/checkpoint" \
  --load-state "$WORK/s.bin" --ids "$WORK/ids.json"
ok "C non-finite checkpoints and snapshots refused"

# --- D. failed writes leave no temporaries ------------------------------------------------------------------
trap '' XFSZ  # ignored in this shell and so in its children: an over-limit write fails with EFBIG
# limited KIB CMD...: CMD with files limited to KIB KiB; its stderr goes through a pipe (not limited).
limited() {
  local kib=$1; shift
  ( ulimit -f "$kib"; exec "$@" ) 2>&1 > /dev/null | cat >&2
}
# The model and the moments do not fit in 200 KiB; metrics.jsonl does.
"${T[@]}" --steps 2 --save-every 2 --out "$WORK/full" > /dev/null 2>&1 || fail "run before the full disk"
expect_error "write failed" limited 200 "$BIN" train --resume "$WORK/full" --steps 4
[[ ! -e "$WORK/full/checkpoint.tmp" ]] || fail "checkpoint.tmp left after a failed save"
[[ -z $(find "$WORK/full" -name '*.tmp') ]] || fail "a .tmp file was left: $(find "$WORK/full" -name '*.tmp')"
[[ $(state_field "$WORK/full/checkpoint/train_state.safetensors" step) == 2 ]] || fail "the good checkpoint was lost"
# Rewriting metrics.jsonl on resume fails too when nothing can be written.
expect_error "write failed" limited 0 "$BIN" train --resume "$WORK/full" --steps 4
[[ ! -e "$WORK/full/metrics.jsonl.tmp" ]] || fail "metrics.jsonl.tmp left after a failed write"
/usr/bin/python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); del c["train"]; json.dump(c, open(sys.argv[2], "w"))' \
  "$WORK/small.json" "$WORK/model.json"
expect_error "write failed" limited 100 "$BIN" init --config "$WORK/model.json" --out "$WORK/init"
[[ -z $(find "$WORK/init" -name '*.tmp') ]] || fail "init left a .tmp file"
# What a kill mid-save leaves is removed when the run resumes.
mkdir -p "$WORK/full/checkpoint.tmp"; echo junk > "$WORK/full/checkpoint.tmp/model.safetensors.tmp"
echo junk > "$WORK/full/metrics.jsonl.tmp"
"$BIN" train --resume "$WORK/full" --steps 3 > /dev/null 2>&1 || fail "resume after the disk was freed"
[[ ! -e "$WORK/full/checkpoint.tmp" && ! -e "$WORK/full/metrics.jsonl.tmp" ]] || fail "stale temporaries kept"
ok "D no temporaries after failed writes"

# --- E. the checkpoint carries its tokenizer -------------------------------------------------------------------
CK=$WORK/good/checkpoint  # trained on UTF-8 bytes
test -s "$CK/tokenizer.json" || fail "no tokenizer.json in a byte-trained checkpoint"
"$BIN" generate --model "$CK" --prompt "The " --max-tokens 8 --seed 1 --json > "$WORK/text.json" 2>/dev/null \
  || fail "generate --prompt from --model alone"
"$BIN" generate --model "$CK" --ids "$WORK/ids.json" --max-tokens 8 --seed 1 --json > "$WORK/ids.out" 2>/dev/null
/usr/bin/python3 - "$WORK/text.json" "$WORK/ids.out" <<'PY'
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert a["ids"] == b["ids"] and len(a["ids"]) == 8, (a, b)  # "The " is the bytes 84 104 101 32
assert a["text"] is not None
PY
# The byte tokenizer as --tokenizer: copied as it is; a vocab.json + merges.txt pair travels as that pair.
"${T[@]}" --steps 1 --tokenizer "$CK/tokenizer.json" --out "$WORK/tokrun" > /dev/null 2>&1 || fail "train --tokenizer"
cmp "$CK/tokenizer.json" "$WORK/tokrun/checkpoint/tokenizer.json" || fail "the tokenizer was not copied"
mkdir -p "$WORK/gpt2style"
/usr/bin/python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["model"]["vocab"], open(sys.argv[2], "w"))' \
  "$CK/tokenizer.json" "$WORK/gpt2style/vocab.json"
echo "#version: 0.2" > "$WORK/gpt2style/merges.txt"
"${T[@]}" --steps 1 --tokenizer "$WORK/gpt2style/vocab.json" --out "$WORK/tokrun2" > /dev/null 2>&1 || fail "train --tokenizer vocab.json"
cmp "$WORK/gpt2style/merges.txt" "$WORK/tokrun2/checkpoint/merges.txt" || fail "merges.txt was not copied"
"$BIN" generate --model "$WORK/tokrun2/checkpoint" --prompt "The " --max-tokens 2 > /dev/null 2>&1 || fail "generate (vocab.json)"
# An explicit --tokenizer wins over the checkpoint's (here a broken one).
cp -r "$CK" "$WORK/explicit"; echo '{' > "$WORK/explicit/tokenizer.json"
"$BIN" generate --model "$WORK/explicit" --tokenizer "$CK/tokenizer.json" --prompt "The " --max-tokens 2 > /dev/null 2>&1 \
  || fail "explicit --tokenizer"
# A checkpoint without a tokenizer (older builds, `init`) behaves as before: token ids only.
cp -r "$CK" "$WORK/old"; rm "$WORK/old/tokenizer.json"
expect_error "holds no tokenizer" "$BIN" generate --model "$WORK/old" --prompt "The "
"$BIN" generate --model "$WORK/old" --ids "$WORK/ids.json" --max-tokens 2 > /dev/null 2>&1 || fail "old checkpoint with --ids"
expect_error "tokenizer is needed" "$BIN" eval --model "$WORK/old" --tasks arc_easy --data "$WORK"
if [[ -d "$SHARED/data/eval" ]]; then
  "$BIN" eval --model "$CK" --tasks arc_easy --limit 2 --data "$SHARED/data" --quiet > "$WORK/eval.out" \
    || fail "eval from --model alone"
  grep -q "arc_easy" "$WORK/eval.out" || fail "eval table"
else
  echo "(no $SHARED/data: eval from --model alone not checked)"
fi
# serve: a text prompt is accepted (it needs a tokenizer).
/usr/bin/python3 - "$BIN" "$CK" <<'PY'
import http.client, json, signal, subprocess, sys, time
server = subprocess.Popen([sys.argv[1], "serve", "--model", sys.argv[2], "--port", "0", "--threads", "1"],
                          stderr=subprocess.PIPE, text=True)
try:
    port = None
    deadline = time.time() + 60
    while time.time() < deadline and port is None:
        line = server.stderr.readline()
        if not line:
            break
        if line.startswith("listening on http://127.0.0.1:"):
            port = int(line.strip().rsplit(":", 1)[1])
    assert port, "serve did not start"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps({"prompt": "The ", "max_tokens": 4, "temperature": 0}),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200, (r.status, body)
    assert isinstance(json.loads(body)["choices"][0]["text"], str), body
finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)
PY
ok "E tokenizer travels with the checkpoint"
bash -n "$SRC/scripts/demo.sh" || fail "demo.sh syntax"
echo "OK all"
