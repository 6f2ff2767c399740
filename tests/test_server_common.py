"""Helpers shared by the test_server_*.py tests: a tiny randomly initialised model with the NeoX tokenizer
(vocabulary 50277, padded by the model to 50304), a `transxssm serve` on a free loopback port, HTTP calls,
/metrics, and the server's RSS. Standard library only."""
import http.client
import json
import os
import shutil
import signal
import struct
import subprocess
import time

NEOX_VOCAB, PADDED_VOCAB = 50277, 50304


class Checks:
    def __init__(self):
        self.failures = []

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def exit(self):
        import sys
        print(f"{len(self.failures)} failure(s)")
        sys.exit(1 if self.failures else 0)


def make_model(binary, source, out, max_positions=256, layers=2, seed=3):
    """A tiny TransXSSM (SSD + attention) with the NeoX tokenizer as its tokenizer.json."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    cfg = out + ".cfg.json"
    json.dump({"arch": "transxssm", "vocab_size": PADDED_VOCAB, "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 2,
               "attn_layer_period": 2, "attn_layer_offset": 1, "ssm_chunk_size": 16,
               "max_position_embeddings": max_positions}, open(cfg, "w"))
    subprocess.run([binary, "init", "--config", cfg, "--seed", str(seed), "--out", out], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copy(os.path.join(source, "..", "shared", "data", "tokenizers", "neox-20b.json"),
                os.path.join(out, "tokenizer.json"))
    return out


def edit_safetensors(path, edit):
    """Calls edit(name, shape, floats) for every F32 tensor (floats: a mutable array) and writes them back."""
    import array
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        b, e = t["data_offsets"]
        a = array.array("f")
        a.frombytes(bytes(data[b:e]))
        edit(name, t["shape"], a)
        data[b:e] = a.tobytes()
    with open(path, "r+b") as f:
        f.seek(8 + n)
        f.write(data)


class Server:
    """`transxssm serve` on a free loopback port with one compute thread."""

    def __init__(self, binary, model, *args):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([binary, "serve", "--model", model, "--port", "0", "--threads", "1", *args],
                                     stderr=subprocess.PIPE, text=True, env=env)
        self.port = None
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            if line.startswith("listening on http://127.0.0.1:"):
                self.port = int(line.strip().rsplit(":", 1)[1])
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("the server did not report its port")
        # Keep draining stderr so that the server never blocks on a full pipe.
        import threading
        self.log = []
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr], daemon=True).start()

    def request(self, method, path, body=None, timeout=60, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        r = conn.getresponse()
        payload = r.read()
        hdrs = dict(r.getheaders())
        conn.close()
        return r.status, payload, hdrs

    def complete(self, body, timeout=60):
        status, payload, _ = self.request("POST", "/v1/completions", body, timeout)
        return status, json.loads(payload) if payload else None

    def health_latency(self, timeout=10):
        t0 = time.time()
        try:
            status, _, _ = self.request("GET", "/health", timeout=timeout)
        except OSError:
            return None
        return time.time() - t0 if status == 200 else None

    def metric(self, name):
        _, text, _ = self.request("GET", "/metrics")
        for line in text.decode().splitlines():
            if line.startswith("transxssm_" + name + " "):
                return float(line.split()[1])
        raise KeyError(name)

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def alive(self):
        return self.proc.poll() is None

    def terminate(self, timeout=15, sig=signal.SIGTERM):
        """SIGTERM (or sig); returns (exit code or None if it did not end, seconds it took)."""
        t0 = time.time()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None, time.time() - t0
        return rc, time.time() - t0


def open_stream(port, body, timeout=60):
    """Starts a streaming completion; returns (connection, response) to read events from."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/completions", body=json.dumps(dict(body, stream=True)),
                 headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()
