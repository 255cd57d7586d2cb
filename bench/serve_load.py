"""Load generator for bench/serve.sh: C concurrent streaming clients against `tsumugi serve`, each
asking for exactly N tokens (ignore_eos). Prints time to first token, per-stream and aggregate
decode tokens/s, and the decode speed the server's engine reports in /metrics.

Usage: serve_load.py BASE_URL CONCURRENCY TOKENS REQUESTS_PER_CLIENT
"""
import json
import statistics
import sys
import threading
import time
import urllib.request


def stream(base_url, prompt, tokens, out):
    body = json.dumps({"prompt": prompt, "max_tokens": tokens, "ignore_eos": True, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    req = urllib.request.Request(base_url + "/v1/completions", data=body, headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    first = None
    n = 0
    with urllib.request.urlopen(req) as r:
        for line in r:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            ev = json.loads(line[6:])
            if ev.get("usage"):
                n = ev["usage"]["completion_tokens"]
            elif ev["choices"] and ev["choices"][0]["text"] and first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    out.append({"ttft": (first or end) - t0, "tokens": n, "seconds": end - t0,
                "decode_tps": (n - 1) / (end - first) if first and n > 1 and end > first else 0.0})


def metric(base_url, name):
    text = urllib.request.urlopen(base_url + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name + "_sum "):
            s = float(line.split()[1])
        if line.startswith(name + "_count "):
            c = float(line.split()[1])
    return s, c


def main():
    base_url, conc, tokens, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    prompt = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
    s0, c0 = metric(base_url, "tsumugi_decode_tokens_per_second")
    results = []
    t0 = time.perf_counter()
    def client():
        for _ in range(reps):
            stream(base_url, prompt, tokens, results)
    threads = [threading.Thread(target=client) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    s1, c1 = metric(base_url, "tsumugi_decode_tokens_per_second")
    engine_tps = (s1 - s0) / (c1 - c0) if c1 > c0 else 0.0
    ttft = sorted(r["ttft"] for r in results)
    total = sum(r["tokens"] for r in results)
    client_tps = statistics.mean(r["decode_tps"] for r in results)
    print(f"{conc:>4} clients  {len(results):>3} streams  TTFT p50 {statistics.median(ttft)*1000:7.1f} ms"
          f"  p90 {ttft[int(0.9*(len(ttft)-1))]*1000:7.1f} ms  per-stream {client_tps:7.1f} tok/s"
          f"  aggregate {total/wall:7.1f} tok/s  engine (in /metrics) {engine_tps:7.1f} tok/s"
          f"  client/engine {client_tps/engine_tps if engine_tps else 0:.2f}")


if __name__ == "__main__":
    main()
