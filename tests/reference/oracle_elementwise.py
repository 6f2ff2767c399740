"""Oracle for the pointwise kernels (src/ops/cpu/elementwise.h), differentiated by autograd.

Inputs (float64), all optional groups:
  silu_mul: gate, up, dout [rows, n]        -> silu_out, dgate, dup
  residual: skip, res_w [dim], branch, res_dout [rows, dim] -> res_out, dskip, dres_w
  softplus: raw [rows, H], dt_bias [H], ddt [rows, H]        -> dt, draw, ddt_bias
  embedding: ids [rows] (as float64), table [vocab, dim], emb_dout [rows, dim] -> emb_out, dtable
Gradients are those of sum(output * d<output>).
"""
import torch
import torch.nn.functional as F


def _leaves(inputs, names):
    return [inputs[n].clone().requires_grad_(True) for n in names]


def run(inputs, attrs):
    out = {}
    if "gate" in inputs:
        gate, up = _leaves(inputs, ["gate", "up"])
        y = F.silu(gate) * up
        (y * inputs["dout"]).sum().backward()
        out.update(silu_out=y, dgate=gate.grad, dup=up.grad)
    if "skip" in inputs:
        skip, w = _leaves(inputs, ["skip", "res_w"])
        y = skip * w + inputs["branch"]
        (y * inputs["res_dout"]).sum().backward()
        out.update(res_out=y, dskip=skip.grad, dres_w=w.grad)
    if "raw" in inputs:
        raw, bias = _leaves(inputs, ["raw", "dt_bias"])
        dt = F.softplus(raw + bias)
        (dt * inputs["ddt"]).sum().backward()
        out.update(dt=dt, draw=raw.grad, ddt_bias=bias.grad)
    if "ids" in inputs:
        (table,) = _leaves(inputs, ["table"])
        y = F.embedding(inputs["ids"].long(), table)
        (y * inputs["emb_dout"]).sum().backward()
        out.update(emb_out=y, dtable=table.grad)
    return out
