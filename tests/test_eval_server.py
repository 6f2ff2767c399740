"""`transxssm serve` + lm-evaluation-harness's request format == `transxssm eval` (issue 5).

For LAMBADA items the harness's local-completions model sends the context+continuation token ids with
echo=True, max_tokens=0, logprobs=1, sums the continuation's token log-probs and calls it greedy when every
continuation token is the top-1 alternative. This test does exactly that against a real server and requires
the same perplexity and accuracy as `transxssm eval --tasks lambada_openai` on the same items.
Usage: python3 test_eval_server.py BINARY SOURCE_DIR
"""
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BINARY, SOURCE = sys.argv[1], sys.argv[2]
SHARED = os.environ.get("TRANSXSSM_SHARED_DIR", os.path.join(SOURCE, "..", "shared"))
DATA = os.path.join(SHARED, "data")
TOK = os.path.join(DATA, "tokenizers", "neox-20b.json")
N = 8


def tokenize(text, tmp):
    path = os.path.join(tmp, "t.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    out = subprocess.run([BINARY, "tokenize", "--tokenizer", TOK, "--input", path], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    tmp = tempfile.mkdtemp(prefix="txs_eval_server_")
    model = os.path.join(tmp, "model")
    cfg = os.path.join(tmp, "cfg.json")
    json.dump({"arch": "transxssm", "vocab_size": 50304, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
               "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 16,
               "max_position_embeddings": 512}, open(cfg, "w"))
    subprocess.run([BINARY, "init", "--config", cfg, "--seed", "5", "--out", model], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(TOK, os.path.join(model, "tokenizer.json"))
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    res_path = os.path.join(tmp, "eval.json")
    subprocess.run([BINARY, "eval", "--model", model, "--tokenizer", TOK, "--data", DATA, "--tasks",
                    "lambada_openai", "--limit", str(N), "--out", res_path, "--quiet"], check=True,
                   stdout=subprocess.DEVNULL, env=env)
    results = json.load(open(res_path))
    text = json.dumps(results)

    items = []
    with open(os.path.join(DATA, "eval", "lambada", "lambada_openai_test.jsonl"), encoding="utf-8") as f:
        for line in f:
            if len(items) == N:
                break
            t = json.loads(line)["text"]
            sp = t.rfind(" ")
            items.append((t[:sp], " " + t[sp + 1:]))

    server = subprocess.Popen([BINARY, "serve", "--model", model, "--port", "0", "--threads", "1"],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = None
        deadline = time.time() + 60
        while time.time() < deadline and port is None:
            line = server.stderr.readline()
            if not line:
                break
            if line.startswith("listening on http://127.0.0.1:"):
                port = int(line.strip().rsplit(":", 1)[1])
        assert port, "server did not report its port"
        lls, greedy = [], []
        for ctx, cont in items:
            c_ids, k_ids = tokenize(ctx, tmp), tokenize(cont, tmp)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            body = {"prompt": [c_ids + k_ids], "max_tokens": 0, "temperature": 0, "echo": True, "logprobs": 1}
            conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            resp = conn.getresponse()
            assert resp.status == 200, resp.read()
            lp = json.loads(resp.read())["choices"][0]["logprobs"]
            n = len(k_ids)
            lls.append(sum(lp["token_logprobs"][-n:]))
            ok = True
            for tok, top in zip(lp["tokens"][-n:], lp["top_logprobs"][-n:]):
                if max(top.items(), key=lambda kv: kv[1])[0] != tok:
                    ok = False
            greedy.append(1.0 if ok else 0.0)
        ppl = math.exp(-sum(lls) / len(lls))
        acc = sum(greedy) / len(greedy)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    metrics = results["results"]["lambada_openai"]["metrics"]
    eval_ppl, eval_acc = metrics["perplexity"]["value"], metrics["acc"]["value"]
    assert eval_ppl is not None and eval_acc is not None, text[:500]
    print(f"lambada {N} items: server ppl {ppl:.6f} acc {acc:.3f} | eval ppl {eval_ppl:.6f} acc {eval_acc:.3f}")
    assert abs(ppl - eval_ppl) / eval_ppl < 1e-4, "perplexity through the server differs from eval"
    assert abs(acc - eval_acc) < 1e-9, "accuracy through the server differs from eval"
    shutil.rmtree(tmp, ignore_errors=True)
    print("OK serve + harness request format == eval")


if __name__ == "__main__":
    main()
