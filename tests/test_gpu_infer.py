"""Greedy generation and the server on the GPU (--device cuda) give the CPU's output.

Two small models are trained for 300 steps on Tiny Shakespeare on the CPU (a TransXSSM with head dim 64 and
grouped-query attention, a Transformer with head dim 128), then for each:
  - `generate --temperature 0` of 48 tokens from 4 prompts on the CPU and on the GPU: in fp32 the token ids are
    identical; with --precision bf16 at least 90% of the positions agree (bf16 products accumulate in a different
    order on each device, so a near-tie may flip; the agreement is printed);
  - `serve` on each device answers the same greedy /v1/completions requests (batched together) with the same text
    in fp32.
Skipped (exit 77) where the CUDA backend cannot run (`transxssm devices --require cuda`). TRANSXSSM_TEST_DEVICE=cpu
runs the "GPU" side on the CPU: a dry run of this script's own logic on a machine without a GPU.
Usage: test_gpu_infer.py BINARY SOURCE_DIR"""
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BINARY, SOURCE = sys.argv[1], sys.argv[2]
SHARED = os.environ.get("TRANSXSSM_SHARED_DIR", os.path.join(SOURCE, "..", "shared"))
DEVICE = os.environ.get("TRANSXSSM_TEST_DEVICE", "cuda")
PROMPTS = ["ROMEO:", "First Citizen:\nWe are", "KING RICHARD III:", "To be, or not to be"]
MODELS = {
    "transxssm": {"arch": "transxssm", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
                  "num_attention_heads": 4, "num_key_value_heads": 2, "attn_layer_period": 2,
                  "attn_layer_offset": 1, "ssm_chunk_size": 64},
    "transformer": {"arch": "transformer", "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
                    "num_attention_heads": 2, "num_key_value_heads": 2},
}


def run(*args, **kw):
    r = subprocess.run([BINARY, *args], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"FAIL: transxssm {' '.join(args)}\n{r.stdout}\n{r.stderr}")
    return r.stdout


def generate(model, prompt, device, precision):
    out = run("generate", "--model", model, "--prompt", prompt, "--max-tokens", "48", "--temperature", "0",
              "--ignore-eos", "--json", "--device", device, "--precision", precision)
    return json.loads(out)


def start_server(model, device):
    server = subprocess.Popen([BINARY, "serve", "--model", model, "--port", "0", "--device", device,
                               "--max-batch", "8"], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = server.stderr.readline()
        if not line:
            break
        if line.startswith("listening on http://127.0.0.1:"):
            return server, int(line.strip().rsplit(":", 1)[1])
    server.kill()
    sys.exit(f"FAIL: serve --device {device} did not report its port")


def complete(port, prompt):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    conn.request("POST", "/v1/completions", body=json.dumps({"prompt": prompt, "max_tokens": 32, "temperature": 0}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    if resp.status != 200:
        sys.exit(f"FAIL: /v1/completions answered {resp.status}: {body}")
    return body["choices"][0]["text"]


def serve_all(model, device):
    server, port = start_server(model, device)
    try:
        with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:  # concurrent: one decode batch
            return list(pool.map(lambda p: complete(port, p), PROMPTS))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main():
    why = subprocess.run([BINARY, "devices", "--require", DEVICE], capture_output=True, text=True)
    if why.returncode != 0:
        print("SKIPPED:", (why.stdout + why.stderr).strip())
        return 77
    print(why.stdout.strip())
    tmp = tempfile.mkdtemp(prefix="txs_gpu_infer_")
    corpus = os.path.join(SHARED, "data", "corpora", "tinyshakespeare.txt")
    failures = []
    try:
        for name, cfg in MODELS.items():
            cfg_path = os.path.join(tmp, name + ".json")
            json.dump(cfg, open(cfg_path, "w"))
            out = os.path.join(tmp, name)
            run("train", "--config", cfg_path, "--data", corpus, "--steps", "300", "--seq-len", "128",
                "--batch-size", "8", "--lr", "3e-3", "--warmup", "10", "--seed", "4", "--out", out)
            model = os.path.join(out, "checkpoint")
            for precision in ("fp32", "bf16"):
                same = total = 0
                for prompt in PROMPTS:
                    a = generate(model, prompt, "cpu", precision)["ids"]
                    b = generate(model, prompt, DEVICE, precision)["ids"]
                    same += sum(x == y for x, y in zip(a, b))
                    total += max(len(a), len(b))
                rate = same / total
                print(f"{name} {precision}: greedy tokens GPU == CPU at {same}/{total} positions")
                if (precision == "fp32" and same != total) or rate < 0.9:
                    failures.append(f"{name} {precision} greedy agreement {same}/{total}")
            cpu, gpu = serve_all(model, "cpu"), serve_all(model, DEVICE)
            for p, a, b in zip(PROMPTS, cpu, gpu):
                print(f"{name} serve {p!r}: {'same' if a == b else 'DIFFERENT'} text: {b!r}")
                if a != b:
                    failures.append(f"{name} serve {p!r}: cpu {a!r} gpu {b!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("FAIL:\n  " + "\n  ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
