"""Oracle for the evaluation scorer: the lm-evaluation-harness's loglikelihood of (context, continuation)
requests, computed with the float64 PyTorch reference model (transxssm_ref.py) on a checkpoint.

inputs: context [R, Tc] and continuation [R, Tk] token ids, right-padded with -1.
attrs: checkpoint (directory), max_len (the model's window).
outputs: logprob [R] = sum of log p(continuation tokens), greedy [R] = 1 if every continuation token is the
argmax, as the harness's HFLM._loglikelihood_tokens defines them:
    inp = (context + continuation)[-(max_len + 1):][:-1]
    logits = model(inp)[-len(continuation):]
"""
import torch

import transxssm_ref as ref


def run(inputs, attrs):
    cfg, params = ref.load_checkpoint(attrs["checkpoint"])
    max_len = int(attrs["max_len"])
    logprob, greedy = [], []
    for ctx_row, cont_row in zip(inputs["context"], inputs["continuation"]):
        ctx = [int(t) for t in ctx_row if t >= 0]
        cont = [int(t) for t in cont_row if t >= 0]
        whole = (ctx + cont)[-(max_len + 1):]
        inp = whole[:-1]
        with torch.no_grad():
            logits = ref.forward(cfg, params, torch.tensor([inp]))[0]
        logp = torch.log_softmax(logits[-len(cont):], dim=-1)
        target = torch.tensor(cont)
        logprob.append(logp.gather(-1, target[:, None]).sum())
        greedy.append(float(bool((logp.argmax(-1) == target).all())))
    return {"logprob": torch.stack(logprob).to(torch.float64), "greedy": torch.tensor(greedy, dtype=torch.float64)}
