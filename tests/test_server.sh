#!/usr/bin/env bash
# The OpenAI-compatible server over real HTTP (see test_server.py). Usage: test_server.sh BINARY SOURCE_DIR
set -euo pipefail
exec python3 "$2/tests/test_server.py" "$1" "$2"
