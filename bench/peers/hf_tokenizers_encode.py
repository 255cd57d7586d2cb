#!/usr/bin/env python3
"""Encode peer for bench/tokenizer.sh: Hugging Face `tokenizers` (Rust, PyPI; the version pinned
in tests/requirements.txt) on a tokenizer.json written by `tsumugi tokenizer export-hf`.

Reads text lines, encodes them all with Tokenizer.encode_batch_fast (tokenizers' fastest batch
API: no offsets) and reports the best wall time of --repeat runs of that call alone, so Python's
file reading and decoding are not counted against it. Special-token text is encoded as literal
text (encode_special_tokens = True), as SentencePiece does. --ids writes the ids in
spm_encode's format (space-separated, one line per input line) for the identical-output check.

Threads: tokenizers parallelizes batches with rayon. RAYON_NUM_THREADS must be set before the
module is imported (the pool is created once), so --threads sets it here; with one thread
TOKENIZERS_PARALLELISM=false also takes rayon out of the path entirely.

Prints one JSON object: {"seconds", "tokens", "lines", "threads", "version"}.
"""
import argparse
import json
import os
import sys
import time


def spm_text(b):
    """bytes -> str as SentencePiece reads a line: each byte that does not start a valid UTF-8
    character becomes U+FFFD (the bundled corpora are valid UTF-8; this keeps odd input honest)."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out, i, n = [], 0, len(b)
    while i < n:
        c = b[i]
        ln = 1 if c < 0x80 else 2 if 0xC2 <= c < 0xE0 else 3 if 0xE0 <= c < 0xF0 else 4 if 0xF0 <= c < 0xF5 else 0
        if ln:
            try:
                out.append(b[i:i + ln].decode("utf-8"))
                i += ln
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        i += 1
    return "".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--input", required=True, help="text, one line per sentence")
    ap.add_argument("--threads", type=int, required=True, help="rayon threads (1: no parallelism)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs; the best is reported")
    ap.add_argument("--ids", help="write the ids of the last run here, as spm_encode --output_format=id")
    args = ap.parse_args()
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if args.threads > 1 else "false"
    try:
        import tokenizers
    except ImportError:
        print("the Python package `tokenizers` is not installed (pip install -r tests/requirements.txt)",
              file=sys.stderr)
        return 3

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    tok.encode_special_tokens = True
    with open(args.input, "rb") as f:
        data = f.read()
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    texts = [spm_text(r) for r in raw]

    best = None
    encodings = None
    for _ in range(max(1, args.repeat)):
        encodings = None  # free the previous run's results outside the timed region
        t0 = time.perf_counter()
        encodings = tok.encode_batch_fast(texts, add_special_tokens=False)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)

    tokens = 0
    lines = []
    for e in encodings:
        ids = e.ids
        tokens += len(ids)
        if args.ids:
            lines.append(" ".join(map(str, ids)))
    if args.ids:
        with open(args.ids, "w", encoding="ascii") as f:
            f.write("\n".join(lines))
            if lines:
                f.write("\n")
    print(json.dumps({"seconds": best, "tokens": tokens, "lines": len(texts), "threads": args.threads,
                      "version": tokenizers.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
