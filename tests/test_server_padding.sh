#!/usr/bin/env bash
# Padding ids (model vocabulary > tokenizer's) are never sampled; the server survives (see the .py).
# Usage: test_server_padding.sh BINARY SOURCE_DIR
set -euo pipefail
exec python3 "$2/tests/test_server_padding.py" "$1" "$2"
