"""Item: padding ids are never sampled. The NeoX tokenizer has 50277 ids, the model 50304; ids 50277-50303 have
no text. The model is edited so that those ids win by far: the final norm keeps only hidden dimension 0, and
(embeddings are tied) padding rows get ±1000 there, so without masking every mode would pick a padding id
and decoding it would throw. Checks `generate` and the server in every sampling mode, with logprobs, echo and
streaming, and that the server is still up and exits cleanly afterwards.

Usage: test_server_padding.py BINARY SOURCE_DIR  (run by tests/test_server_padding.sh)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server_common import NEOX_VOCAB, PADDED_VOCAB, Checks, Server, edit_safetensors, make_model, open_stream

BINARY, SOURCE = sys.argv[1], sys.argv[2]
check = Checks()


def make_padding_model(path):
    make_model(BINARY, SOURCE, path)

    def edit(name, shape, a):
        if name == "model.final_layernorm.weight":
            for i in range(len(a)):
                a[i] = 1.0 if i == 0 else 0.0
        elif name == "model.word_embed.weight":
            d = shape[1]
            for v in range(NEOX_VOCAB, PADDED_VOCAB):
                a[v * d] = 1000.0 if v % 2 else -1000.0
    edit_safetensors(os.path.join(path, "model.safetensors"), edit)


def main():
    tmp = tempfile.mkdtemp(prefix="txs_server_pad_")
    try:
        model = os.path.join(tmp, "model")
        make_padding_model(model)
        cli(model, tmp)
        serve(model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cli(model, tmp):
    ids = os.path.join(tmp, "ids.json")
    json.dump([510, 3158, 8516, 30013], open(ids, "w"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for mode in (["--temperature", "0"], ["--temperature", "1"], ["--temperature", "5", "--top-k", "40"],
                 ["--temperature", "1", "--top-p", "0.9"]):
        r = subprocess.run([BINARY, "generate", "--model", model, "--ids", ids, "--max-tokens", "24", "--json",
                            "--ignore-eos", "--threads", "1", "--seed", "11", *mode],
                           capture_output=True, text=True, env=env)
        out = json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else {"ids": []}
        check(r.returncode == 0 and len(out["ids"]) == 24 and max(out["ids"]) < NEOX_VOCAB,
              f"generate {' '.join(mode)}: 24 ids, none a padding id (rc {r.returncode}, {r.stderr.strip()[-120:]!r})")


def serve(model):
    s = Server(BINARY, model, "--max-batch", "4")
    prompt = [510, 3158, 8516, 30013]
    modes = [{"temperature": 0}, {"temperature": 1.0}, {"temperature": 100.0}, {"temperature": 2.0, "top_k": 50},
             {"temperature": 2.0, "top_p": 0.5}, {"temperature": 1.0, "top_k": 5, "top_p": 0.9}]
    for m in modes:
        status, r = s.complete(dict(m, prompt=prompt, max_tokens=32, logprobs=5, seed=3))
        ok = status == 200
        if ok:
            lp = r["choices"][0]["logprobs"]
            # A padding id has no text: it would show up as an empty token or alternative.
            ok = all(t != "" for t in lp["tokens"]) and all("" not in top for top in lp["top_logprobs"])
            ok = ok and (len(lp["tokens"]) == 32 or r["choices"][0]["finish_reason"] == "stop")
        check(ok, f"server {m}: 200, no padding token among the tokens or the top alternatives ({status})")
    status, r = s.complete({"prompt": prompt, "max_tokens": 4, "echo": True, "logprobs": 3, "temperature": 0})
    check(status == 200 and all("" not in t for t in r["choices"][0]["logprobs"]["top_logprobs"][1:]),
          "echo + logprobs: no padding id among the prompt's top alternatives")
    conn, resp = open_stream(s.port, {"prompt": "Hello", "max_tokens": 32, "temperature": 1.5, "seed": 1})
    events = [l[6:] for l in resp.read().decode().split("\n") if l.startswith("data: ")]
    conn.close()
    check(resp.status == 200 and events[-1] == "[DONE]" and all("error" not in json.loads(e) for e in events[:-1]),
          "streaming at temperature 1.5: no error event, ends with [DONE]")
    status, r = s.complete({"prompt": [1, PADDED_VOCAB - 1]})
    check(status == 400 and "vocabulary" in r["error"]["message"], f"a padding id in the prompt: 400 ({status})")
    check(s.metric("sequences_failed_total") == 0, "no sequence failed")
    check(s.health_latency() is not None and s.alive(), "the server is still up")
    rc, took = s.terminate()
    check(rc == 0, f"SIGTERM: exit 0 (rc {rc}, {took:.1f} s)")


if __name__ == "__main__":
    main()
    check.exit()
