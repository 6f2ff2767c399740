"""Oracle for the causal depthwise Conv1d + SiLU (src/ops/cpu/conv1d.h), via torch's Conv1d and autograd.

Inputs (float64): x [batch, seq, C], w [C, 1, W], bias [C], dy [batch, seq, C].
Outputs: y = silu(conv1d(x, w, bias, groups=C, padding=W-1)[..., :seq]), dx, dw, dbias = gradients of
sum(y * dy).
"""
import torch


def run(inputs, attrs):
    x = inputs["x"].clone().requires_grad_(True)
    w = inputs["w"].clone().requires_grad_(True)
    b = inputs["bias"].clone().requires_grad_(True)
    seq, channels, width = x.shape[1], x.shape[2], w.shape[2]
    pre = torch.nn.functional.conv1d(x.transpose(1, 2), w, b, padding=width - 1, groups=channels)[..., :seq]
    y = torch.nn.functional.silu(pre).transpose(1, 2)
    (y * inputs["dy"]).sum().backward()
    return {"y": y, "dx": x.grad, "dw": w.grad, "dbias": b.grad}
