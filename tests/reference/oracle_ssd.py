"""Oracle for the SSD scan (spec section 4): the plain token-by-token recurrence in PyTorch, float64,
gradients by autograd. Independent of the C++ chunked kernel (no chunks, no quadratic form).

inputs: x [B,T,H,P], dt [B,T,H], A [H], B, C [B,T,G,N], dy [B,T,H,P]; optional D [H],
        init_state [B,H,P,N], dfinal_state [B,H,P,N].
outputs: y, final_state, dx, ddt, dA, dB, dC, and dD / dinit_state when D / init_state are given.
loss whose gradients are returned: sum(y * dy) + sum(final_state * dfinal_state).
"""
import torch


def run(inputs, attrs):
    names = ["x", "dt", "A", "B", "C"] + [k for k in ("D", "init_state") if k in inputs]
    leaves = {k: inputs[k].clone().requires_grad_(True) for k in names}
    x, dt, A, B, C = (leaves[k] for k in ("x", "dt", "A", "B", "C"))
    batch, seq, heads, head_dim = x.shape
    groups, state_dim = B.shape[2], B.shape[3]
    # head h reads group h // (H / G)
    Bh = B.repeat_interleave(heads // groups, dim=2)
    Ch = C.repeat_interleave(heads // groups, dim=2)

    if "init_state" in leaves:
        S = leaves["init_state"]
    else:
        S = torch.zeros(batch, heads, head_dim, state_dim, dtype=torch.float64)
    ys = []
    for t in range(seq):
        a = torch.exp(dt[:, t] * A)  # [B,H]
        S = a[:, :, None, None] * S + (dt[:, t, :, None] * x[:, t])[..., None] * Bh[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, Ch[:, t]))
    y = torch.stack(ys, dim=1) if seq else torch.zeros_like(x)
    if "D" in leaves:
        y = y + leaves["D"][None, None, :, None] * x

    loss = (y * inputs["dy"]).sum()
    if "dfinal_state" in inputs:
        loss = loss + (S * inputs["dfinal_state"]).sum()
    grads = torch.autograd.grad(loss, [leaves[k] for k in names], allow_unused=True)

    out = {"y": y, "final_state": S}
    for k, g in zip(names, grads):
        out["dinit_state" if k == "init_state" else "d" + k] = g if g is not None else torch.zeros_like(leaves[k])
    return out
