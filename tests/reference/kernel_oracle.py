"""Kernel oracle: python3 kernel_oracle.py KERNEL IN.safetensors OUT.safetensors

Loads float64 inputs (attributes as JSON in the metadata key "attrs"), runs
oracle_<KERNEL>.run(inputs, attrs) -> dict of tensors (an independent PyTorch formulation, usually
with autograd for the gradients) and writes the result as float64.
"""
import importlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

import safetensors_io  # noqa: E402


def main():
    kernel, src, dst = sys.argv[1:4]
    torch.set_num_threads(1)
    inputs, meta = safetensors_io.load(src)
    attrs = json.loads(meta.get("attrs", "{}"))
    module = importlib.import_module("oracle_" + kernel)
    outputs = module.run({k: v.to(torch.float64) for k, v in inputs.items()}, attrs)
    safetensors_io.save(dst, {k: v.detach().to(torch.float64) for k, v in outputs.items()})


if __name__ == "__main__":
    main()
