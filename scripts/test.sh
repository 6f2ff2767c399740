#!/usr/bin/env bash
# Sets up, builds and runs every test (GoogleTest kernels and model checks, the PyTorch reference
# comparison, the tokenizer oracle, end-to-end CLI runs). Tests run one at a time: each uses all cores.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure "$@"
