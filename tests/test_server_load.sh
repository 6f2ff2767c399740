#!/usr/bin/env bash
# Bounded, seeded load test: the server stays responsive and bounded (see the .py).
# Usage: test_server_load.sh BINARY SOURCE_DIR
set -euo pipefail
exec python3 "$2/tests/test_server_load.py" "$1" "$2"
