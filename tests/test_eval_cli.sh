#!/usr/bin/env bash
# End-to-end checks of `transxssm eval` on a small random checkpoint with the NeoX vocabulary:
#  1. a few items of several tasks give a JSON results file (metric, value, stderr, n, settings per task),
#     a Markdown table on stdout and a needle heatmap SVG;
#  2. the model scorer and the engine scorer (prefix reuse) give the same numbers;
#  3. bad input ends with a one-line `error:` message and exit status 1.
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
DATA=$SHARED/data
TOK=$DATA/tokenizers/neox-20b.json
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export TRANSXSSM_THREADS=${TRANSXSSM_THREADS:-2}
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$WORK/cfg.json" <<'JSON'
{"arch": "transxssm", "size": "tiny", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "ssm_state_size": 32,
 "attn_layer_period": 2, "attn_layer_offset": 1, "max_position_embeddings": 256}
JSON
"$BIN" init --config "$WORK/cfg.json" --seed 4 --out "$WORK/model" > /dev/null

TASKS=arc_easy,hellaswag,winogrande,mmlu,lambada_openai,triviaqa,ptb,needle
COMMON=(--model "$WORK/model" --tokenizer "$TOK" --data "$DATA" --limit 3 --num-fewshot 2 --max-gen-toks 4
        --ppl-context 128 --needle-lengths 96,160,320 --needle-depths 3)
for scorer in model engine; do
  "$BIN" eval "${COMMON[@]}" --tasks "$TASKS" --scorer $scorer --out "$WORK/$scorer.json" \
    --needle-svg "$WORK/$scorer.svg" > "$WORK/$scorer.md" 2> "$WORK/$scorer.err" || { cat "$WORK/$scorer.err"; fail "eval --scorer $scorer"; }
done
cat "$WORK/engine.md"
grep -q '^| Task | Metric | Value |' "$WORK/engine.md" || fail "no Markdown table"
grep -q '^| winogrande | acc |' "$WORK/engine.md" || fail "winogrande row missing"
grep -q 'requests' "$WORK/engine.err" || fail "no progress line on stderr"
head -c 4 "$WORK/engine.svg" | grep -q '<svg' || fail "needle heatmap is not an SVG"

/usr/bin/python3 - "$WORK/model.json" "$WORK/engine.json" <<'PY'
import json, math, sys
m, e = (json.load(open(p)) for p in sys.argv[1:3])
want = {"arc_easy": ["acc", "acc_norm"], "hellaswag": ["acc", "acc_norm"], "winogrande": ["acc"], "mmlu": ["acc"],
        "lambada_openai": ["perplexity", "acc"], "triviaqa": ["exact_match"],
        "ptb": ["word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity"], "needle": ["answer_prob"]}
for task, metrics in want.items():
    for r in (m, e):
        t = r["results"][task]
        assert sorted(t["metrics"]) == sorted(metrics), (task, t["metrics"])
        assert "settings" in t and "n" in t and t["n"] > 0, task
        for k, v in t["metrics"].items():
            assert math.isfinite(v["value"]), (task, k, v)
            assert "stderr" in v, (task, k)
    for k in metrics:
        a, b = m["results"][task]["metrics"][k]["value"], e["results"][task]["metrics"][k]["value"]
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), f"{task} {k}: model scorer {a} vs engine scorer {b}"
assert m["results"]["mmlu"]["settings"]["num_fewshot"] == 2
assert m["results"]["arc_easy"]["settings"]["num_fewshot"] == 0 and "note" in m["results"]["arc_easy"]["settings"]
assert m["results"]["arc_easy"]["n"] == 3 and m["results"]["ptb"]["settings"]["lines"] == 3
assert len(m["results"]["needle"]["grid"]) == 3 and len(m["results"]["needle"]["grid"][0]) == 3
assert m["settings"]["scorer"] == "model" and e["settings"]["scorer"] == "engine"
print("model and engine scorers agree on", ", ".join(want))
PY

# --- bad input -------------------------------------------------------------------------------------------
expect_error() {
  local what=$1; shift
  set +e
  "$@" > "$WORK/bad.out" 2> "$WORK/bad.err"
  local rc=$?
  set -e
  [ $rc -eq 1 ] || fail "$what: exit status $rc"
  grep -q '^error: ' "$WORK/bad.err" || fail "$what: no error line"
  [ "$(wc -l < "$WORK/bad.err")" -eq 1 ] || fail "$what: more than one line on stderr"
}
expect_error "unknown task" "$BIN" eval --model "$WORK/model" --tokenizer "$TOK" --data "$DATA" --tasks nope
expect_error "bad needle lengths" "$BIN" eval --model "$WORK/model" --tokenizer "$TOK" --data "$DATA" --tasks needle --needle-lengths 64,x
expect_error "missing data" "$BIN" eval --model "$WORK/model" --tokenizer "$TOK" --data "$WORK/none" --tasks arc_easy
expect_error "missing model" "$BIN" eval --model "$WORK/none" --tokenizer "$TOK" --data "$DATA" --tasks arc_easy
echo "OK"
