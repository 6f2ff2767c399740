#!/usr/bin/env bash
# CLI hardening: hostile input to score/generate/init/tokenize ends with a one-line `error:` message and
# exit status 1 (never a crash): 100,000 nested '[' as --ids or in config.json, --threads / TRANSXSSM_THREADS
# out of range.
set -euo pipefail
BIN=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRANSXSSM_THREADS=1
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$WORK/cfg.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64,
 "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16,
 "ssm_state_size": 16, "attn_layer_period": 2, "attn_layer_offset": 1, "max_position_embeddings": 64}
JSON
"$BIN" init --config "$WORK/cfg.json" --seed 1 --out "$WORK/model" > /dev/null
python3 -c 'print("[" * 100000)' > "$WORK/deep.json"
python3 -c 'print("[1, 2, " + "[" * 60 + "]" * 60 + "]")' > "$WORK/nested.json"
python3 -c 'print("[1, 2, \"" + "x" * 100000 + "\"]")' > "$WORK/long.json"
echo '[1, 2, 3]' > "$WORK/ids.json"

# expect_error PATTERN CMD...: exit status 1, one line on stderr containing PATTERN, no long echo.
expect_error() {
  local pattern=$1; shift
  local rc=0
  "$@" > "$WORK/out" 2> "$WORK/err" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$WORK/err" | head -c 500; fail "$* exited $rc (expected 1)"; }
  [ "$(wc -l < "$WORK/err")" -eq 1 ] || { head -c 500 "$WORK/err"; fail "$*: error is not one line"; }
  [ "$(wc -c < "$WORK/err")" -lt 400 ] || fail "$*: error message is $(wc -c < "$WORK/err") bytes"
  grep -q -- "$pattern" "$WORK/err" || { cat "$WORK/err"; fail "$*: error lacks '$pattern'"; }
}

expect_error "nested deeper than 64" "$BIN" score --model "$WORK/model" --ids "$WORK/deep.json"
expect_error "nested deeper than 64" "$BIN" generate --model "$WORK/model" --ids "$WORK/deep.json" --max-tokens 1
expect_error "must be integers" "$BIN" score --model "$WORK/model" --ids "$WORK/nested.json"
expect_error "must be non-negative integers" "$BIN" generate --model "$WORK/model" --ids "$WORK/nested.json" --max-tokens 1
expect_error "must be integers" "$BIN" score --model "$WORK/model" --ids "$WORK/long.json"

python3 - "$WORK/cfg.json" "$WORK/deepcfg.json" <<'PY'
import sys
s = open(sys.argv[1]).read().replace('"hidden_size": 32', '"hidden_size": ' + "[" * 100000)
open(sys.argv[2], "w").write(s)
PY
expect_error "nested deeper than 64" "$BIN" init --config "$WORK/deepcfg.json" --out "$WORK/m2"
sed 's/"hidden_size": 32/"hidden_size": 32.5/' "$WORK/cfg.json" > "$WORK/floatcfg.json"
expect_error "must be an integer" "$BIN" init --config "$WORK/floatcfg.json" --out "$WORK/m3"
sed 's/"hidden_size": 32/"hidden_size": 18446744073709551617/' "$WORK/cfg.json" > "$WORK/bigcfg.json"
expect_error "out of range" "$BIN" init --config "$WORK/bigcfg.json" --out "$WORK/m4"

expect_error "too many" "$BIN" score --model "$WORK/model" --ids "$WORK/ids.json" --threads 100000
expect_error "too many" "$BIN" score --model "$WORK/model" --ids "$WORK/ids.json" --threads 1025
expect_error "must not be negative" "$BIN" score --model "$WORK/model" --ids "$WORK/ids.json" --threads -1
expect_error "TRANSXSSM_THREADS = 100000 is too many" env TRANSXSSM_THREADS=100000 "$BIN" score --model "$WORK/model" --ids "$WORK/ids.json"
"$BIN" score --model "$WORK/model" --ids "$WORK/ids.json" --threads 1 > "$WORK/score.json" || fail "score"
grep -q logprobs "$WORK/score.json" || fail "score output"
echo "test_parsers_cli: ok"
