#!/usr/bin/env python3
"""Before/after benchmark of two builds on one machine: runs bench_train and bench_infer of build A and build B
alternately (A B A B ...), several rounds, and prints the median tokens/s of each row and the ratio B/A.
The machines are shared and noisy: check `uptime` first; alternation keeps slow drifts out of the ratio.

  tools/bench_ab.py --a OLD_BENCH_DIR --b NEW_BENCH_DIR [--rounds 3] [--out DIR]

Each BENCH_DIR holds bench_train and bench_infer (a build's build/bench). Arguments after `--train` /
`--infer` are passed to that bench (defaults: the README's commands without the PyTorch peer).
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

p = argparse.ArgumentParser()
p.add_argument("--a", required=True)
p.add_argument("--b", required=True)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--out", default=None)
p.add_argument("--train", default="--steps 2 --no-peer")
p.add_argument("--infer", default="--only d512 --contexts 512,2048,4096 --batches 1 --threads 1")
args = p.parse_args()
out = args.out or tempfile.mkdtemp(prefix="bench_ab.")
os.makedirs(out, exist_ok=True)
env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")

def run(side, bench, extra, r):
    path = os.path.join(out, f"{bench}.{side}.{r}.json")
    cmd = [os.path.join(getattr(args, side), bench)] + extra.split() + ["--json", path]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(path) as f:
        return json.load(f)

rows = {}  # (bench, key, metric) -> {"a": [...], "b": [...]}
for r in range(args.rounds):
    for side in ("a", "b") if r % 2 == 0 else ("b", "a"):
        for row in run(side, "bench_train", args.train, r):
            k = ("train", f'{row["model"]} {row["seq"]} {row["arch"]}', "tokens/s")
            rows.setdefault(k, {"a": [], "b": []})[side].append(row["tokens_per_s"])
        for row in run(side, "bench_infer", args.infer, r):
            key = f'{row.get("shape", "")} {row["arch"]} ctx {row["context"]} b{row["batch"]} t{row["threads"]}'
            for m in ("prefill_tokens_per_s", "decode_tokens_per_s"):
                rows.setdefault(("infer", key, m.replace("_tokens_per_s", " tokens/s")), {"a": [], "b": []})[side].append(row[m])

print(f"\nmedians over {args.rounds} rounds (A = {args.a}, B = {args.b}); raw JSON in {out}")
print(f'{"bench":6} {"case":44} {"metric":18} {"A":>9} {"B":>9} {"B/A":>6}')
for (bench, key, metric), v in rows.items():
    a, b = statistics.median(v["a"]), statistics.median(v["b"])
    print(f"{bench:6} {key:44} {metric:18} {a:9.1f} {b:9.1f} {b / a:6.3f}")
