#!/usr/bin/env bash
# `transxssm serve` with lm-evaluation-harness's request format equals `transxssm eval` (test_eval_server.py).
set -euo pipefail
exec python3 "$2/tests/test_eval_server.py" "$1" "$2"
