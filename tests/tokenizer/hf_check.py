#!/usr/bin/env python3
"""Encodes text lines with a Hugging Face `tokenizers` tokenizer.json and compares the ids with
what spm_encode --output_format=id printed for the same lines.

Used by tests/tokenizer_hf_export_test.cc. Exit status: 0 when the comparison ran (the verdict is
in the JSON report), 3 when the `tokenizers` package is missing, 1 on any other error.

Each input line is compared twice:
  default          Tokenizer.encode(line, add_special_tokens=False), as an HF user calls it: text
                   equal to a special added token (<s>, </s>, <unk>, control symbols) becomes that
                   token, which SentencePiece never does;
  literal_special  the same with tokenizer.encode_special_tokens = True, so special tokens typed
                   in the text are ordinary text, as in SentencePiece.
tokenizers takes Python str, so a line that is not valid UTF-8 is given to it as SentencePiece
reads it: each byte that does not start a valid UTF-8 character becomes U+FFFD.

Every mismatching line is classified:
  special_token_text  (default mode) the line contains the text of a special added token;
  invalid_utf8        the line is not valid UTF-8 and the model's charsmap maps U+FFFD (nmt_nfkc
                      maps it to a space): SentencePiece puts U+FFFD in place of bad bytes after
                      normalization, while tokenizers only takes text, so it normalizes the U+FFFD;
  normalizer          tokenizers' normalizer output differs from `spm_normalize` (when --model is
                      given): a difference of tokenizers' Precompiled normalizer;
  reserved_pretoken   (BPE with user-defined pieces, which needs ignore_merges) a pre-token between
                      user-defined pieces is exactly the text of a byte, control or unknown piece
                      ("<0x41>", "</s>"), which ignore_merges takes whole;
  score_tie           (Unigram) both segmentations have the same total score to within float
                      rounding: SentencePiece keeps partial path scores as float, tokenizers as
                      f64, so exact ties break differently;
  unexplained         anything else.
"""
import argparse
import json
import subprocess
import sys


def read_lines(path):
    if path.endswith(".zst"):
        data = subprocess.run(["zstd", "-dc", path], check=True, stdout=subprocess.PIPE).stdout
    else:
        with open(path, "rb") as f:
            data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def spm_decode_utf8(b):
    """bytes -> str the way SentencePiece reads text: invalid bytes become U+FFFD one by one."""
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


def spm_normalize(model, texts):
    if not texts:
        return []
    data = "".join(t.replace("\n", " ") + "\n" for t in texts).encode("utf-8")
    out = subprocess.run(["spm_normalize", "--model=" + model], input=data, check=True, stdout=subprocess.PIPE).stdout
    return out.decode("utf-8", "replace").split("\n")[: len(texts)]


def path_score(ids, scores, reserved):
    """Sum of the scores of the pieces SentencePiece's lattice uses; None if reserved ids differ."""
    return sum(scores[i] for i in ids if i not in reserved), [i for i in ids if i in reserved]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--input", required=True, help="text, one line per sentence")
    ap.add_argument("--expected", required=True, help="spm_encode --output_format=id output (.zst ok)")
    ap.add_argument("--report", required=True, help="JSON report to write")
    ap.add_argument("--model", help="the SentencePiece .model, to classify normalizer differences")
    ap.add_argument("--examples", type=int, default=5, help="mismatching lines to include per mode")
    args = ap.parse_args()

    try:
        import tokenizers
    except ImportError:
        print("the Python package `tokenizers` is not installed (pip install tokenizers)", file=sys.stderr)
        return 3

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    raw = read_lines(args.input)
    expected = read_lines(args.expected)
    if len(raw) != len(expected):
        raise SystemExit(f"{args.input}: {len(raw)} lines but {args.expected}: {len(expected)}")

    texts, exp_ids, line_no, bad_utf8 = [], [], [], set()
    invalid = 0
    for i, (r, e) in enumerate(zip(raw, expected)):
        t = spm_decode_utf8(r)
        if t.encode("utf-8") != r:
            invalid += 1
            bad_utf8.add(len(texts))
        texts.append(t)
        exp_ids.append(list(map(int, e.split())))
        line_no.append(i + 1)

    with open(args.tokenizer, encoding="utf-8") as f:
        spec = json.load(f)
    special = [t["content"] for t in spec.get("added_tokens", []) if t.get("special")]
    model = spec["model"]
    unigram = model["type"] == "Unigram"
    if unigram:
        scores = [s for _, s in model["vocab"]]
        reserved = {i for i, (p, s) in enumerate(model["vocab"]) if s == min(scores)}
        reserved.add(model["unk_id"])

    reserved_text = set()
    if model["type"] == "BPE" and model.get("ignore_merges"):
        reserved_text = set(special) | {p for p in model["vocab"] if len(p) == 6 and p.startswith("<0x") and p.endswith(">")}

    def reserved_pretoken(text):
        if not reserved_text or tok.pre_tokenizer is None:
            return False
        norm = tok.normalizer.normalize_str(text) if tok.normalizer is not None else text
        return any(p in reserved_text for p, _ in tok.pre_tokenizer.pre_tokenize_str(norm))

    report = {
        "tokenizers_version": tokenizers.__version__,
        "lines": len(raw),
        "lines_with_invalid_utf8": invalid,
        "compared": len(texts),
    }
    # Only ids are compared: encode_batch_fast (tokenizers >= 0.20) skips the offsets.
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    tok.encode_special_tokens = True
    literal_ids = [enc.ids for enc in encode(texts, add_special_tokens=False)]
    # The two modes differ only where special-token text is split off the raw text, so default mode
    # re-encodes just the lines that contain such text, when every special token is matched
    # unnormalized (what tsumugi writes); otherwise it encodes every line.
    raw_match = all(not t.get("normalized", True) for t in spec.get("added_tokens", []) if t.get("special"))
    redo = [k for k, t in enumerate(texts) if any(s in t for s in special)] if raw_match else list(range(len(texts)))
    tok.encode_special_tokens = False
    default_ids = list(literal_ids)
    for k, enc in zip(redo, encode([texts[k] for k in redo], add_special_tokens=False)):
        default_ids[k] = enc.ids
    for mode, all_ids in (("default", default_ids), ("literal_special", literal_ids)):
        bad = [k for k, (ids, exp) in enumerate(zip(all_ids, exp_ids)) if ids != exp]
        spm_norm = spm_normalize(args.model, [texts[k] for k in bad]) if args.model else [None] * len(bad)
        classes = {"special_token_text": 0, "invalid_utf8": 0, "normalizer": 0, "reserved_pretoken": 0, "score_tie": 0, "unexplained": 0}
        examples = []
        for k, sn in zip(bad, spm_norm):
            text, got, exp = texts[k], all_ids[k], exp_ids[k]
            if mode == "default" and any(s in text for s in special):
                why = "special_token_text"
            elif k in bad_utf8 and tok.normalizer is not None and tok.normalizer.normalize_str("\ufffd") != "\u2581\ufffd":
                why = "invalid_utf8"
            elif sn is not None and tok.normalizer is not None and \
                    tok.normalizer.normalize_str(text).replace("\u2581", " ").strip() != sn.replace("\u2581", " ").strip():
                why = "normalizer"
            elif reserved_pretoken(text):
                why = "reserved_pretoken"
            else:
                why = "unexplained"
                if unigram:
                    (a, ra), (b, rb) = path_score(exp, scores, reserved), path_score(got, scores, reserved)
                    if ra == rb and abs(a - b) <= 1e-6 * (abs(a) + 1) * (len(exp) + len(got) + 1):
                        why = "score_tie"
            classes[why] += 1
            if len(examples) < args.examples:
                examples.append({"line": line_no[k], "why": why, "input": text[:300], "expected": exp[:60],
                                 "got": got[:60]})
        report[mode] = {"agree": len(texts) - len(bad), "mismatches": len(bad), "by_cause": classes,
                        "examples": examples}
    with open(args.report, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
