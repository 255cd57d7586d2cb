"""Many streaming chat clients at once against `tsumugi serve`, each stream on its own connection
(one OpenAI client, whose connection pool opens a connection per concurrent request).

Usage: concurrent_streams.py BASE_URL CLIENTS ROUNDS SERVER_PID
Runs ROUNDS rounds of CLIENTS simultaneous streams and prints {"rounds": [{"ok", "errors"}, ...],
"rss_kb": [...]}, the server's resident memory after each round. Every stream must end with a
finish_reason and a usage chunk whose completion count is within max_tokens.
"""
import json
import sys
import threading

try:
    import openai
except ImportError:
    sys.exit("the openai package is missing: /usr/bin/python3 -m pip install --break-system-packages -r tests/requirements-torch.txt")


def worker(client, model, i, results):
    try:
        text, finish, usage = "", None, None
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"質問 {i}: 猫と犬のどちらが好きですか"}],
            max_tokens=8, temperature=0.8, seed=i, stream=True, stream_options={"include_usage": True})
        for chunk in stream:
            for ch in chunk.choices:
                text += ch.delta.content or ""
                finish = ch.finish_reason or finish
            if chunk.usage:
                usage = chunk.usage
        if finish not in ("stop", "length"):
            raise RuntimeError(f"finish_reason {finish!r}")
        if usage is None or usage.completion_tokens < 1 or usage.completion_tokens > 8:
            raise RuntimeError(f"usage {usage!r}")
        results[i] = ("ok", text)
    except Exception as e:  # reported, counted by the test
        results[i] = ("error", f"{type(e).__name__}: {e}")


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    base_url, n, rounds, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x", max_retries=0, timeout=120)
    model = client.models.list().data[0].id
    out = {"rounds": [], "rss_kb": []}
    for _ in range(rounds):
        results = [None] * n
        threads = [threading.Thread(target=worker, args=(client, model, i, results)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out["rounds"].append({"ok": sum(1 for r in results if r and r[0] == "ok"),
                              "errors": [r[1] for r in results if not r or r[0] != "ok"]})
        out["rss_kb"].append(rss_kb(pid))
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
