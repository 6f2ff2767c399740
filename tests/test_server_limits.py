"""Server limits and robustness (docs/server.md): unknown model → 404; max_tokens capped by the context left;
--max-context; --max-body; --request-timeout; --max-sequences → 503 + Retry-After; requests whose client has
gone (non-streaming and streaming) are cancelled while /health keeps answering; a long prompt's prefill does
not stall a running stream (chunked prefill); SIGTERM with requests in flight exits 0 within the grace time;
a burst of connections is queued, not dropped (listen backlog); a second server on a bound port is refused.

Usage: test_server_limits.py BINARY SOURCE_DIR  (run by tests/test_server_limits.sh)."""
import concurrent.futures
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server_common import Checks, Server, make_model, open_stream

BINARY, SOURCE = sys.argv[1], sys.argv[2]
check = Checks()
FOREVER = 1048576  # max_tokens that would run for hours if nothing capped or cancelled it


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def abandon(port, body, after):
    """A non-streaming client that gives up (closes its socket) after `after` seconds."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=after)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        conn.getresponse().read()
        return "answered"
    except OSError:
        return "gave up"
    finally:
        conn.close()


def main():
    tmp = tempfile.mkdtemp(prefix="txs_server_limits_")
    try:
        short = make_model(BINARY, SOURCE, os.path.join(tmp, "short"), max_positions=256)
        long = make_model(BINARY, SOURCE, os.path.join(tmp, "long"), max_positions=16384)
        context_limits(short)
        listening(short)
        timeout_and_busy(long)
        cancellation_and_prefill(long)
        shutdown(long)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def listening(model):
    s = Server(BINARY, model)
    try:
        # 64 connections opened at once while the server's accept thread is held off by a stopped process: the
        # kernel completes the handshakes up to the listen backlog. With httplib's compiled-in backlog of 5 it
        # dropped the excess SYNs and those clients connected only after TCP's 1 s retry.
        os.kill(s.proc.pid, signal.SIGSTOP)
        t0 = time.time()
        try:
            socks = []
            for _ in range(64):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", s.port))
                socks.append(c)
            time.sleep(0.3)
        finally:
            os.kill(s.proc.pid, signal.SIGCONT)
        pending = list(socks)
        while pending and time.time() - t0 < 5:
            _, w, _ = select.select([], pending, [], 0.1)
            pending = [c for c in pending if c not in w]
        connected = sum(1 for c in socks if c not in pending and c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
        check(connected == 64 and time.time() - t0 < 0.9,
              f"64 simultaneous connections while the server was stopped 0.3 s: all accepted within 0.9 s "
              f"({connected} connected in {time.time() - t0:.2f} s)")
        for c in socks:
            c.close()
        status, _, _ = s.request("GET", "/health", timeout=5)
        check(status == 200, "the server still answers after the burst")

        # SO_REUSEPORT (httplib's default) would let this second server share the port silently.
        env = dict(os.environ, OMP_NUM_THREADS="1")
        second = subprocess.Popen([BINARY, "serve", "--model", model, "--port", str(s.port), "--threads", "1"],
                                  stderr=subprocess.PIPE, text=True, env=env)
        try:
            _, err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            second.kill()
            _, err = second.communicate()
            err = "it kept running: " + err
        check(second.returncode not in (0, None) and "cannot bind" in err,
              f"a second server on the same port is refused (exit {second.returncode}: {err.strip()[-90:]})")
    finally:
        s.terminate()


def context_limits(model):
    s = Server(BINARY, model, "--max-context", "100", "--max-body", "4096")
    try:
        status, r = s.complete({"prompt": [13] * 10, "max_tokens": FOREVER, "temperature": 0, "model": "short"})
        c = r["choices"][0] if status == 200 else {}
        check(status == 200 and r["usage"]["completion_tokens"] + 10 <= 100 and
              (c["finish_reason"] == "stop" or r["usage"]["completion_tokens"] == 90),
              f"max_tokens {FOREVER} is capped by the context left: {r and r.get('usage')}")
        status, r = s.complete({"prompt": [13] * 101})
        check(status == 400 and "context" in r["error"]["message"], f"prompt over --max-context 100: 400 ({status})")
        status, _, _ = s.request("GET", "/v1/models")
        status, payload, _ = s.request("GET", "/v1/models")
        check(json.loads(payload)["data"][0]["context_length"] == 100, "/v1/models reports the context limit")
        status, r = s.complete({"prompt": "hi", "model": "gpt-4"})
        check(status == 404 and r["error"]["code"] == "model_not_found" and "gpt-4" in r["error"]["message"],
              f"unknown model: 404 model_not_found ({status}, {r})")
        status, payload, _ = s.request("POST", "/v1/completions", json.dumps({"prompt": "x" * 5000}).encode())
        check(status == 413 and json.loads(payload)["error"]["message"], f"body over --max-body: 413 ({status})")
    finally:
        rc, took = s.terminate()
        check(rc == 0, f"SIGTERM: exit 0 (rc {rc})")


def timeout_and_busy(model):
    s = Server(BINARY, model, "--request-timeout", "2", "--max-sequences", "2")
    try:
        t0 = time.time()
        status, r = s.complete({"prompt": "Once", "max_tokens": FOREVER, "temperature": 1, "seed": 1})
        took = time.time() - t0
        check(status == 200 and r["choices"][0]["finish_reason"] == "timeout" and 1.8 < took < 5,
              f"--request-timeout 2: ends with finish_reason 'timeout' after {took:.1f} s")
        check(s.metric("sequences_timed_out_total") == 1, "timeouts are counted in /metrics")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futs = [pool.submit(s.complete, {"prompt": "Once", "max_tokens": FOREVER, "seed": i}) for i in range(2)]
            wait_for(lambda: s.metric("sequences_in_flight") == 2, 5)
            status, payload, headers = s.request("POST", "/v1/completions", {"prompt": "x", "max_tokens": 1})
            check(status == 503 and headers.get("Retry-After") and json.loads(payload)["error"]["message"],
                  f"beyond --max-sequences 2: 503 with Retry-After ({status}, {headers.get('Retry-After')})")
            [f.result() for f in futs]
        status, _ = s.complete({"prompt": "x", "max_tokens": 1})
        check(status == 200, "admitted again once the running requests ended")
        # SIGINT (Ctrl-C) with a request in flight ends the server like SIGTERM.
        pending = threading.Thread(target=abandon, args=(s.port, {"prompt": "x", "max_tokens": FOREVER}, 10))
        pending.start()
        wait_for(lambda: s.metric("active_sequences") == 1, 5)
    finally:
        rc, took = s.terminate(sig=signal.SIGINT)
        check(rc == 0 and took < 6.5, f"SIGINT with a request in flight: exit {rc} after {took:.1f} s")


def cancellation_and_prefill(model):
    s = Server(BINARY, model, "--prefill-chunk", "64")
    try:
        # 8 non-streaming clients asking for a million tokens each give up after 2 s.
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futs = [pool.submit(abandon, s.port, {"prompt": f"Story {i}", "max_tokens": FOREVER, "seed": i}, 2.0)
                    for i in range(8)]
            time.sleep(0.5)
            lat = [s.health_latency() for _ in range(10) if not time.sleep(0.1)]
            check(all(l is not None and l < 1.0 for l in lat),
                  f"/health answers under load (worst {max(l or 99 for l in lat):.3f} s)")
            results = [f.result() for f in futs]
        check(results == ["gave up"] * 8, "the clients gave up")
        check(wait_for(lambda: s.metric("active_sequences") == 0 and s.metric("sequences_in_flight") == 0, 3),
              "non-streaming requests of departed clients are cancelled")
        check(s.metric("sequences_cancelled_total") == 8, "8 cancellations counted")

        # A stream whose reader leaves after a few tokens.
        conn, resp = open_stream(s.port, {"prompt": "Hello", "max_tokens": FOREVER})
        got = 0
        while got < 5:
            if resp.fp.readline().startswith(b"data: "):
                got += 1
        resp.close()
        conn.close()
        check(wait_for(lambda: s.metric("active_sequences") == 0, 3), "a stream whose client left is cancelled")

        # A 16000-token prompt arrives while a stream runs: the stream keeps getting tokens during the prefill.
        conn, resp = open_stream(s.port, {"prompt": "Hello", "max_tokens": FOREVER})
        times = []

        def read():
            try:
                while True:
                    line = resp.fp.readline()
                    if not line:
                        return
                    if line.startswith(b"data: "):
                        times.append(time.time())
            except (OSError, AttributeError, ValueError):
                return
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: len(times) > 5, 5)
        t0 = time.time()
        status, _ = s.complete({"prompt": [13] * 16000, "max_tokens": 1}, timeout=120)
        t1 = time.time()
        gaps = [b - a for a, b in zip(times, times[1:]) if a >= t0 and b <= t1]
        check(status == 200 and len(gaps) > 10 and max(gaps) < 0.25,
              f"16000-token prefill ({t1 - t0:.2f} s) interleaved with the stream: {len(gaps)} tokens, "
              f"largest gap {max(gaps or [99]):.3f} s")
        resp.close()
        conn.close()
        check(wait_for(lambda: s.metric("active_sequences") == 0, 3), "stream cancelled after the prefill check")
        check(s.alive(), "the server is still up")
    finally:
        rc, took = s.terminate()
        check(rc == 0, f"SIGTERM: exit 0 (rc {rc})")


def shutdown(model):
    s = Server(BINARY, model)
    pool = concurrent.futures.ThreadPoolExecutor(10)
    futs = [pool.submit(s.complete, {"prompt": f"Story {i}", "max_tokens": FOREVER, "seed": i}, 30) for i in range(8)]
    streams = [open_stream(s.port, {"prompt": "Hi", "max_tokens": FOREVER}) for _ in range(2)]
    wait_for(lambda: s.metric("active_sequences") == 8, 5)
    rc, took = s.terminate(timeout=20)
    check(rc == 0 and took < 6.5, f"SIGTERM with 10 requests in flight: exit {rc} after {took:.1f} s (bound 5 s)")
    answered = []
    for f in futs:
        try:
            answered.append(f.result()[0])
        except OSError:
            answered.append("closed")
    check(all(a in (503, "closed") for a in answered), f"in-flight requests get 503 (or a closed connection): {answered}")
    for conn, resp in streams:
        conn.close()
    pool.shutdown()


if __name__ == "__main__":
    main()
    check.exit()
