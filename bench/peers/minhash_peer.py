#!/usr/bin/env python3
"""MinHash/LSH near-dedup peer for `tsumugi corpus clean` (datasketch or rensa).

Shingles: the set of character n-grams of `text` (a text shorter than n is one shingle;
an empty text has none). Documents are processed in input order; a document is a
duplicate when its LSH query hits any earlier *kept* document (no Jaccard re-check);
otherwise it is inserted. Without --bands/--rows, datasketch's own optimum for
(threshold, num_perm) is used by both implementations.
"""
import argparse
import gzip
import json
import time
from importlib.metadata import version
from pathlib import Path

from datasketch import MinHash, MinHashLSH

BATCH = 4096  # rensa sketches are built in batches; LSH stays per document


def shingles(text: str, n: int) -> list[str]:
    if len(text) < n:
        return [text] if text else []
    return list({text[i:i + n] for i in range(len(text) - n + 1)})


def texts(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)["text"]


def run_datasketch(docs, a, b, r):
    lsh = MinHashLSH(threshold=a.threshold, num_perm=a.num_perm, params=(b, r))
    n = dup = 0
    for text in docs:
        m = MinHash(num_perm=a.num_perm, seed=a.seed)
        m.update_batch([s.encode("utf-8") for s in shingles(text, a.ngram)])
        if lsh.query(m):
            dup += 1
        else:
            lsh.insert(n, m)
        n += 1
    return n, dup


def run_rensa(docs, a, b, r):
    from rensa import RMinHash, RMinHashLSH

    if b * r != a.num_perm:
        raise SystemExit(f"rensa needs bands*rows == num_perm (got {b}*{r}); pass --bands/--rows")
    lsh = RMinHashLSH(a.threshold, a.num_perm, b)
    n = dup = 0

    def flush(batch):
        nonlocal n, dup
        for m in RMinHash.from_token_sets(batch, a.num_perm, a.seed):
            if lsh.query(m):
                dup += 1
            else:
                lsh.insert(n, m)
            n += 1

    batch = []
    for text in docs:
        batch.append(shingles(text, a.ngram))
        if len(batch) == BATCH:
            flush(batch)
            batch = []
    flush(batch)
    return n, dup


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("input", type=Path, help="JSONL or JSONL.gz with a `text` field")
    ap.add_argument("--impl", choices=["datasketch", "rensa"], required=True)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--num-perm", type=int, default=128)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--bands", type=int)
    ap.add_argument("--rows", type=int)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()

    if a.bands and a.rows:
        b, r = a.bands, a.rows
    elif a.bands or a.rows:
        k = a.bands or a.rows
        b, r = (k, a.num_perm // k) if a.bands else (a.num_perm // k, k)
    else:
        opt = MinHashLSH(threshold=a.threshold, num_perm=a.num_perm)
        b, r = opt.b, opt.r

    t0 = time.perf_counter()
    run = run_datasketch if a.impl == "datasketch" else run_rensa
    n, dup = run(texts(a.input), a, b, r)
    secs = time.perf_counter() - t0

    print(json.dumps({
        "peer": a.impl, "version": version(a.impl), "ngram": a.ngram, "num_perm": a.num_perm,
        "threshold": a.threshold, "bands": b, "rows": r, "docs": n, "duplicates": dup,
        "seconds": round(secs, 4), "docs_per_s": round(n / secs, 1),
    }))


if __name__ == "__main__":
    main()
