#!/usr/bin/env bash
# Tokenizer oracle test: `transxssm tokenize` must agree id-for-id with Hugging Face's JavaScript
# tokenizers (npm @huggingface/tokenizers, an independent implementation) on every corpus, eval and
# haystack file of shared/data, with GPT-NeoX-20B and with GPT-2 (vocab.json + merges.txt); on a
# random multilingual text; and on a tokenizer that `transxssm tokenizer train` wrote, which the oracle
# must load. Also checks detokenize(tokenize(x)) == x through the CLI.
#
#   bash tests/test_tokenizer_oracle.sh <transxssm binary> <source dir>
#
# The npm package is installed once into /tmp/transxssm-npm-tokenizers-<version> (override with
# TRANSXSSM_NPM_DIR); the oracle's ids are cached there by (package version, tokenizer, text) hash, so
# only the first run pays for the JavaScript encoder (~0.7 MB/s, about 2.5 minutes on 2 cores).
set -euo pipefail
BIN=$(realpath "$1")
SRC=$(realpath "$2")
DATA=$(realpath "${TRANSXSSM_SHARED_DIR:-$SRC/../shared}")/data
VERSION=0.2.0
NPM_DIR=${TRANSXSSM_NPM_DIR:-/tmp/transxssm-npm-tokenizers-$VERSION}
MODULE=$NPM_DIR/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs
ORACLE=$SRC/tests/reference/tokenizer_oracle.mjs

command -v node >/dev/null || { echo "FAIL: node is required (scripts/setup.sh)"; exit 1; }
if [[ ! -f $MODULE ]]; then
  mkdir -p "$NPM_DIR"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "@huggingface/tokenizers@$VERSION" >/dev/null)
fi
[[ -f $MODULE ]] || { echo "FAIL: npm install @huggingface/tokenizers@$VERSION did not produce $MODULE"; exit 1; }

WORK=$(mktemp -d /tmp/transxssm_tokenizer_oracle.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CACHE=$NPM_DIR/ids-cache
NEOX=$DATA/tokenizers/neox-20b.json
GPT2_DIR=$DATA/tokenizers/gpt2

cd "$DATA"
mapfile -t FILES < <(find corpora eval haystack -type f | LC_ALL=C sort)
node "$ORACLE" --random-text "$WORK/random.txt" 20240607 400000
FILES+=("$WORK/random.txt")
echo "comparing ${#FILES[@]} files with @huggingface/tokenizers $VERSION"

# Our ids: one process per tokenizer, one JSON array per file.
"$BIN" tokenize --tokenizer "$NEOX" --input "${FILES[@]}" --out "$WORK/neox.jsonl"
"$BIN" tokenize --tokenizer "$GPT2_DIR" --input "${FILES[@]}" --out "$WORK/gpt2.jsonl"

# The oracle, both tokenizers side by side (one core each).
status=0
node "$ORACLE" --module "$MODULE" --tokenizer "$NEOX" --name neox --ours "$WORK/neox.jsonl" --cache "$CACHE" \
  "${FILES[@]}" >"$WORK/neox.log" 2>&1 &
neox_pid=$!
node "$ORACLE" --module "$MODULE" --tokenizer "$GPT2_DIR/vocab.json,$GPT2_DIR/merges.txt" --name gpt2 \
  --ours "$WORK/gpt2.jsonl" --cache "$CACHE" "${FILES[@]}" >"$WORK/gpt2.log" 2>&1 &
gpt2_pid=$!
wait $neox_pid || status=1
wait $gpt2_pid || status=1
grep -v '^ok ' "$WORK/neox.log" "$WORK/gpt2.log" || true

# A tokenizer we train must load in the oracle and encode identically.
TRAIN_FILES=(corpora/tinyshakespeare.txt corpora/wikitext-2/valid.txt corpora/ptb/ptb.valid.txt
  haystack/paul_graham_essays.txt)
"$BIN" tokenizer train --vocab-size 3000 --input "${TRAIN_FILES[@]}" --out "$WORK/trained.json" >/dev/null
CHECK_FILES=(corpora/tinyshakespeare.txt corpora/wikitext-2/test.txt eval/piqa/valid.jsonl
  eval/triviaqa/triviaqa_sm_sub.jsonl corpora/gutenberg/dracula.txt "$WORK/random.txt")
"$BIN" tokenize --tokenizer "$WORK/trained.json" --input "${CHECK_FILES[@]}" --out "$WORK/trained.jsonl"
node "$ORACLE" --module "$MODULE" --tokenizer "$WORK/trained.json" --name trained --ours "$WORK/trained.jsonl" \
  --cache "$CACHE" \
  "${CHECK_FILES[@]}" >"$WORK/trained.log" 2>&1 || status=1
grep -v '^ok ' "$WORK/trained.log" || true

# Added-token flags: NeoX plus an lstrip/rstrip special token and a normalized (NFC-matched) token.
node -e '
const fs = require("fs");
const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
j.added_tokens.push({id: 50277, content: "<mask>", special: true, normalized: false, lstrip: true, rstrip: true,
                     single_word: false});
j.added_tokens.push({id: 50278, content: "caf\u00e9", special: false, normalized: true, lstrip: false,
                     rstrip: false, single_word: false});
fs.writeFileSync(process.argv[2], JSON.stringify(j));
fs.writeFileSync(process.argv[3], "a  <mask>  b <mask>\n\nx<mask>y  cafe\u0301 and caf\u00e9, <|endoftext|>   <mask>");
' "$NEOX" "$WORK/flags.json" "$WORK/flags.txt"
"$BIN" tokenize --tokenizer "$WORK/flags.json" --input "$WORK/flags.txt" corpora/tinyshakespeare.txt \
  --out "$WORK/flags.jsonl"
node "$ORACLE" --module "$MODULE" --tokenizer "$WORK/flags.json" --name flags --ours "$WORK/flags.jsonl" \
  --cache "$CACHE" "$WORK/flags.txt" corpora/tinyshakespeare.txt >"$WORK/flags.log" 2>&1 || status=1
grep -v '^ok ' "$WORK/flags.log" || true

# Round trip through the CLI: detokenize(tokenize(x)) == x, byte for byte.
for f in corpora/tinyshakespeare.txt eval/triviaqa/triviaqa_sm_sub.jsonl corpora/gutenberg/jane_eyre.txt \
  "$WORK/random.txt"; do
  for tok in "$NEOX" "$GPT2_DIR"; do
    "$BIN" tokenize --tokenizer "$tok" --input "$f" --out "$WORK/ids.json"
    "$BIN" detokenize --tokenizer "$tok" --ids "$WORK/ids.json" --out "$WORK/back.txt"
    if cmp -s "$f" "$WORK/back.txt"; then
      echo "ok   round trip $(basename "$tok") $f"
    else
      echo "FAIL round trip $(basename "$tok") $f"
      status=1
    fi
  done
done

if [[ $status -eq 0 ]]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit $status
