#!/usr/bin/env bash
# End-to-end comparison of the engine (init, grads, score) with the float64 PyTorch reference model.
# Usage: bash tests/test_reference.sh <transxssm-binary> <source-dir>
set -euo pipefail
binary="$1"
src="$2"
# The python3 first on PATH may lack torch; the Debian one has it.
py=/usr/bin/python3
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
# First the reference checks itself (recurrent vs quadratic scan, RoPE, autograd vs finite differences).
"$py" "$src/tests/reference/transxssm_ref.py" --selftest
"$py" "$src/tests/reference/compare_engine.py" --binary "$binary"
