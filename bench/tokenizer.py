#!/usr/bin/env python3
"""Tokenizer benchmark: tsumugi against SentencePiece 0.1.97 (Debian `sentencepiece`) and Hugging
Face `tokenizers` (PyPI, the version pinned in tests/requirements.txt), all in one run on one
machine. Run it through bench/tokenizer.sh, which checks the tools first.

Training: `tsumugi tokenizer train` and `spm_train` with the same options and vocabulary size on
the bundled ja + en + code text: wall seconds and peak RSS (/usr/bin/time; best of --train-repeat
alternating runs), and the tokens each model needs for the ja and en text (so a faster trainer is
not buying speed with a worse model).

Encoding, on the bundled Japanese and English text with spm_train's model (so the peer runs its
own model) and HF tokenizers on tsumugi's export of that model (`tokenizer export-hf`):
  spm_encode                 1 thread (the CLI has no threads option)
  tsumugi tokenizer encode   -j 1 and -j all cores
  HF tokenizers              encode_batch_fast with 1 rayon thread and with all cores
  tsumugi tokenize           JSONL.gz -> Megatron .bin/.idx, -j 1 and all cores (the production path)
Timings are the best of --repeat rounds; each round runs every configuration once, so a burst of
other load on a shared machine hits all tools alike. spm_encode and tsumugi are timed as whole
processes (start, model load, reading stdin, writing ids); HF tokenizers only inside
encode_batch_fast (no Python start, file reading or output), which favours it. Every tool's ids
are compared with spm_encode's, line by line.
"""
import argparse
import datetime
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def timed(cmd, stdin_path=None, stdout_path=None, env=None):
    """Wall seconds of one run of cmd (stdin/stdout redirected to files)."""
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    fout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        subprocess.run(cmd, stdin=fin, stdout=fout, stderr=subprocess.PIPE, check=True, env=env)
        return time.perf_counter() - t0
    finally:
        if stdin_path:
            fin.close()
        if stdout_path:
            fout.close()


def time_v(cmd, log_path):
    """(wall seconds, peak RSS in MB) of cmd under /usr/bin/time."""
    tfile = log_path + ".time"
    with open(log_path, "wb") as log:
        subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", tfile] + cmd, stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    wall, rss_kb = open(tfile).read().split()[-2:]
    return float(wall), int(rss_kb) / 1024


def read_lines(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def compare(ref_lines, path):
    """(identical lines, differing lines that hold the same ids in another order)."""
    got = read_lines(path)
    if len(got) != len(ref_lines):
        return 0, 0
    same = reordered = 0
    for a, b in zip(ref_lines, got):
        if a == b:
            same += 1
        elif sorted(a.split()) == sorted(b.split()):
            reordered += 1
    return same, reordered


def count_tokens(path):
    n = 0
    with open(path, "rb") as f:
        for line in f:
            n += len(line.split())
    return n


def machine():
    cpu = "?"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            cpu = line.split(":", 1)[1].strip()
    osname = platform.platform()
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return cpu, osname


def load():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="build directory holding tsumugi")
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--models", default="unigram,bpe", help="model types to train and encode with")
    ap.add_argument("--corpora", default="ja,en", help="bundled corpora to encode")
    ap.add_argument("--repeat", type=int, default=5, help="encode runs per measurement (best is kept)")
    ap.add_argument("--train-repeat", type=int, default=2, help="training runs per tool, alternating (best is kept)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="'all cores' (default: nproc)")
    ap.add_argument("--skip-train-bench", action="store_true",
                    help="train only spm's models (once, untimed) and run the encode benchmark")
    ap.add_argument("--work", help="scratch directory (default: a fresh temporary one, removed at the end)")
    args = ap.parse_args()

    tsumugi = os.path.join(args.build, "tsumugi")
    if not os.access(tsumugi, os.X_OK):
        sys.exit(f"{tsumugi} not found: build first (make build) or pass --build DIR")
    work = args.work or tempfile.mkdtemp(prefix="tsumugi-tok-bench-")
    os.makedirs(work, exist_ok=True)
    nthreads = args.threads
    models = [m for m in args.models.split(",") if m]
    corpora = [c for c in args.corpora.split(",") if c]
    import tokenizers  # bench/tokenizer.sh installs it when missing

    cpu, osname = machine()
    spm_version = subprocess.run(["spm_train", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {cpu}, {nthreads} cores ('all cores' below), {osname}; {datetime.date.today()}")
    print(f"peers: {spm_version} (spm_train, spm_encode), HF tokenizers {tokenizers.__version__}; "
          f"tsumugi and the peers run in this same run, one after another")
    print(f"load average at start: {load()}")
    sys.stdout.flush()

    # The `text` of every record, split into lines (what spm_train / spm_encode read).
    text = {}
    for c in sorted(set(corpora) | {"ja", "en", "code"}):
        path = os.path.join(work, c + ".txt")
        with gzip.open(os.path.join(ROOT, "data", "corpus", c + ".jsonl.gz"), "rt", encoding="utf-8") as f, \
                open(path, "w", encoding="utf-8") as out:
            for rec in f:
                out.write(json.loads(rec)["text"] + "\n")
        text[c] = path
    train_txt = os.path.join(work, "train.txt")
    with open(train_txt, "wb") as out:
        for c in ("ja", "en", "code"):
            with open(text[c], "rb") as f:
                shutil.copyfileobj(f, out)
    mb_train = os.path.getsize(train_txt) / 1e6

    # ---- training ---------------------------------------------------------------------------
    train_rows = []
    for m in models:
        spm_prefix = os.path.join(work, "spm-" + m)
        ours_prefix = os.path.join(work, "tsumugi-" + m)
        spm_cmd = ["spm_train", f"--input={train_txt}", f"--model_prefix={spm_prefix}", f"--model_type={m}",
                   f"--vocab_size={args.vocab_size}", "--normalization_rule_name=identity", "--byte_fallback=true",
                   f"--num_threads={nthreads}", "--minloglevel=1"]
        ours_cmd = [tsumugi, "tokenizer", "train", "--input", train_txt, "-o", ours_prefix, "--model-type", m,
                    "--vocab-size", str(args.vocab_size), "--normalization-rule-name", "identity",
                    "--byte-fallback", "true", "--num-threads", str(nthreads)]
        if args.skip_train_bench:
            run(spm_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            continue
        print(f"training {m} (vocab {args.vocab_size}) with spm_train and tsumugi ...", file=sys.stderr)
        # Alternating rounds, best time of each (with that run's peak RSS): a burst of other load
        # during one long training run does not decide the comparison.
        spm_s = ours_s = float("inf")
        for _ in range(max(1, args.train_repeat)):
            s, rss = time_v(spm_cmd, spm_prefix + ".log")
            if s < spm_s:
                spm_s, spm_rss = s, rss
            s, rss = time_v(ours_cmd, ours_prefix + ".log")
            if s < ours_s:
                ours_s, ours_rss = s, rss
        # Tokens each model needs for the ja + en text (encoded by tsumugi, which equals spm_encode).
        toks = {}
        for who, prefix in (("spm", spm_prefix), ("tsumugi", ours_prefix)):
            n = 0
            for c in ("ja", "en"):
                out = os.path.join(work, f"count-{who}-{m}-{c}.ids")
                run([tsumugi, "tokenizer", "encode", "--model", prefix + ".model", "-j", str(nthreads), text[c],
                     "-o", out])
                n += count_tokens(out)
                os.remove(out)
            toks[who] = n
        train_rows.append((m, spm_s, spm_rss, ours_s, ours_rss, toks["spm"], toks["tsumugi"]))

    if train_rows:
        print()
        print(f"Training on the bundled ja + en + code text ({mb_train:.1f} MB, one sentence a line), vocab "
              f"{args.vocab_size}, identity normalization, byte fallback, {nthreads} threads, other options at "
              f"spm_train's defaults; best wall time of {args.train_repeat} alternating runs and its peak RSS, from "
              f"/usr/bin/time:")
        print()
        print("| model | tool | seconds | peak RSS | speed vs spm_train | tokens for ja + en text |")
        print("|---|---|---|---|---|---|")
        for m, spm_s, spm_rss, ours_s, ours_rss, spm_t, ours_t in train_rows:
            print(f"| {m} | spm_train | {spm_s:.1f} | {spm_rss:.0f} MB | 1.00x | {spm_t:,} |")
            print(f"| {m} | tsumugi tokenizer train | {ours_s:.1f} | {ours_rss:.0f} MB | {spm_s / ours_s:.2f}x | "
                  f"{ours_t:,} ({ours_t / spm_t:.4f} of spm) |")
        sys.stdout.flush()

    # ---- encoding ---------------------------------------------------------------------------
    print()
    print(f"Encoding with spm_train's model (above; for HF: its `tsumugi tokenizer export-hf` tokenizer.json), "
          f"best of {args.repeat} rounds; 'identical' = lines whose ids equal spm_encode's; text: "
          + ", ".join(f"{c} {os.path.getsize(text[c]) / 1e6:.1f} MB" for c in corpora) + ":")
    print()
    print("| model | corpus | tool | threads | MB/s | M tokens/s | vs spm_encode | vs HF, same threads | identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    sys.stdout.flush()
    peer = os.path.join(ROOT, "bench", "peers", "hf_tokenizers_encode.py")
    tokenize_rows = []
    for m in models:
        model = os.path.join(work, f"spm-{m}.model")
        hf_dir = os.path.join(work, f"hf-{m}")
        run([tsumugi, "-q", "tokenizer", "export-hf", "--model", model, "-o", hf_dir], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for c in corpora:
            src = text[c]
            mb = os.path.getsize(src) / 1e6
            hf_json = os.path.join(hf_dir, "tokenizer.json")
            jsonl = os.path.join(ROOT, "data", "corpus", c + ".jsonl.gz")
            # Every configuration runs once per round, rounds repeated: a burst of other load
            # on the machine hits all tools alike instead of all runs of one tool.
            configs = [("spm_encode", 1), ("tsumugi tokenizer encode", 1), ("tsumugi tokenizer encode", nthreads),
                       ("HF", 1), ("HF", nthreads), ("tokenize", 1), ("tokenize", nthreads)]
            best = {}
            outputs = {}
            for rnd in range(args.repeat):
                for tool, j in configs:
                    out_path = os.path.join(work, f"out-{tool.split()[0]}-{j}.ids")
                    if tool == "spm_encode":
                        s = timed(["spm_encode", f"--model={model}", "--output_format=id"], src, out_path)
                    elif tool.startswith("tsumugi"):
                        s = timed([tsumugi, "tokenizer", "encode", "--model", model, "-j", str(j)], src, out_path)
                    elif tool == "HF":
                        r = subprocess.run([sys.executable, peer, "--tokenizer", hf_json, "--input", src, "--threads",
                                            str(j), "--repeat", "1"] + (["--ids", out_path] if rnd == 0 else []),
                                           check=True, capture_output=True, text=True)
                        s = json.loads(r.stdout)["seconds"]
                    else:
                        out_path = os.path.join(work, f"shard-{m}-{c}-{j}")
                        s = timed([tsumugi, "-q", "tokenize", "--model", model, "-j", str(j), "--no-progress",
                                   "--no-summary", "-o", out_path, jsonl])
                    best[(tool, j)] = min(best.get((tool, j), s), s)
                    outputs[(tool, j)] = out_path
            ref = read_lines(outputs[("spm_encode", 1)])
            nlines = len(ref)
            spm_s = best[("spm_encode", 1)]
            hf = {j: best[("HF", j)] for j in (1, nthreads)}
            for tool, j in configs:
                if tool == "tokenize":
                    prefix = outputs[(tool, j)]
                    toks = os.path.getsize(prefix + ".bin") // (2 if args.vocab_size < 65500 else 4)
                    tokenize_rows.append((m, c, j, best[(tool, j)], mb, toks, prefix))
                    continue
                s = best[(tool, j)]
                same, reord = compare(ref, outputs[(tool, j)])
                tok = count_tokens(outputs[(tool, j)])
                name = f"HF tokenizers {tokenizers.__version__}" if tool == "HF" else tool
                vs_hf = f"{hf[j] / s:.2f}x" if tool.startswith("tsumugi") else ("1.00x" if tool == "HF" else "")
                ident = f"{same}/{nlines}" + (f" ({reord} reordered ties)" if reord else "")
                print(f"| {m} | {c} | {name} | {j} | {mb / s:.1f} | {tok / s / 1e6:.2f} | {spm_s / s:.2f}x | {vs_hf} "
                      f"| {ident} |")
            sys.stdout.flush()
    if tokenize_rows:
        print()
        print("`tsumugi tokenize` (JSONL.gz -> Megatron .bin/.idx, one sequence per document + EOD; MB/s over the "
              "same text bytes; gzip and JSON parsing included):")
        print()
        print("| model | corpus | threads | MB/s | M tokens/s | .bin identical to 1 thread |")
        print("|---|---|---|---|---|---|")
        first = {}
        for m, c, j, s, mb, toks, prefix in tokenize_rows:
            data = open(prefix + ".bin", "rb").read() + open(prefix + ".idx", "rb").read()
            same = first.setdefault((m, c), data) == data
            print(f"| {m} | {c} | {j} | {mb / s:.1f} | {toks / s / 1e6:.2f} | {'yes' if same else 'NO'} |")
    print()
    print(f"load average at end: {load()}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
