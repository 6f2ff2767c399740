"""Oracle for the causal attention kernel (src/ops/cpu/attention.h), materialised and differentiated by autograd.

Inputs (float64): q [B, Tq, H, P], k and v [B, Tk, Hkv, P], dout [B, Tq, H, P].
Query t sits at key position t + (Tk - Tq) and sees keys 0 .. t + (Tk - Tq); query head h reads kv head
h // (H // Hkv). Outputs: out [B, Tq, H, P], lse [B, H, Tq] (log-sum-exp of the scaled, masked scores) and
dq, dk, dv = gradients of sum(out * dout).
"""
import math

import torch


def run(inputs, attrs):
    q = inputs["q"].clone().requires_grad_(True)
    k = inputs["k"].clone().requires_grad_(True)
    v = inputs["v"].clone().requires_grad_(True)
    dout = inputs["dout"]
    _, tq, h, p = q.shape
    tk, hkv = k.shape[1], k.shape[2]
    group = h // hkv

    # [B, heads, T, P]; every query head of a group reads the same kv head.
    qh = q.transpose(1, 2)
    kh = k.transpose(1, 2).repeat_interleave(group, dim=1)
    vh = v.transpose(1, 2).repeat_interleave(group, dim=1)

    scores = qh @ kh.transpose(-1, -2) / math.sqrt(p)  # [B, H, Tq, Tk]
    query_pos = torch.arange(tq).unsqueeze(1) + (tk - tq)
    key_pos = torch.arange(tk).unsqueeze(0)
    scores = scores.masked_fill(key_pos > query_pos, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)  # [B, H, Tq]
    out = (torch.softmax(scores, dim=-1) @ vh).transpose(1, 2)  # [B, Tq, H, P]

    out.backward(dout)
    return {"out": out, "lse": lse, "dq": q.grad, "dk": k.grad, "dv": v.grad}
