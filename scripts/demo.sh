#!/usr/bin/env bash
# The main job on a built-in default: set up, build, train a tiny TransXSSM on the English texts of the
# Debian `fortunes` package (UTF-8 bytes as tokens), then print a generated sample and where the
# checkpoint and loss curve are. Extra arguments go to `transxssm train` (e.g. --steps 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
exec build/transxssm train --arch transxssm --size tiny --steps 600 --seq-len 256 --batch-size 8 \
  --lr 3e-3 --min-lr 3e-4 --warmup 50 --val-every 100 --save-every 100 --out runs/demo \
  --sample-tokens 300 --sample-prompt "The " "$@"
