#!/usr/bin/env bash
# End-to-end smoke study (`transxssm study`): two architectures, 20 steps each on a 200 KB text with a small
# BPE tokenizer, tiny lengths and eval limits. Checks:
#  1. an interrupted study continues: the first run dies at step 7 (fault injection), the rerun resumes the
#     half-finished architecture from its step-6 checkpoint and trains the other; a third run skips both;
#  2. results.json holds both architectures with parameter counts within 2% of the reference, and report.md
#     and its charts exist;
#  3. the report's numbers come from results.json: a number changed there appears in the re-rendered report
#     (`--report-only`), and the old one is gone.
set -euo pipefail
BIN=$1
SRC=$2
SHARED=${TRANSXSSM_SHARED_DIR:-$SRC/../shared}
DATA=$SHARED/data
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # 2 threads on a shared 2-core machine collapse OpenMP barriers
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c 200000 "$DATA/corpora/tinyshakespeare.txt" > "$WORK/train.txt"
ARGS=(study --out "$WORK/s" --archs transxssm,transformer --train-data "$WORK/train.txt" --vocab-size 384
      --tokens 2560 --seq-len 64 --batch-size 2 --lengths 64,128 --timing-steps 1 --decode-steps 2
      --tasks arc_easy,lambada_openai --eval-limit 3 --ppl-limit 2 --needle-depths 2 --data "$DATA")

# 1. Interrupted at step 7 of the first architecture, then continued, then nothing left to do.
if TRANSXSSM_TEST_FAULT=0:7:exit "$BIN" "${ARGS[@]}" > "$WORK/run1.out" 2>&1; then fail "the faulted run succeeded"; fi
[ -f "$WORK/s/runs/transxssm/checkpoint/train_state.safetensors" ] || fail "no checkpoint before the fault"
[ ! -e "$WORK/s/results.json" ] || fail "results.json written by an interrupted study"
"$BIN" "${ARGS[@]}" > "$WORK/run2.out" 2>&1 || { cat "$WORK/run2.out"; fail "study"; }
grep -q "transxssm: resuming at step 6 of 20" "$WORK/run2.out" || { cat "$WORK/run2.out"; fail "did not resume"; }
grep -q "study 2/2 transformer" "$WORK/run2.out" || fail "no progress line naming the architecture"
grep -q "estimated total wall time" "$WORK/run2.out" || fail "no estimate after the first architecture"
"$BIN" "${ARGS[@]}" > "$WORK/run3.out" 2>&1 || { cat "$WORK/run3.out"; fail "third study run"; }
[ "$(grep -c 'already trained (20 steps), skipped' "$WORK/run3.out")" = 2 ] || { cat "$WORK/run3.out"; fail "finished runs not skipped"; }
! grep -q "eval wikitext" "$WORK/run3.out" || fail "evaluation repeated"

# 2. Results and report.
python3 - "$WORK/s/results.json" <<'PY' || fail "results.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert set(r["archs"]) == {"transxssm", "transformer"}, r["archs"].keys()
ref = r["matching"]["reference_params"]
for a, x in r["archs"].items():
    assert abs(x["params"] - ref) / ref <= 0.02, (a, x["params"], ref)
    assert x["eval"]["params"] == x["params"]
    assert x["train"]["val_loss"] > 0 and x["curve"]["val"], a
    for t in ("wikitext", "ptb", "needle", "passkey", "arc_easy", "lambada_openai"):
        assert "metrics" in x["eval"]["tasks"][t], (a, t, x["eval"]["tasks"][t])
    assert [row["length"] for row in x["throughput"]] == [64, 128]
    assert all(row["train_tokens_per_s"] > 0 and row["decode_tokens_per_s"] > 0 and row["state_bytes"] > 0
               for row in x["throughput"])
# the transformer's KV cache grows with length, the hybrid's state much less
t = r["archs"]["transformer"]["throughput"]; h = r["archs"]["transxssm"]["throughput"]
assert t[1]["state_bytes"] > h[1]["state_bytes"]
PY
for f in report.md charts/loss.svg charts/train_tps.svg charts/state_memory.svg charts/needle_transxssm.svg; do
  [ -s "$WORK/s/$f" ] || fail "missing $f"
done
grep -q "## The paper's claims beside this study" "$WORK/s/report.md" || fail "no claims section"

# 3. Every number comes from results.json: change one, re-render, find it.
python3 - "$WORK/s/results.json" <<'PY'
import json, sys
p = sys.argv[1]; r = json.load(open(p))
r["archs"]["transformer"]["train"]["val_ppl"] = 987.125
r["archs"]["transformer"]["throughput"][0]["train_tokens_per_s"] = 4242.0
json.dump(r, open(p, "w"), indent=2)
PY
"$BIN" study --report-only --out "$WORK/s" > /dev/null || fail "--report-only"
grep -q "| transformer | [^|]* | [^|]* | 987.1 |" "$WORK/s/report.md" || { grep transformer "$WORK/s/report.md"; fail "changed val_ppl not in the report"; }
grep -q "| 64 | [^|]* | 4242 |" "$WORK/s/report.md" || fail "changed tokens/s not in the report"
echo "study smoke test passed"
