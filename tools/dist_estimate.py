#!/usr/bin/python3
"""Expected data-parallel scaling of the transxssm presets over N machines (docs/distributed.md).

Model of one step with a fixed global batch of T tokens on N machines:
  compute   t_c = 6 · P · (T / N) / R              R: one machine's sustained training FLOP/s (measured)
  traffic   each process sends (and receives) 2 · (N−1)/N · 4·P bytes per step: the ring all-reduce of the
            fp32 gradients (--zero1: reduce-scatter + all-gather, the same bytes)
  t_comm  = traffic / B                             B: each machine's network bandwidth (bytes/s)
  overlap   the buckets of the blocks (all but the tied embedding, whose gradient is final only at the very
            end of the backward pass) are reduced while the backward pass (≈ 2/3 of t_c) continues:
            exposed = max(0, t_comm·(1−e) − 2/3·t_c) + t_comm·e, e = embedding share of the parameters
  efficiency = t_c / (t_c + exposed)   (1.0 = linear scaling); without overlap: t_c / (t_c + t_comm)
usage: dist_estimate.py --flops R [--tokens T] [--nodes 2,4,8,16] [--gbit 10,100]
"""
import argparse


def params(d, inter, layers, heads, vocab, attn_period=8, attn_offset=7):
    ssd = 4 * d * d + heads * d + 2 * heads  # x, b, c (N = P), dt, out projections; A_log, dt_bias
    attn = 4 * d * d  # q, k, v, o (kv heads = heads)
    mlp = 3 * d * inter
    norms = 4 * d  # two RMSNorms, two residual scales
    n_attn = sum(1 for l in range(layers) if l % attn_period == attn_offset)
    blocks = (layers - n_attn) * (ssd + mlp + norms) + n_attn * (attn + mlp + norms)
    embed = vocab * d
    return blocks + embed + d, embed, (ssd + mlp + norms)


PRESETS = {
    "tiny (bytes)": params(256, 768, 8, 4, 256),
    "320m": params(1024, 2048, 32, 8, 50304),
    "1.3b": params(2048, 4096, 32, 16, 50304),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--flops", type=float, required=True, help="one machine's sustained training FLOP/s")
    p.add_argument("--tokens", type=float, default=2 ** 19, help="global tokens per step")
    p.add_argument("--nodes", default="2,4,8,16")
    p.add_argument("--gbit", default="10,100")
    a = p.parse_args()
    nodes = [int(x) for x in a.nodes.split(",")]
    gbits = [float(x) for x in a.gbit.split(",")]
    print(f"R = {a.flops / 1e12:.3g} TFLOP/s per machine, global batch {a.tokens:.0f} tokens/step\n")
    print("| preset | parameters | bucket (one block) | 1-machine step | N | MB sent per process per step | "
          + " | ".join(f"{g:g} Gbit/s: comm / efficiency (no overlap)" for g in gbits) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(gbits))
    for name, (P, embed, block) in PRESETS.items():
        if name.startswith("tiny"):
            continue
        t1 = 6 * P * a.tokens / a.flops
        for n in nodes:
            tc = t1 / n
            traffic = 2 * (n - 1) / n * 4 * P
            cells = []
            for g in gbits:
                tcomm = traffic / (g * 1e9 / 8)
                e = embed / P
                exposed = max(0.0, tcomm * (1 - e) - 2 / 3 * tc) + tcomm * e
                cells.append(f"{tcomm:.2f} s / {tc / (tc + exposed):.0%} ({tc / (tc + tcomm):.0%})")
            print(f"| {name} | {P / 1e6:.0f}M | {block * 4 / 1e6:.0f} MB | {t1:.0f} s | {n} | {traffic / 1e6:.0f} | "
                  + " | ".join(cells) + " |")


main()
