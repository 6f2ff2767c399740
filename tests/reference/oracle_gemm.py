"""Oracle for gemm.h's linear_forward / linear_backward, differentiated by autograd.

Inputs (float64): x [rows, in], W [out, in] (PyTorch Linear layout), dy [rows, out].
Outputs: y = x Wᵀ, dx, dW = gradients of sum(y * dy).
"""
import torch


def run(inputs, attrs):
    x = inputs["x"].clone().requires_grad_(True)
    W = inputs["W"].clone().requires_grad_(True)
    y = torch.nn.functional.linear(x, W)
    (y * inputs["dy"]).sum().backward()
    return {"y": y, "dx": x.grad, "dW": W.grad}
