#!/usr/bin/env bash
# Tokenizer benchmark: encode throughput of ours vs the JavaScript oracle (npm @huggingface/tokenizers)
# on the Gutenberg corpus, then `transxssm prepare` on a ~40 MB corpus (wall time and peak memory).
#
#   tools/bench_tokenizer.sh [BUILD_DIR]      (default: build; needs bench/bench_tokenizer and transxssm)
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$SRC/build}")
DATA=$(realpath "${TRANSXSSM_SHARED_DIR:-$SRC/../shared}")/data
VERSION=0.2.0
NPM_DIR=/tmp/transxssm-npm-tokenizers-$VERSION
if [[ ! -f $NPM_DIR/node_modules/@huggingface/tokenizers/dist/tokenizers.mjs ]]; then
  mkdir -p "$NPM_DIR"
  (cd "$NPM_DIR" && npm install --no-audit --no-fund --loglevel=error "@huggingface/tokenizers@$VERSION" >/dev/null)
fi

echo "== encode throughput (GPT-NeoX-20B tokenizer) =="
"$BUILD/bench/bench_tokenizer" --tokenizer "$DATA/tokenizers/neox-20b.json" --corpus "$DATA/corpora/gutenberg"

echo
echo "== transxssm prepare: Gutenberg + Tiny Shakespeare + WikiText-2 (~40 MB) =="
OUT=$(mktemp -d /tmp/transxssm_bench_prepare.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
INPUTS=("$DATA/corpora/gutenberg" "$DATA/corpora/tinyshakespeare.txt" "$DATA/corpora/wikitext-2")
if [[ -x /usr/bin/time ]]; then
  /usr/bin/time -f "wall %e s, peak memory %M KB" "$BUILD/transxssm" prepare \
    --tokenizer "$DATA/tokenizers/neox-20b.json" --input "${INPUTS[@]}" --out "$OUT"
else
  time "$BUILD/transxssm" prepare --tokenizer "$DATA/tokenizers/neox-20b.json" --input "${INPUTS[@]}" --out "$OUT"
fi
