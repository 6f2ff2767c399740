"""Oracle for rotate-half RoPE (src/ops/cpu/rope.h), written as a complex rotation.

Inputs (float64): x [rows, heads, D], pos [rows] (integers as float64); attrs: theta.
The kernel stores cos/sin as float32 (angles computed in double); the oracle rounds them the same way,
but builds the rotation differently: as multiplication of z = x[:D/2] + i·x[D/2:] by exp(i·t·ω).
Outputs: y = rot(x, pos), yinv = rot(x, −pos) (the kernel's inverse / backward).
"""
import torch


def run(inputs, attrs):
    x, pos = inputs["x"], inputs["pos"]
    d = x.shape[-1]
    half = d // 2
    omega = attrs["theta"] ** (-2.0 * torch.arange(half, dtype=torch.float64) / d)
    angle = pos[:, None] * omega[None, :]                     # [rows, D/2], in double
    c = torch.cos(angle).float().double()[:, None, :]         # stored as float32 by the kernel
    s = torch.sin(angle).float().double()[:, None, :]
    z = torch.complex(x[..., :half], x[..., half:])
    out = {}
    for name, sign in (("y", 1.0), ("yinv", -1.0)):
        r = z * torch.complex(c, sign * s)
        out[name] = torch.cat([r.real, r.imag], dim=-1)
    return out
