#!/usr/bin/env python3
"""Turn the clean tsumugi corpus into a deterministic "web-like dirty" mix.

Reads data/corpus/{ja,en,code}.jsonl.gz (see scripts/build_corpus.py) and writes
one JSONL file (gzip if the name ends in .gz) in which the clean documents are
interleaved with injected noise of the kinds a cleaning pipeline must handle.
Every injected document carries "synthetic": "<kind>", so tests can check what
a filter or deduplicator did:

  exact_dup    byte-identical copy of another document ("dup_of": its id)
  near_dup     copy with a few character edits ("dup_of": its id)
  url          document with lines containing URLs inserted
  boilerplate  document wrapped in ads / navigation / cookie-banner lines
  short        very short (or whitespace-only) document
  ascii_run    document with long runs of ASCII junk (==== / AAAA / base64)
  mixed_lang   paragraphs of ja, en and code documents spliced together
  repeat       (only with --scale > 1) a remixed copy of a clean document:
               paragraphs swapped/replaced and characters edited, so each
               repetition differs from the original

Clean documents are passed through unchanged and have no "synthetic" field.
Documents derived from one source keep its source/path/license fields and
name it in "src_id".  Output depends only on the input and --seed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import string
import sys
import tempfile

LANGS = ("ja", "en", "code")

BOILERPLATE = {
    "ja": [
        "送料無料 今すぐクリック",
        "【PR】今だけ50%OFF！詳しくはこちら",
        "ログイン | 新規会員登録 | カートを見る | ヘルプ",
        "この記事をシェアする: Twitter Facebook LINE はてブ",
        "当サイトではCookieを使用しています。同意する",
        "人気記事ランキング",
        "関連記事はこちら >>",
        "ページの先頭へ戻る",
        "Copyright © 2024 サンプル株式会社 All Rights Reserved.",
        "無料会員登録で500ポイントプレゼント！",
        "お問い合わせ | プライバシーポリシー | 利用規約 | サイトマップ",
    ],
    "en": [
        "Click here to subscribe to our newsletter!",
        "Home | About | Contact | Privacy Policy | Terms of Service",
        "We use cookies to improve your experience. Accept all",
        "Share this: Twitter Facebook Reddit Email",
        "SPONSORED: Buy 2 get 1 free - limited time offer!!!",
        "Copyright (c) 2024 Example Inc. All rights reserved.",
        "Read more >>",
        "Back to top",
        "Sign in | Register | Cart (0)",
    ],
}
URL_LINES = {
    "ja": ["詳しくは {url} をご覧ください", "出典: {url}", "▼公式サイトはこちら {url}",
           "参考リンク: {url} （外部サイト）", "{url}"],
    "en": ["Source: {url}", "More info at {url}", "Download: {url}",
           "Visit {url} for details", "{url}"],
}
# Reserved example domains (RFC 2606 / JPRS) so no real site is referenced.
URL_HOSTS = ["example.com", "www.example.org", "example.jp", "blog.example.net",
             "shop.example.co.jp", "t.example"]
SHORT_TEXTS = ["はい", "OK", "詳細はこちら", "test", "ありがとうございました！", "404 Not Found",
               "読み込み中...", "null", "いいね", "...", "   ", "\n"]


def read_jsonl(path: str) -> list[dict]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def text_lang(lang: str) -> str:
    # Code documents get English-style noise (comments/docs are English).
    return "ja" if lang == "ja" else "en"


def random_url(rng: random.Random) -> str:
    path = "/".join("".join(rng.choices(string.ascii_lowercase + string.digits,
                                        k=rng.randint(3, 10)))
                    for _ in range(rng.randint(1, 3)))
    url = f"{rng.choice(['http', 'https'])}://{rng.choice(URL_HOSTS)}/{path}"
    if rng.random() < 0.4:
        url += f"?id={rng.randint(1, 99999)}&utm_source=feed"
    return url


def char_edits(text: str, n: int, rng: random.Random) -> str:
    """Apply n random single-character insertions, deletions or substitutions."""
    chars = list(text)
    alphabet = [c for c in set(text) if not c.isspace()] or list("abc")
    alphabet.sort()  # set order varies between runs; sort for determinism
    for _ in range(n):
        op = rng.choice(("ins", "del", "sub")) if len(chars) > 1 else "ins"
        i = rng.randrange(len(chars) + (op == "ins"))
        if op == "ins":
            chars.insert(i, rng.choice(alphabet))
        elif op == "del":
            del chars[i]
        else:
            new = rng.choice(alphabet)
            if new == chars[i]:  # guarantee the edit changes something
                new = "x" if chars[i] != "x" else "y"
            chars[i] = new
    return "".join(chars)


def insert_lines(text: str, new_lines: list[str], rng: random.Random) -> str:
    lines = text.split("\n")
    for ln in new_lines:
        lines.insert(rng.randint(0, len(lines)), ln)
    return "\n".join(lines)


def ascii_junk(rng: random.Random) -> str:
    n = rng.randint(200, 3000)
    kind = rng.randrange(5)
    if kind == 0:
        return rng.choice("=-*#_~.") * n
    if kind == 1:
        return rng.choice(string.ascii_letters) * n
    if kind == 2:
        return "".join(rng.choices(string.ascii_letters + string.digits + "+/", k=n))
    if kind == 3:
        return ("0123456789" * (n // 10 + 1))[:n]
    return " ".join("".join(rng.choices("0123456789abcdef", k=8)) for _ in range(n // 9))


def remix(doc: dict, pool: list[dict], rng: random.Random) -> str:
    """A new but realistic variant of doc: shuffle/replace paragraphs, edit chars."""
    paras = doc["text"].split("\n\n")
    if len(paras) > 2:
        for _ in range(max(1, len(paras) // 5)):
            i = rng.randrange(len(paras) - 1)
            paras[i], paras[i + 1] = paras[i + 1], paras[i]
        for _ in range(max(1, len(paras) // 5)):
            other = rng.choice(pool)["text"].split("\n\n")
            paras[rng.randrange(len(paras))] = rng.choice(other)
    return char_edits("\n\n".join(paras), rng.randint(3, 10), rng)


def derived(src: dict, kind: str, new_id: str, text: str, **extra) -> dict:
    d = {"id": new_id, "text": text, "source": src["source"], "path": src["path"],
         "lang": src["lang"], "license": src["license"], "synthetic": kind,
         "src_id": src["id"]}
    d.update(extra)
    return d


def make_noise(kind: str, n: int, rep: int, base: list[dict], by_lang: dict,
               rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        src = rng.choice(base)
        nid = f"dirty:{rep}:{kind}:{i}"
        tl = text_lang(src["lang"])
        if kind == "exact_dup":
            out.append(derived(src, kind, nid, src["text"], dup_of=src["id"]))
        elif kind == "near_dup":
            out.append(derived(src, kind, nid, char_edits(src["text"], rng.randint(1, 5), rng),
                               dup_of=src["id"]))
        elif kind == "url":
            lines = [rng.choice(URL_LINES[tl]).format(url=random_url(rng))
                     for _ in range(rng.randint(1, 4))]
            out.append(derived(src, kind, nid, insert_lines(src["text"], lines, rng)))
        elif kind == "boilerplate":
            head = rng.sample(BOILERPLATE[tl], rng.randint(1, 3))
            tail = rng.sample(BOILERPLATE[tl], rng.randint(1, 3))
            text = "\n".join(head) + "\n\n" + src["text"].rstrip("\n") + "\n\n" + "\n".join(tail)
            out.append(derived(src, kind, nid, text + "\n"))
        elif kind == "short":
            if rng.random() < 0.5:
                text = rng.choice(SHORT_TEXTS)
            else:
                lines = [ln.strip() for ln in src["text"].split("\n") if ln.strip()]
                text = rng.choice(lines)[: rng.randint(1, 20)]
            out.append(derived(src, kind, nid, text))
        elif kind == "ascii_run":
            lines = [ascii_junk(rng) for _ in range(rng.randint(1, 3))]
            out.append(derived(src, kind, nid, insert_lines(src["text"], lines, rng)))
        elif kind == "mixed_lang":
            langs = [lg for lg in LANGS if by_lang.get(lg)]
            if len(langs) < 2:
                continue
            parts, ids = [], []
            for lg in rng.sample(langs, len(langs)):
                d = rng.choice(by_lang[lg])
                paras = [p for p in d["text"].split("\n\n") if p.strip()] or [d["text"]]
                k = rng.randint(1, min(3, len(paras)))
                start = rng.randrange(len(paras) - k + 1)
                parts.extend(paras[start:start + k])
                ids.append(d["id"])
            rng.shuffle(parts)
            out.append({"id": nid, "text": "\n\n".join(parts) + "\n", "source": "mixed",
                        "path": "", "lang": "mixed", "license": "mixed (see src_ids)",
                        "synthetic": kind, "src_ids": ids})
    return out


KINDS = ("exact_dup", "near_dup", "url", "boilerplate", "short", "ascii_run", "mixed_lang")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--in", dest="inp", default="data/corpus", help="clean corpus directory")
    ap.add_argument("--out", required=True, help="output .jsonl or .jsonl.gz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--scale", type=int, default=1,
                    help="repetitions of the corpus; repetitions after the first are remixed")
    ap.add_argument("--rate", type=float, default=0.03,
                    help="injected docs of each kind per clean doc, per repetition")
    ap.add_argument("--langs", default="ja,en,code")
    ap.add_argument("--max-docs-per-lang", type=int, default=None,
                    help="use only the first N documents of each language (quick demos)")
    args = ap.parse_args(argv)
    if args.scale < 1:
        ap.error("--scale must be >= 1")

    by_lang: dict[str, list[dict]] = {}
    for lg in args.langs.split(","):
        if lg not in LANGS:
            ap.error(f"unknown language {lg!r}")
        path = os.path.join(args.inp, f"{lg}.jsonl.gz")
        docs = read_jsonl(path)[: args.max_docs_per_lang]
        by_lang[lg] = docs
        print(f"loaded {len(docs)} {lg} docs from {path}", file=sys.stderr)
    clean = [d for lg in LANGS for d in by_lang.get(lg, [])]
    if not clean:
        ap.error("no input documents")

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(args.out) + ".", dir=out_dir)
    counts: dict[str, int] = {}
    n_bytes = 0
    try:
        with os.fdopen(fd, "wb") as raw:
            # mtime=0 and no file name: identical runs give identical bytes.
            sink = (gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
                    if args.out.endswith(".gz") else raw)
            for rep in range(args.scale):
                # String seeds are hashed with SHA-512, independent of PYTHONHASHSEED.
                rng = random.Random(f"tsumugi-dirty:{args.seed}:{rep}")
                if rep == 0:
                    base = list(clean)
                else:
                    base = [derived(d, "repeat", f"{d['id']}#rep{rep}",
                                    remix(d, by_lang[d["lang"]], rng), rep=rep)
                            for d in clean]
                docs = list(base)
                rep_by_lang = {lg: [d for d in base if d["lang"] == lg] for lg in by_lang}
                for kind in KINDS:
                    n = max(1, round(args.rate * len(base)))
                    docs.extend(make_noise(kind, n, rep, base, rep_by_lang, rng))
                rng.shuffle(docs)  # interleave languages and noise
                for d in docs:
                    k = d.get("synthetic", "clean")
                    counts[k] = counts.get(k, 0) + 1
                    line = json.dumps(d, ensure_ascii=False)
                    line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
                    data = (line + "\n").encode("utf-8")
                    n_bytes += len(data)
                    sink.write(data)
                print(f"repetition {rep + 1}/{args.scale}: {len(docs)} docs", file=sys.stderr)
            if sink is not raw:
                sink.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    total = sum(counts.values())
    print(f"wrote {args.out}: {total} docs, {n_bytes} bytes uncompressed; "
          + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
