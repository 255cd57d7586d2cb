#!/usr/bin/env python3
"""Compare what HojiChar (the LLM-jp v1 peer) and `tsumugi corpus clean` kept from one input.

HojiChar's side is the chain of bench/peers/hojichar_llmjp_v1.py, applied here document by
document so that each verdict stays tied to the input's id (the peer's own output has only
the text). --hoji-out, the peer's output file, is checked to hold exactly the texts kept here,
in the same order. tsumugi's side is its output directory: kept-*.jsonl.zst and
rejects.jsonl.zst (read with the `zstd` program).

Prints the agreement table and the first disagreements with the filter each side rejected
them with (tsumugi's reason from its rejects file). Exits 0 when both kept the same ids
with byte-identical texts, 1 otherwise.
"""
import argparse
import glob
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

# HojiChar filter (class name, or position for the two NonEmpty) -> tsumugi filter name.
HOJI_TO_TS = {
    "AcceptJapanese": "accept_japanese",
    "DiscardAds": "ng_ads",
    "DiscardAdultContentJa": "ng_adult",
    "DiscardDiscriminationContentJa": "ng_discrimination",
    "DiscardViolenceContentJa": "ng_violence",
    "DiscardRareKuten": "kuten_run",
    "CompressionRatio": "compression_ratio",
}


def load_peer(path: Path):
    spec = importlib.util.spec_from_file_location("hojichar_llmjp_v1", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


LINES_ONLY = False


def hoji_filter_name(reason: dict) -> str:
    name = reason.get("name", "?")  # "<position>-<Class>"
    pos, _, cls = name.partition("-")
    if cls == "NonEmpty":  # the first one runs before AcceptJapanese, the last after line extraction
        return "accept_japanese" if pos == "1" and not LINES_ONLY else "line_filter_ja"
    return HOJI_TO_TS.get(cls, name)


def zstd_lines(path: str):
    out = subprocess.run(["zstd", "-dcq", path], check=True, capture_output=True).stdout
    return out.decode("utf-8").splitlines()


def first_diff(a: str, b: str) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", required=True, help="the JSONL both sides read (with an 'id' field)")
    ap.add_argument("--peer", default=str(Path(__file__).with_name("hojichar_llmjp_v1.py")))
    ap.add_argument("--hoji-out", help="the peer's --out file, checked against the verdicts computed here")
    ap.add_argument("--ts-dir", required=True, help="tsumugi corpus clean output directory")
    ap.add_argument("--chain", choices=["llmjp", "lines"], default="llmjp",
                    help="the peer's whole LLM-jp chain, or only its line extraction + emptiness check")
    ap.add_argument("--show", type=int, default=5, help="disagreements listed per kind")
    a = ap.parse_args()

    global LINES_ONLY
    LINES_ONLY = a.chain == "lines"
    peer = load_peer(Path(a.peer))
    from hojichar import Document

    if a.chain == "llmjp":
        compose = peer.build(None, False, False)  # the peer's defaults: LLM-jp order, lines joined with ""
    else:  # only the line extraction (and the emptiness check after it)
        from hojichar import Compose
        from hojichar.filters import document_filters as df

        compose = Compose([df.JSONLoader(key="text"), peer.ExtractJapaneseLines(""), peer.NonEmpty(),
                           df.JSONDumper(skip_rejected=True)])
    ids, src = [], {}
    hoji_kept, hoji_rej = {}, {}
    with open(a.input, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            i = rec["id"]
            if i in src:
                sys.exit(f"duplicate id {i!r} in {a.input}")
            ids.append(i)
            src[i] = rec["text"]
            doc = compose.apply(Document(line.rstrip("\n")))
            if doc.is_rejected:
                hoji_rej[i] = hoji_filter_name(doc.reject_reason)
            else:
                hoji_kept[i] = json.loads(doc.text)["text"]

    if a.hoji_out and a.chain == "llmjp":
        with open(a.hoji_out, encoding="utf-8") as f:
            peer_texts = [json.loads(l)["text"] for l in f if l.strip()]
        mine = [hoji_kept[i] for i in ids if i in hoji_kept]
        if peer_texts != mine:
            sys.exit(f"{a.hoji_out} does not hold the texts kept here ({len(peer_texts)} vs {len(mine)} docs)")

    ts_kept, ts_rej = {}, {}
    for shard in sorted(glob.glob(os.path.join(a.ts_dir, "kept-*.jsonl*"))):
        lines = zstd_lines(shard) if shard.endswith(".zst") else open(shard, encoding="utf-8").read().splitlines()
        for l in lines:
            rec = json.loads(l)
            ts_kept[rec["id"]] = rec["text"]
    rej_path = os.path.join(a.ts_dir, "rejects.jsonl.zst")
    if os.path.exists(rej_path):
        for l in zstd_lines(rej_path):
            rec = json.loads(l)
            ts_rej[rec["id"]] = (rec["reject"]["filter"], rec["reject"]["reason"])
    missing = [i for i in ids if i not in ts_kept and i not in ts_rej]
    if missing:
        sys.exit(f"{len(missing)} input ids neither kept nor rejected by tsumugi (e.g. {missing[0]!r})")

    n = len(ids)
    both = [i for i in ids if i in hoji_kept and i in ts_kept]
    only_hoji = [i for i in ids if i in hoji_kept and i not in ts_kept]
    only_ts = [i for i in ids if i in ts_kept and i not in hoji_kept]
    same_text = [i for i in both if hoji_kept[i] == ts_kept[i]]
    diff_text = [i for i in both if hoji_kept[i] != ts_kept[i]]
    rej_both = [i for i in ids if i in hoji_rej and i in ts_rej]
    same_filter = [i for i in rej_both if hoji_rej[i] == ts_rej[i][0]]
    pct = lambda x, d: f"{100.0 * x / d:.2f}%" if d else "n/a"

    print(f"| | documents |")
    print(f"|---|---|")
    print(f"| input | {n} |")
    print(f"| kept by HojiChar | {len(hoji_kept)} |")
    print(f"| kept by tsumugi | {len(ts_kept)} |")
    print(f"| kept by both | {len(both)} |")
    print(f"| kept only by HojiChar | {len(only_hoji)} |")
    print(f"| kept only by tsumugi | {len(only_ts)} |")
    print(f"| same keep/reject decision | {n - len(only_hoji) - len(only_ts)} of {n} ({pct(n - len(only_hoji) - len(only_ts), n)}) |")
    print(f"| byte-identical text, of kept by both | {len(same_text)} of {len(both)} ({pct(len(same_text), len(both))}) |")
    print(f"| same rejecting filter, of rejected by both | {len(same_filter)} of {len(rej_both)} ({pct(len(same_filter), len(rej_both))}) |")

    by_filter = {}
    for i in ids:
        if i in hoji_rej:
            by_filter.setdefault(hoji_rej[i], [0, 0])[0] += 1
        if i in ts_rej:
            by_filter.setdefault(ts_rej[i][0], [0, 0])[1] += 1
    print("\n| rejected by | HojiChar | tsumugi |\n|---|---|---|")
    for k, (h, t) in by_filter.items():
        print(f"| {k} | {h} | {t} |")

    def show(title, items, fmt):
        if items:
            print(f"\n{title} ({len(items)}; first {min(a.show, len(items))}):")
            for i in items[: a.show]:
                print("  " + fmt(i))

    show("kept only by HojiChar", only_hoji, lambda i: f"{i}: tsumugi {ts_rej[i][0]}: {ts_rej[i][1]}")
    show("kept only by tsumugi", only_ts, lambda i: f"{i}: HojiChar {hoji_rej[i]}")
    wrong_filter = [i for i in rej_both if hoji_rej[i] != ts_rej[i][0]]
    show("rejected by both, by different filters", wrong_filter,
         lambda i: f"{i}: HojiChar {hoji_rej[i]}, tsumugi {ts_rej[i][0]}: {ts_rej[i][1]}")

    def text_diff(i):
        h, t = hoji_kept[i], ts_kept[i]
        k = first_diff(h, t)
        return (f"{i}: lengths {len(h)} / {len(t)}, first difference at char {k}: "
                f"HojiChar {h[max(0, k - 30):k + 30]!r} / tsumugi {t[max(0, k - 30):k + 30]!r}")

    show("kept by both, texts differ", diff_text, text_diff)
    ok = not only_hoji and not only_ts and not diff_text
    print("\nagreement: " + ("FULL" if ok else "INCOMPLETE"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
