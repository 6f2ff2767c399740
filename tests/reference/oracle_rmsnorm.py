"""Oracle for RMSNorm (src/ops/cpu/rmsnorm.h), differentiated by autograd.

Inputs (float64): x [rows, dim], gain [dim], dy [rows, dim]; attrs: eps.
Outputs: y = gain * x / sqrt(mean(x^2) + eps), dx, dgain = gradients of sum(y * dy).
"""
import torch


def run(inputs, attrs):
    x = inputs["x"].clone().requires_grad_(True)
    g = inputs["gain"].clone().requires_grad_(True)
    rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + attrs["eps"])
    y = g * (x / rms)
    (y * inputs["dy"]).sum().backward()
    return {"y": y, "dx": x.grad, "dgain": g.grad}
