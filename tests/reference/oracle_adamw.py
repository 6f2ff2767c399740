"""Oracle for the AdamW step (src/ops/cpu/adamw.h): torch.optim.AdamW in float64.

Inputs: w, m, v [n] (the state before the first step), grads [steps, n]; attrs: lr, beta1, beta2, eps,
weight_decay, step (1-based step of the first update; m and v are the moments after step − 1 updates).
Outputs: w, m, v after all steps.
"""
import torch


def run(inputs, attrs):
    w = torch.nn.Parameter(inputs["w"].clone())
    opt = torch.optim.AdamW([w], lr=attrs["lr"], betas=(attrs["beta1"], attrs["beta2"]), eps=attrs["eps"],
                            weight_decay=attrs["weight_decay"])
    # Resume from the given moments, as a restored optimizer would.
    opt.state[w] = {"step": torch.tensor(float(attrs["step"] - 1)), "exp_avg": inputs["m"].clone(),
                    "exp_avg_sq": inputs["v"].clone()}
    for g in inputs["grads"]:
        w.grad = g.clone()
        opt.step()
    st = opt.state[w]
    return {"w": w.detach(), "m": st["exp_avg"], "v": st["exp_avg_sq"]}
