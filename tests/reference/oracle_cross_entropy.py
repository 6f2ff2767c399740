"""Oracle for the fused LM head + cross-entropy (src/ops/cpu/cross_entropy.h): the full logits matrix,
torch's cross_entropy with ignore_index=-1, autograd.

Inputs (float64): h [rows, dim], W [vocab, dim], targets [rows] (as float64, -1 = none); attrs: grad_scale.
Outputs: loss_sum, target_logprob [rows] (0 where no target), dh, dW = gradients of grad_scale * loss_sum.
"""
import torch
import torch.nn.functional as F


def run(inputs, attrs):
    h = inputs["h"].clone().requires_grad_(True)
    W = inputs["W"].clone().requires_grad_(True)
    t = inputs["targets"].long()
    logits = h @ W.t()
    loss_sum = F.cross_entropy(logits, t, ignore_index=-1, reduction="sum")
    (attrs["grad_scale"] * loss_sum).backward()
    logp = torch.log_softmax(logits.detach(), dim=-1)
    tl = torch.where(t >= 0, logp.gather(1, t.clamp(min=0)[:, None])[:, 0], torch.zeros(()).double())
    return {"loss_sum": loss_sum.reshape(1), "target_logprob": tl, "dh": h.grad, "dW": W.grad}
