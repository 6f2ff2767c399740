"""Starts the real `transxssm serve` on a loopback port and talks to it with http.client: completions, streaming,
echo + logprobs equal to `transxssm score`, concurrent clients equal to sequential ones (and batched together),
stop strings, seeds, and malformed requests answered with 4xx while the server keeps serving.

Usage: test_server.py BINARY SOURCE_DIR  (run by tests/test_server.sh)."""
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
SHARED = os.path.join(SOURCE, "..", "shared")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def request(port, method, path, body=None, raw=None, timeout=120):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    payload = r.read()
    conn.close()
    return r.status, payload


def complete(port, body):
    status, payload = request(port, "POST", "/v1/completions", body)
    if status != 200:
        raise RuntimeError(f"status {status}: {payload[:200]!r}")
    return json.loads(payload)


def stream(port, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.status
    assert r.getheader("Content-Type", "").startswith("text/event-stream")
    events = [line[6:] for line in r.read().decode().split("\n") if line.startswith("data: ")]
    conn.close()
    return events


def metric(port, name):
    _, text = request(port, "GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith("transxssm_" + name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def main():
    tmp = tempfile.mkdtemp(prefix="txs_server_")
    model = os.path.join(tmp, "model")
    cfg = os.path.join(tmp, "cfg.json")
    # Tiny TransXSSM (SSD + attention layers) with the GPT-2 vocabulary.
    json.dump({"arch": "transxssm", "vocab_size": 50304, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 4, "num_attention_heads": 2, "num_key_value_heads": 2,
               "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 16,
               "max_position_embeddings": 256}, open(cfg, "w"))
    subprocess.run([BINARY, "init", "--config", cfg, "--seed", "3", "--out", model], check=True,
                   stdout=subprocess.DEVNULL)
    gpt2 = os.path.join(SHARED, "data", "tokenizers", "gpt2")
    for f in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(gpt2, f), model)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    server = subprocess.Popen([BINARY, "serve", "--model", model, "--port", "0", "--max-body", "65536",
                               "--max-batch", "8", "--threads", "1"],
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = server.stderr.readline()
            if not line:
                break
            if line.startswith("listening on http://127.0.0.1:"):
                port = int(line.strip().rsplit(":", 1)[1])
                break
        check(port is not None, "server binds to 127.0.0.1 and reports its port")
        if port is None:
            return
        run_checks(port, model, env, tmp)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            rc = server.wait(timeout=30)
            check(rc == 0, f"server exits cleanly on SIGTERM (rc {rc})")
        except subprocess.TimeoutExpired:
            server.kill()
            check(False, "server exits on SIGTERM")
        shutil.rmtree(tmp, ignore_errors=True)


def cli_checks(model, env, tmp):
    """`generate`: same seed same output; a saved prompt state continues exactly like the whole prompt."""
    def gen(*args):
        r = subprocess.run([BINARY, "generate", "--model", model, "--json", "--threads", "1", "--ignore-eos", *args],
                           capture_output=True, text=True, env=env)
        return r.returncode, r.stdout, r.stderr
    a, b = [464, 2068, 7586, 21831, 18045], [625, 262, 16931]
    ids_a, ids_b, ids_ab = (os.path.join(tmp, n) for n in ("a.json", "b.json", "ab.json"))
    json.dump(a, open(ids_a, "w")), json.dump(b, open(ids_b, "w")), json.dump(a + b, open(ids_ab, "w"))
    state = os.path.join(tmp, "prompt.state")
    rc, _, err = gen("--ids", ids_a, "--max-tokens", "0", "--save-state", state)
    check(rc == 0 and os.path.exists(state), "generate --save-state writes the prompt's state")
    rc1, whole, _ = gen("--ids", ids_ab, "--max-tokens", "10", "--temperature", "0")
    rc2, resumed, _ = gen("--ids", ids_b, "--load-state", state, "--max-tokens", "10", "--temperature", "0")
    check(rc1 == 0 and rc2 == 0 and json.loads(whole)["ids"] == json.loads(resumed)["ids"],
          "continuing from a saved state equals generating from the whole prompt")
    s1 = gen("--ids", ids_ab, "--max-tokens", "10", "--temperature", "0.9", "--top-k", "50", "--seed", "5")[1]
    s2 = gen("--ids", ids_ab, "--max-tokens", "10", "--temperature", "0.9", "--top-k", "50", "--seed", "5")[1]
    check(s1 == s2 and len(json.loads(s1)["ids"]) == 10, "generate: same seed, same output")
    rc, out, err = gen("--prompt", "Hello", "--max-tokens", "4")
    check(rc == 0 and "decode:" in err and "tokens/s" in err, "generate prints prefill and decode tokens/s")
    # A state from another model is refused with one line.
    other = os.path.join(tmp, "other")
    subprocess.run([BINARY, "init", "--config", os.path.join(tmp, "cfg.json"), "--seed", "4", "--out", other],
                   check=True, stdout=subprocess.DEVNULL)
    r = subprocess.run([BINARY, "generate", "--model", other, "--ids", ids_b, "--load-state", state],
                       capture_output=True, text=True, env=env)
    check(r.returncode == 1 and "another model" in r.stderr and r.stderr.count("\n") == 1,
          f"a state from another model is a one-line error ({r.stderr.strip()!r})")


def run_checks(port, model, env, tmp):
    cli_checks(model, env, tmp)
    status, body = request(port, "GET", "/health")
    check(status == 200 and json.loads(body)["status"] == "ok", "/health")
    status, body = request(port, "GET", "/v1/models")
    check(status == 200 and json.loads(body)["data"][0]["object"] == "model", "/v1/models")

    # Greedy completion of a text prompt equals `transxssm generate --temperature 0`.
    prompt = "The quick brown fox jumps over the lazy dog. Then"
    r = complete(port, {"prompt": prompt, "max_tokens": 12, "temperature": 0})
    text = r["choices"][0]["text"]
    cli = subprocess.run([BINARY, "generate", "--model", model, "--prompt", prompt, "--max-tokens", "12",
                          "--temperature", "0", "--json", "--threads", "1", "--ignore-eos"],
                         check=True, capture_output=True, text=True, env=env)
    check(json.loads(cli.stdout)["text"] == text, "server greedy text equals `generate --temperature 0`")
    check(r["usage"]["completion_tokens"] == 12 and r["choices"][0]["finish_reason"] == "length",
          "usage and finish_reason 'length'")

    # Streaming gives the same text in pieces, a finish_reason, then [DONE].
    events = stream(port, {"prompt": prompt, "max_tokens": 12, "temperature": 0})
    check(events[-1] == "[DONE]", "stream ends with [DONE]")
    chunks = [json.loads(e) for e in events[:-1]]
    check("".join(c["choices"][0]["text"] for c in chunks) == text, "streamed text equals the non-streamed text")
    check(chunks[-1]["choices"][0]["finish_reason"] == "length" and len(chunks) >= 12,
          "stream sends one event per token and a final finish_reason")

    # echo + logprobs over a token array (what lm-evaluation-harness's local-completions sends) equals `score`.
    ids = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13, 3244, 340]
    ids_file = os.path.join(tmp, "ids.json")
    json.dump(ids, open(ids_file, "w"))
    score = json.loads(subprocess.run([BINARY, "score", "--model", model, "--ids", ids_file, "--threads", "1"],
                                      check=True, capture_output=True, text=True, env=env).stdout)["logprobs"]
    r = complete(port, {"prompt": [ids], "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1})
    lp = r["choices"][0]["logprobs"]
    check(lp["token_logprobs"][0] is None and len(lp["token_logprobs"]) == len(ids) + 1,
          "echo returns every prompt token (first without a logprob) plus the generated one")
    diff = max(abs(a - b) for a, b in zip(lp["token_logprobs"][1:len(ids)], score))
    check(diff < 1e-4, f"echo logprobs equal `score` (max diff {diff:.2e})")
    top_ok = all(max(t.values()) >= v - 1e-6 for t, v in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:]))
    check(top_ok, "top_logprobs hold the most likely token at each position")
    r0 = complete(port, {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0})
    check(r0["usage"]["completion_tokens"] == 0 and len(r0["choices"][0]["logprobs"]["tokens"]) == len(ids),
          "max_tokens 0 with echo scores the prompt only")

    # Concurrent clients get what sequential ones get, and are decoded together.
    prompts = [f"Story number {i}: once upon a time" for i in range(6)]
    sequential = [complete(port, {"prompt": p, "max_tokens": 24, "temperature": 0})["choices"][0]["text"]
                  for p in prompts]
    steps0, gen0 = metric(port, "decode_steps_total"), metric(port, "generated_tokens_total")
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        futs = [pool.submit(complete, port, {"prompt": p, "max_tokens": 24, "temperature": 0}) for p in prompts]
        concurrent_texts = [f.result()["choices"][0]["text"] for f in futs]
    steps, gen = metric(port, "decode_steps_total") - steps0, metric(port, "generated_tokens_total") - gen0
    check(concurrent_texts == sequential, "concurrent clients get the same texts as sequential ones")
    check(steps < gen * 0.75, f"concurrent requests share decode steps ({int(steps)} steps for {int(gen)} tokens)")

    # Same seed, same sample; stop strings cut the text.
    a = complete(port, {"prompt": prompt, "max_tokens": 16, "temperature": 1.0, "seed": 7})["choices"][0]["text"]
    b = complete(port, {"prompt": prompt, "max_tokens": 16, "temperature": 1.0, "seed": 7})["choices"][0]["text"]
    check(a == b, "same seed gives the same sample")
    stop = text[len(text) // 2:len(text) // 2 + 3]
    r = complete(port, {"prompt": prompt, "max_tokens": 12, "temperature": 0, "stop": [stop]})
    c = r["choices"][0]
    check(c["finish_reason"] == "stop" and c["text"] == text[:text.index(stop)],
          f"stop string {stop!r} ends the text before it")

    # Malformed requests: 4xx with a JSON error, and the server keeps serving.
    bad = [
        ("invalid JSON", b"{\"prompt\": ", 400),
        ("not an object", b"[1, 2]", 400),
        ("missing prompt", json.dumps({"max_tokens": 3}).encode(), 400),
        ("wrong type", json.dumps({"prompt": "hi", "max_tokens": "many"}).encode(), 400),
        ("negative max_tokens", json.dumps({"prompt": "hi", "max_tokens": -1}).encode(), 400),
        ("bad temperature", json.dumps({"prompt": "hi", "temperature": -2}).encode(), 400),
        ("id outside vocabulary", json.dumps({"prompt": [1, 999999]}).encode(), 400),
        ("empty prompt", json.dumps({"prompt": ""}).encode(), 400),
        ("prompt longer than the context", json.dumps({"prompt": [13] * 300}).encode(), 400),
        ("oversize body", json.dumps({"prompt": "x" * 100000}).encode(), 413),
    ]
    for what, raw, want in bad:
        status, payload = request(port, "POST", "/v1/completions", raw=raw)
        try:
            msg = json.loads(payload)["error"]["message"]
        except Exception:
            msg = None
        check(status == want and msg, f"{what}: {status} (want {want}) with error {msg!r}")
    status, _ = request(port, "GET", "/v1/nothing")
    check(status == 404, "unknown endpoint: 404")
    r = complete(port, {"prompt": prompt, "max_tokens": 12, "temperature": 0})
    check(r["choices"][0]["text"] == text, "the server still serves after the bad requests")
    check(metric(port, "requests_rejected_total") >= 9, "rejected requests are counted in /metrics")
    check(metric(port, "state_bytes_per_sequence_at_context") > 0, "/metrics reports state memory")


if __name__ == "__main__":
    main()
    print(f"{len(failures)} failure(s)")
    sys.exit(1 if failures else 0)
