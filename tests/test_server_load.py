"""Bounded, seeded load test on loopback (about 30 s): concurrent clients of every kind - complete answers,
full streams, clients that give up early (non-streaming and streaming), slow stream readers, long prompts,
malformed requests - while a probe checks that /health answers within 1 s at every probe and that the
server's RSS stays within 200 MB of its start. Afterwards every departed request must have been cancelled
(no active or in-flight sequences), nothing may have failed with a 500, and SIGTERM must end the server
within its 5 s grace with exit 0.

Usage: test_server_load.py BINARY SOURCE_DIR  (run by tests/test_server_load.sh)."""
import http.client
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_server_common import Checks, Server, make_model, open_stream

BINARY, SOURCE = sys.argv[1], sys.argv[2]
SEED, CLIENTS, DURATION = 1234, 12, 25.0
HEALTH_BOUND_S, RSS_GROWTH_MB = 1.0, 200
FOREVER = 1048576
check = Checks()


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def add(self, key):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1


def client(port, rng, stop_at, tally):
    """One client thread: a seeded random mix of request kinds until stop_at."""
    while time.time() < stop_at:
        kind = rng.choice(["complete", "complete", "stream", "give_up", "give_up_stream", "slow_reader",
                           "long_prompt", "malformed"])
        try:
            if kind == "complete":
                body = {"prompt": f"Tell me about {rng.randrange(1000)}", "max_tokens": rng.randrange(1, 48),
                        "temperature": rng.choice([0, 0.8, 1.5]), "seed": rng.randrange(1 << 30)}
                if rng.random() < 0.3:
                    body["logprobs"] = 2
                tally.add(f"{kind} {post(port, body)}")
            elif kind == "stream":
                conn, resp = open_stream(port, {"prompt": "Once upon", "max_tokens": rng.randrange(4, 64)}, 30)
                events = [l for l in resp.read().decode().split("\n") if l.startswith("data: ")]
                conn.close()
                tally.add(f"{kind} {resp.status} {'done' if events and events[-1] == 'data: [DONE]' else 'cut'}")
            elif kind == "give_up":
                body = {"prompt": "A long story", "max_tokens": FOREVER, "seed": rng.randrange(1 << 30)}
                tally.add(f"{kind} {post(port, body, timeout=rng.uniform(0.2, 2.0))}")
            elif kind == "give_up_stream":
                conn, resp = open_stream(port, {"prompt": "Forever", "max_tokens": FOREVER}, 30)
                for _ in range(rng.randrange(1, 20)):
                    resp.fp.readline()
                resp.close()
                conn.close()
                tally.add(f"{kind} {resp.status}")
            elif kind == "slow_reader":
                conn, resp = open_stream(port, {"prompt": "Slowly", "max_tokens": FOREVER}, 30)
                end = time.time() + rng.uniform(1, 4)
                while time.time() < end:
                    resp.fp.readline()
                    time.sleep(0.2)
                resp.close()
                conn.close()
                tally.add(f"{kind} {resp.status}")
            elif kind == "long_prompt":
                ids = [rng.randrange(50000) for _ in range(rng.randrange(1000, 8000))]
                tally.add(f"{kind} {post(port, {'prompt': ids, 'max_tokens': 4})}")
            else:
                raw = rng.choice([b"{\"prompt\": ", b"[1]", json.dumps({"prompt": "x", "top_p": 7}).encode(),
                                  json.dumps({"prompt": "x", "model": "nope"}).encode()])
                tally.add(f"{kind} {post(port, raw)}")
        except OSError as e:
            tally.add(f"{kind} error {type(e).__name__}")


def post(port, body, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", "/v1/completions", body=data, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        r.read()
        return r.status
    except (TimeoutError, ConnectionError):
        return "gave up"
    finally:
        conn.close()


def main():
    tmp = tempfile.mkdtemp(prefix="txs_server_load_")
    try:
        model = make_model(BINARY, SOURCE, os.path.join(tmp, "model"), max_positions=16384)
        s = Server(BINARY, model, "--max-batch", "8", "--max-sequences", "16", "--request-timeout", "20",
                   "--prefill-chunk", "128")
        try:
            run(s)
        finally:
            if s.alive():
                rc, took = s.terminate(timeout=20)
                check(rc == 0 and took < 6.5, f"SIGTERM after the load: exit {rc} within {took:.1f} s (bound 5 s)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(s):
    s.complete({"prompt": "warm up", "max_tokens": 4})
    rss0 = s.rss_mb()
    tally = Tally()
    stop_at = time.time() + DURATION
    master = random.Random(SEED)
    threads = [threading.Thread(target=client, args=(s.port, random.Random(master.randrange(1 << 30)), stop_at, tally),
                                daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    latencies, rss = [], []
    while time.time() < stop_at:
        latencies.append(s.health_latency(timeout=5))
        rss.append(s.rss_mb())
        time.sleep(0.25)
    for t in threads:
        t.join(timeout=30)
    print("requests:", json.dumps(dict(sorted(tally.counts.items())), indent=1))
    worst = max((l if l is not None else 99.0) for l in latencies)
    check(worst < HEALTH_BOUND_S, f"/health answered within {HEALTH_BOUND_S} s at all {len(latencies)} probes "
                                  f"(worst {worst:.3f} s)")
    growth = max(rss) - rss0
    check(growth < RSS_GROWTH_MB, f"RSS growth {growth:.0f} MB < {RSS_GROWTH_MB} MB (start {rss0:.0f} MB)")
    check(not any(t.is_alive() for t in threads), "every client finished")
    check(not any(" 500" in k for k in tally.counts), "no request failed with 500")
    check(sum(v for k, v in tally.counts.items() if k.startswith(("complete 200", "stream 200"))) >= 10,
          "complete requests were served")
    check(wait_for(lambda: s.metric("active_sequences") == 0 and s.metric("sequences_in_flight") == 0, 5),
          "no sequence stays active once the clients are gone (departed requests were cancelled)")
    check(s.metric("sequences_cancelled_total") > 0, f"cancellations counted ({s.metric('sequences_cancelled_total'):.0f})")
    check(s.metric("sequences_failed_total") == 0, "no sequence failed")
    status, r = s.complete({"prompt": "still there?", "max_tokens": 4})
    check(status == 200 and s.alive(), "the server still serves after the load")


def wait_for(cond, timeout):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


if __name__ == "__main__":
    main()
    check.exit()
