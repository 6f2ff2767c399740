#!/usr/bin/env bash
# Inference on the GPU equals the CPU's (see test_gpu_infer.py). Usage: test_gpu_infer.sh BINARY SOURCE_DIR
exec python3 "$2/tests/test_gpu_infer.py" "$1" "$2"
