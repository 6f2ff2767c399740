#!/usr/bin/env bash
# Server limits, cancellation on disconnect, time limit, chunked prefill, shutdown (see the .py).
# Usage: test_server_limits.sh BINARY SOURCE_DIR
set -euo pipefail
exec python3 "$2/tests/test_server_limits.py" "$1" "$2"
