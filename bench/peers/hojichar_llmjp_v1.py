#!/usr/bin/env python3
"""HojiChar peer for `tsumugi corpus clean`: the LLM-jp corpus v1 (ja_cc) filter chain.

Rules (llm-jp-corpus v1.0.x, `filter_data.py` for ja_cc, hojichar==0.9.0 classes),
applied in the same order as LLM-jp: document filters on the raw text first, then
line extraction, then an emptiness check.

  not empty              text.strip() != ""                          NonEmpty (local)
  AcceptJapanese         kana in the first 50 chars                  AcceptJapanese(lookup_size=50)
  ad keywords <= 10      occurrence count, hojichar ad dict          DiscardAds(max_allowed_num=10)
  adult / discrimination / violence <= 3 each (katakana words standalone)
                         DiscardAdultContentJa / DiscardDiscriminationContentJa /
                         DiscardViolenceContentJa with ignore_confused=True, counting
                         matches instead of rejecting on the first (as LLM-jp does)
  avg sentence <= 250    DiscardRareKuten(max_average_sentence_length=250)
  zlib ratio in [.3,.7]  CompressionRatio (local; level 9, compressed/raw UTF-8 bytes)
  line extraction        ExtractJapaneseLines (local): keep lines with kana, cut URL
                         spans and 100+ ASCII runs out of them
  not empty              NonEmpty (local)

Domain filtering (meta.url TLD) is not applied: inputs carry only `text`.
"""
import argparse
import gzip
import json
import time
import zlib
from importlib.metadata import version
from pathlib import Path

import regex
from hojichar import Compose, Document, Filter, Parallel
from hojichar.filters import document_filters as df

KANA = regex.compile(r"[\p{Script=Hiragana}\p{Script=Katakana}ー]")
URL = regex.compile(r"https?://[\w/:%#\$&\?\(\)~\.=\+\-]+")
ASCII_RUN = regex.compile(r"[\x00-\x7f]{100,}")


class NonEmpty(Filter):
    def apply(self, doc: Document) -> Document:
        if not doc.text.strip():
            doc.is_rejected = True
        return doc


class CompressionRatio(Filter):
    def __init__(self, lo: float = 0.30, hi: float = 0.70, **kw) -> None:
        super().__init__(**kw)
        self.lo, self.hi = lo, hi

    def apply(self, doc: Document) -> Document:
        raw = doc.text.encode("utf-8")
        ratio = len(zlib.compress(raw, 9)) / len(raw) if raw else 0.0
        if not self.lo <= ratio <= self.hi:
            doc.is_rejected = True
        return doc


class ExtractJapaneseLines(Filter):
    def __init__(self, sep: str = "", **kw) -> None:
        super().__init__(**kw)
        self.sep = sep  # LLM-jp v1 joins the kept lines with no separator

    def apply(self, doc: Document) -> Document:
        doc.text = self.sep.join(
            ASCII_RUN.sub("", URL.sub("", line)) for line in doc.text.split("\n") if KANA.search(line)
        )
        return doc


def counting(cls):
    """Turn a hojichar NG-word class (reject on first hit) into LLM-jp's count threshold."""

    class Counting(cls):
        def __init__(self, max_allowed_num: int, dict_path=None, **kw) -> None:
            if dict_path is not None:
                kw["dict_path"] = dict_path
            super().__init__(ignore_confused=True, **kw)
            self.max_allowed_num = max_allowed_num

        def apply(self, doc: Document) -> Document:
            if len(self.keyword_pat.findall(doc.text)) > self.max_allowed_num:
                doc.is_rejected = True
            return doc

    Counting.__name__ = Counting.__qualname__ = cls.__name__
    return Counting


AdultJa = counting(df.DiscardAdultContentJa)
DiscriminationJa = counting(df.DiscardDiscriminationContentJa)
ViolenceJa = counting(df.DiscardViolenceContentJa)


def build(dict_dir: Path | None, lines_first: bool, keep_newlines: bool) -> Compose:
    def dict_for(cat: str):  # LLM-jp file names: ja_{adult,discrimination,violence}_keywords.txt
        return None if dict_dir is None else dict_dir / f"ja_{cat}_keywords.txt"

    doc_filters = [
        NonEmpty(),
        df.AcceptJapanese(lookup_size=50),
        df.DiscardAds(max_allowed_num=10),
        AdultJa(3, dict_for("adult")),
        DiscriminationJa(3, dict_for("discrimination")),
        ViolenceJa(3, dict_for("violence")),
        df.DiscardRareKuten(max_average_sentence_length=250),
        CompressionRatio(0.30, 0.70),
    ]
    lines = [ExtractJapaneseLines("\n" if keep_newlines else ""), NonEmpty()]
    chain = lines + doc_filters if lines_first else doc_filters + lines
    return Compose([df.JSONLoader(key="text"), *chain, df.JSONDumper(skip_rejected=True)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", type=Path, help="JSONL or JSONL.gz with a `text` field")
    ap.add_argument("--out", type=Path, help="kept documents as JSONL (default: discarded)")
    ap.add_argument("--workers", type=int, default=1, help=">1 uses hojichar.Parallel")
    ap.add_argument("--dict-dir", type=Path, help="NG word files named as in llm-jp-corpus scripts/dict/ "
                    "(default: hojichar's bundled dicts)")
    ap.add_argument("--lines-first", action="store_true", help="extract lines before the document filters")
    ap.add_argument("--keep-newlines", action="store_true", help="join kept lines with \\n instead of ''")
    a = ap.parse_args()

    compose = build(a.dict_dir, a.lines_first, a.keep_newlines)
    stats = {"docs_in": 0, "bytes_in": 0}

    def docs(fin):
        for line in fin:
            stats["bytes_in"] += len(line)
            if line.strip():
                stats["docs_in"] += 1
                yield Document(line.decode("utf-8"))

    docs_out = 0
    t0 = time.perf_counter()
    opener = gzip.open if a.input.suffix == ".gz" else open
    with opener(a.input, "rb") as fin, open(a.out or "/dev/null", "w", encoding="utf-8") as fout:
        if a.workers > 1:
            with Parallel(compose, num_jobs=a.workers, ordered=True) as par:
                for doc in par.imap_apply(docs(fin)):
                    if not doc.is_rejected:
                        fout.write(doc.text + "\n")
                        docs_out += 1
        else:
            for doc in docs(fin):
                doc = compose.apply(doc)
                if not doc.is_rejected:
                    fout.write(doc.text + "\n")
                    docs_out += 1
    secs = time.perf_counter() - t0

    print(json.dumps({
        "peer": "hojichar", "version": version("hojichar"), "workers": a.workers,
        "docs_in": stats["docs_in"], "docs_out": docs_out, "bytes_in": stats["bytes_in"],
        "seconds": round(secs, 4), "mb_per_s": round(stats["bytes_in"] / 1e6 / secs, 3),
    }))


if __name__ == "__main__":
    main()
