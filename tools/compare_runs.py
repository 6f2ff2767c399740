#!/usr/bin/python3
"""Compares two training runs: the largest absolute differences of their logged losses (metrics.jsonl) and of
their checkpoints' tensors (model.safetensors, train_state.safetensors: AdamW moments).

usage: compare_runs.py RUN_A RUN_B [--steps LO:HI] [--loss-tol X] [--weight-tol X] [--no-weights] [--exact]
Prints one line per quantity; exits 1 when a difference is above its tolerance (or, with --exact, non-zero).
"""
import argparse, json, struct, sys
import numpy as np


def metrics(run):
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        r = json.loads(line)
        out.setdefault(r["step"], {}).update({k: r[k] for k in ("loss", "val_loss", "grad_norm") if k in r})
    return out


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("a"), p.add_argument("b")
    p.add_argument("--steps", default=None, help="LO:HI, inclusive: compare the metrics of these steps only")
    p.add_argument("--loss-tol", type=float, default=1e-5)
    p.add_argument("--weight-tol", type=float, default=1e-4)
    p.add_argument("--no-weights", action="store_true")
    p.add_argument("--exact", action="store_true")
    args = p.parse_args()
    ma, mb = metrics(args.a), metrics(args.b)
    steps = sorted(set(ma) & set(mb))
    if args.steps:
        lo, hi = map(int, args.steps.split(":"))
        want = list(range(lo, hi + 1))
        missing = [s for s in want if s not in ma or s not in mb]
        assert not missing, f"steps {missing} are not in both runs"
        steps = want
    ok = True
    for key in ("loss", "val_loss", "grad_norm"):
        pairs = [(s, ma[s][key], mb[s][key]) for s in steps if key in ma[s] and key in mb[s]]
        if not pairs:
            continue
        d = max(abs(x - y) for _, x, y in pairs)
        worst = max(pairs, key=lambda t: abs(t[1] - t[2]))
        tol = 0 if args.exact else args.loss_tol * (10 if key == "grad_norm" else 1)
        print(f"  {key}: {len(pairs)} steps, largest |difference| {d:.3g} (step {worst[0]}), tolerance {tol:g}")
        ok &= d <= tol
    if not args.no_weights:
        for f in ("model.safetensors", "train_state.safetensors"):
            ta, tb = tensors(f"{args.a}/checkpoint/{f}"), tensors(f"{args.b}/checkpoint/{f}")
            assert ta.keys() == tb.keys(), (f, ta.keys() ^ tb.keys())
            d, where = 0.0, ""
            for k in ta:
                assert ta[k].shape == tb[k].shape, k
                dk = float(np.max(np.abs(ta[k].astype(np.float64) - tb[k]))) if ta[k].size else 0.0
                if dk > d or not where:
                    d, where = max(d, dk), k
            tol = 0 if args.exact else args.weight_tol
            print(f"  {f}: {len(ta)} tensors, largest |difference| {d:.3g} ({where}), tolerance {tol:g}")
            ok &= d <= tol
    sys.exit(0 if ok else 1)


main()
