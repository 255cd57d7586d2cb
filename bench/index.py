"""Driver of bench/index.sh (see there). Prints figures and ratios; writes its work under --work."""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PYTHON = "/usr/bin/python3"  # infini-gram installs there (it is a CPython 3.11 wheel)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def timed(cmd):
    """Runs cmd under /usr/bin/time -v: (wall seconds, peak RSS bytes, CPU seconds)."""
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, text=True, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", p.stderr).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", p.stderr).group(1)) for k in ("User", "System"))
    return secs, rss, cpu


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def load_texts():
    import gzip
    texts = []
    for name in ("ja", "en", "code"):
        with gzip.open(os.path.join(ROOT, "data/corpus", name + ".jsonl.gz"), "rt", encoding="utf-8") as f:
            texts += [json.loads(l)["text"] for l in f if l.strip()]
    return texts


def sample_queries(texts, n, seed):
    """Substrings of the corpus of 1-4 words or 2-10 Japanese characters, and a few that do not occur."""
    rng = random.Random(seed)
    qs = []
    while len(qs) < n:
        t = texts[rng.randrange(len(texts))]
        if rng.random() < 0.5:
            words = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", t)
            if len(words) < 5:
                continue
            i = rng.randrange(len(words) - 4)
            q = " ".join(words[i:i + rng.randint(1, 4)])
        else:
            runs = re.findall(r"[\u3040-\u30ff\u4e00-\u9fff]{2,}", t)
            if not runs:
                continue
            r = runs[rng.randrange(len(runs))]
            a = rng.randrange(len(r) - 1)
            q = r[a:a + rng.randint(2, 10)]
        if "\n" not in q and q.strip():
            qs.append(q)
    qs[-5:] = ["存在しない語句です", "zzqxv nonexistent", "プロセス", "the", "exit status"]
    return qs


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--tokens", type=float, default=100e6, help="index size in tokens (the corpus repeated)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--work", default="/tmp/tsumugi-index-bench")
    ap.add_argument("--no-infinigram", action="store_true")
    ap.add_argument("--rg-queries", type=int, default=40, help="queries timed with ripgrep (each scans the text)")
    a = ap.parse_args()
    tsumugi = os.path.join(a.build, "tsumugi")
    os.makedirs(a.work, exist_ok=True)
    w = lambda *p: os.path.join(a.work, *p)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start")

    # A tokenizer: the demo's if it is there, else one trained on the bundled corpus.
    model = os.path.join(ROOT, "demo-out/tok.model")
    if not os.path.exists(model):
        model = w("tok.model")
        if not os.path.exists(model):
            run([tsumugi, "-q", "tokenizer", "train", "-i"] + [os.path.join(ROOT, f"data/corpus/{n}.jsonl.gz") for n in ("ja", "en", "code")]
                + ["-o", w("tok"), "--vocab-size", "16000", "--input-sentence-size", "200000", "--num-threads", str(os.cpu_count())])
    if not os.path.exists(w("corpus.idx")):
        run([tsumugi, "-q", "tokenize", "-m", model, "-o", w("corpus"), "--no-summary"]
            + [os.path.join(ROOT, f"data/corpus/{n}.jsonl.gz") for n in ("ja", "en", "code")])
    import numpy as np
    idx = open(w("corpus.idx"), "rb").read()
    seqs = int.from_bytes(idx[18:26], "little")
    lengths = np.frombuffer(idx, dtype=np.int32, count=seqs, offset=34)
    base_tokens = int(lengths.sum())
    repeats = max(1, int(np.ceil(a.tokens / base_tokens)))
    total = base_tokens * repeats
    print(f"corpus: bundled ja+en+code, {base_tokens:,} tokens x {repeats} = {total:,} tokens, tokenizer {model}")

    # ---- build
    shutil.rmtree(w("index"), ignore_errors=True)
    secs, rss, cpu = timed([tsumugi, "index", "--shards"] + [w("corpus")] * repeats
                           + ["--tokenizer", model, "-o", w("index"), "--no-progress"])
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(w("index")) for f in fs)
    tok_model = os.path.getsize(w("index", "tokenizer.model"))
    print(f"tsumugi index: {secs:.1f} s wall, {cpu:.1f} s CPU (the rest was other processes' share of the cores), "
          f"{total / secs / 1e6:.2f} M tokens/s wall, {total / cpu / 1e6:.2f} M tokens per CPU-second, peak RSS {rss / 2**30:.2f} GiB, "
          f"{size / 2**20:.0f} MiB = {(size - tok_model) / total:.2f} bytes/token (target <= 7)")

    # ---- queries: tsumugi
    texts = load_texts()
    qs = sample_queries(texts, a.queries, 1)
    with open(w("queries.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(qs) + "\n")

    def batch(kind, extra=()):
        p = run([tsumugi, "search", kind, "--index", w("index"), "--batch", w("queries.txt")] + list(extra))
        return [json.loads(l) for l in p.stdout.splitlines()]

    batch("count")  # warm the page cache, as a server would be
    counts = batch("count")
    docs = batch("docs", ["--limit", "10"])
    cu = [r["micros"] for r in counts]
    du = [r["micros"] for r in docs]
    print(f"tsumugi search count: p50 {pct(cu, .5):.1f} us, p99 {pct(cu, .99):.1f} us over {len(cu)} queries "
          f"(text tokenized per query; target p50 <= 1000 us)")
    print(f"tsumugi search docs (10 documents with snippets): p50 {pct(du, .5):.1f} us, p99 {pct(du, .99):.1f} us")

    # ---- ripgrep on the same raw text
    raw = w("raw.txt")
    if not os.path.exists(raw) or os.path.getsize(raw) == 0 or not os.path.exists(w("raw.repeats")) \
            or open(w("raw.repeats")).read() != str(repeats):
        with open(raw, "w", encoding="utf-8") as f:
            block = "\n".join(texts) + "\n"
            for _ in range(repeats):
                f.write(block)
        open(w("raw.repeats"), "w").write(str(repeats))
    subprocess.run(["rg", "-c", "-F", "x", raw], capture_output=True)  # warm the page cache
    rg_times, agree, token_le_byte = [], 0, 0
    for q, c in list(zip(qs, counts))[: a.rg_queries]:
        t0 = time.perf_counter()
        p = subprocess.run(["rg", "--count-matches", "-F", "--", q, raw], capture_output=True, text=True)
        rg_times.append((time.perf_counter() - t0) * 1e6)
        byte_count = int(p.stdout.strip() or 0)
        tc = c.get("count", 0)
        agree += tc == byte_count
        token_le_byte += tc <= byte_count
    print(f"ripgrep --count-matches (whole-text scan, {os.path.getsize(raw) / 2**20:.0f} MiB): "
          f"p50 {pct(rg_times, .5) / 1e3:.1f} ms, p99 {pct(rg_times, .99) / 1e3:.1f} ms over {len(rg_times)} queries; "
          f"tsumugi count p50 is {pct(rg_times, .5) / pct(cu, .5):.0f}x faster")
    print(f"  counts: token-level == ripgrep's byte-level for {agree}/{len(rg_times)} queries, <= for {token_le_byte} "
          f"(a token count only counts occurrences tokenized as the query is)")

    # ---- infini-gram on the same tokens
    if a.no_infinigram:
        return
    ok = subprocess.run([SYSTEM_PYTHON, "-c", "import infini_gram"], capture_output=True).returncode == 0
    if not ok:
        p = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "install", "-q", "--break-system-packages", "--no-deps",
                            "infini-gram"], capture_output=True, text=True)
        ok = p.returncode == 0
        if not ok:
            print(f"infini-gram: does not install here ({p.stderr.strip()[-300:]}); skipped")
            return
    ig = w("infinigram")
    shutil.rmtree(ig, ignore_errors=True)
    os.makedirs(ig)
    # infini-gram's layout: each document is \xff\xff then its tokens, little-endian u16.
    bin_tokens = np.fromfile(w("corpus.bin"), dtype=np.uint16)
    pointers = np.frombuffer(idx, dtype=np.int64, count=seqs, offset=34 + 4 * seqs)
    offsets = []
    with open(os.path.join(ig, "tokenized.0"), "wb") as f:
        pos = 0
        for _ in range(repeats):
            for ln, ptr in zip(lengths, pointers):
                offsets.append(pos)
                doc = bin_tokens[ptr // 2: ptr // 2 + ln]
                f.write(b"\xff\xff")
                f.write(doc.astype("<u2").tobytes())
                pos += 2 + 2 * int(ln)
    np.array(offsets, dtype="<u8").tofile(os.path.join(ig, "offset.0"))
    build = (
        "import argparse, infini_gram.indexing as ix\n"
        f"ix.build_sa(argparse.Namespace(save_dir={ig!r}, temp_dir={ig!r}, worker_id=0, shards=1, workers=1, "
        f"mem=8, cpus={os.cpu_count()}, token_width=2))\n")
    secs, rss, cpu = timed([SYSTEM_PYTHON, "-c", build])
    ig_size = sum(os.path.getsize(os.path.join(ig, f)) for f in os.listdir(ig))
    print(f"infini-gram build (suffix array only, tokens written by this script): {secs:.1f} s wall, {cpu:.1f} s CPU, "
          f"{total / secs / 1e6:.2f} M tokens/s wall, {total / cpu / 1e6:.2f} M tokens per CPU-second, peak RSS {rss / 2**30:.2f} GiB, {ig_size / total:.2f} bytes/token")
    id_lists = json.dumps([c.get("tokens", []) for c in counts])
    probe = (
        "import json, sys, time\n"
        "from infini_gram.engine import InfiniGramEngine\n"
        f"e = InfiniGramEngine(index_dir={ig!r}, eos_token_id=0, vocab_size=65535, version=4, token_dtype='u16')\n"
        "qs = json.load(sys.stdin)\n"
        "for q in qs: e.count(input_ids=q)\n"
        "out = []\n"
        "for q in qs:\n"
        "    t0 = time.perf_counter(); r = e.count(input_ids=q); dt = (time.perf_counter() - t0) * 1e6\n"
        "    t1 = time.perf_counter(); e.search_docs(input_ids=q, maxnum=10); dd = (time.perf_counter() - t1) * 1e6\n"
        "    out.append([r.get('count', -1), dt, dd])\n"
        "print(json.dumps(out))\n")
    p = subprocess.run([SYSTEM_PYTHON, "-c", probe], input=id_lists, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"infini-gram engine failed: {p.stderr[-500:]}")
        return
    res = json.loads(p.stdout)
    same = sum(1 for (c, _, _), mine in zip(res, counts) if c == mine.get("count", -2))
    it = [r[1] for r in res]
    idd = [r[2] for r in res]
    print(f"infini-gram count (Python call into its C++ engine, ids given): p50 {pct(it, .5):.1f} us, "
          f"p99 {pct(it, .99):.1f} us; same counts as tsumugi for {same}/{len(res)} queries")
    print(f"infini-gram search_docs (maxnum=10): p50 {pct(idd, .5):.1f} us, p99 {pct(idd, .99):.1f} us")
    print(f"ratio count p50 tsumugi/infini-gram: {pct(cu, .5) / pct(it, .5):.2f} (tsumugi's includes tokenizing the text)")
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
