#!/usr/bin/env bash
# The main job on a built-in default: set up, build, train a tiny TransXSSM on the English texts of the
# Debian `fortunes` package (UTF-8 bytes as tokens), then print a generated sample, where the checkpoint
# and loss curve are, and the commands that use the checkpoint (it carries its tokenizer, so --model is
# enough). Extra arguments go to `transxssm train` (e.g. --steps 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
build/transxssm train --arch transxssm --size tiny --steps 600 --seq-len 256 --batch-size 8 \
  --lr 3e-3 --min-lr 3e-4 --warmup 50 --val-every 100 --save-every 100 --out runs/demo \
  --sample-tokens 300 --sample-prompt "The " "$@"
# The run directory: the last --out given (train takes the last value of a repeated flag).
OUT=runs/demo
args=("$@")
for ((i = 0; i < ${#args[@]}; ++i)); do
  case ${args[i]} in
    --out) OUT=${args[i + 1]:-$OUT} ;;
    --out=*) OUT=${args[i]#--out=} ;;
  esac
done
CK=$OUT/checkpoint
cat <<MSG

Use the model:
  build/transxssm generate --model $CK --prompt "The " --max-tokens 200 --temperature 0.8 --top-k 40
  build/transxssm serve --model $CK --port 8080    # OpenAI-compatible: POST /v1/completions
  build/transxssm eval --model $CK --tasks hellaswag,arc_easy --limit 200    # needs the shared data (--data)
  build/transxssm train --resume $OUT --steps 1200    # train further
MSG
