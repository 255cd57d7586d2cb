#!/usr/bin/env python3
"""Build tsumugi's small evaluation sets from the bundled corpus (data/corpus).

Each set is a file in llm-jp-eval's evaluation dataset format (instruction, output_length,
metrics, few_shots, samples), made from the NAME lines of the man pages in
data/corpus/{ja,en}.jsonl.gz ("name, other - one-line description"):

  man_name_ja.json    description (Japanese) -> the command/function name     exact_match
  man_desc_ja.json    name -> its one-line Japanese description                char_f1
  man_choice_en.json  English description -> which of four names it is        acc, acc_norm
                      (log-likelihood multiple choice; "choices" in each sample)

Pages are picked in order of sha256(id) so the choice is spread over all sections and stable
between rebuilds; the few-shot examples come from pages that are not among the samples.
The man pages' licences are those of the corpus (data/corpus/LICENSES, data/corpus/README.md).
Only the Python standard library is used; the output is deterministic.

    python3 scripts/build_eval_sets.py [--corpus data/corpus] [--out data/eval] [--samples 40]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re

NAME_HEADINGS = {"ja": "名前", "en": "NAME"}


def name_lines(path: str, lang: str):
    """(id, [names], description) for every page with a parseable NAME section."""
    heading = NAME_HEADINGS[lang]
    pattern = re.compile(r"(?:^|\n)" + heading + r"\n((?:[ \t]+\S.*\n?)+)")
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            m = pattern.search(doc["text"])
            if not m:
                continue
            block = " ".join(part.strip() for part in m.group(1).splitlines())
            if " - " not in block:
                continue
            names, desc = block.split(" - ", 1)
            names = [n.strip() for n in names.split(",") if n.strip()]
            desc = re.sub(r"\s+", " ", desc).strip()
            if not names or not desc or len(desc) > 80:
                continue
            if not all(re.fullmatch(r"[A-Za-z0-9_.:+-]+", n) for n in names):
                continue
            yield doc["id"], names, desc


def ordered(entries):
    """Stable, well-spread order: by sha256 of the page id; one entry per description and name."""
    seen_desc, seen_name, out = set(), set(), []
    for e in sorted(entries, key=lambda e: hashlib.sha256(e[0].encode()).hexdigest()):
        if e[2] in seen_desc or e[1][0] in seen_name:
            continue
        seen_desc.add(e[2])
        seen_name.add(e[1][0])
        out.append(e)
    return out


def write(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default="data/eval")
    ap.add_argument("--samples", type=int, default=40, help="samples per set")
    ap.add_argument("--few-shots", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7, help="seed for the multiple-choice distractors")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    n, k = args.samples, args.few_shots

    ja = ordered(name_lines(os.path.join(args.corpus, "ja.jsonl.gz"), "ja"))
    en = ordered(name_lines(os.path.join(args.corpus, "en.jsonl.gz"), "en"))
    if len(ja) < 2 * (n + k) or len(en) < n + k + 3:
        raise SystemExit(f"not enough NAME lines in {args.corpus}: ja {len(ja)}, en {len(en)}")

    def pairs(entries, fn):
        return [dict(zip(("input", "output"), fn(e))) for e in entries]

    # Disjoint pages for the two Japanese sets, so one cannot be answered from the other's prompts.
    name_part, desc_part = ja[: n + k], ja[n + k: 2 * (n + k)]
    write(os.path.join(args.out, "man_name_ja.json"), {
        "instruction": "マニュアルの一行説明が表すコマンドまたは関数の名前を答えてください。名前の他には何も含めないことを厳守してください。",
        "output_length": 16,
        "metrics": ["exact_match", "char_f1"],
        "category": "MAN",
        "few_shots": pairs(name_part[:k], lambda e: (e[2], e[1][0])),
        "samples": pairs(name_part[k:], lambda e: (e[2], e[1][0])),
    })
    write(os.path.join(args.out, "man_desc_ja.json"), {
        "instruction": "コマンドまたは関数の名前を読み、マニュアルの一行説明を答えてください。",
        "output_length": 48,
        "metrics": ["char_f1"],
        "category": "MAN",
        "few_shots": pairs(desc_part[:k], lambda e: (e[1][0], e[2])),
        "samples": pairs(desc_part[k:], lambda e: (e[1][0], e[2])),
    })

    rng = random.Random(args.seed)
    names = [e[1][0] for e in en]

    def choice_sample(e):
        distractors = rng.sample([x for x in names if x != e[1][0]], 3)
        choices = distractors + [e[1][0]]
        rng.shuffle(choices)
        return {"input": e[2] + "\n選択肢：" + ",".join(choices), "output": e[1][0], "choices": choices}

    mc = [choice_sample(e) for e in en[: n + k]]
    write(os.path.join(args.out, "man_choice_en.json"), {
        "instruction": "英語のマニュアルの一行説明を読み、それが説明するコマンドまたは関数の名前を選択肢から選んでください。",
        "output_length": 16,
        "metrics": ["acc", "acc_norm", "exact_match"],
        "category": "MAN",
        "few_shots": [{"input": s["input"], "output": s["output"]} for s in mc[:k]],
        "samples": mc[k:],
    })
    with open(os.path.join(args.out, "README.md"), "w", encoding="utf-8") as f:
        f.write(README.format(n=n, k=k))


README = """# tsumugi evaluation sets

Small evaluation sets in llm-jp-eval's dataset format, built by `scripts/build_eval_sets.py` from
the NAME lines of the bundled man pages (`data/corpus/`); do not edit by hand. {n} samples and
{k} few-shot examples each, so that the demo's tiny model is evaluated in seconds.

| file | task | metrics |
|---|---|---|
| `man_name_ja.json` | Japanese one-line description → the command or function name | exact_match, char_f1 |
| `man_desc_ja.json` | name → its Japanese one-line description | char_f1 |
| `man_choice_en.json` | English description → one of four names (`choices` per sample) | acc, acc_norm (log-likelihood), exact_match |

`category` (here `MAN`) is a tsumugi extension that llm-jp-eval ignores: it groups these sets in
the category averages of `tsumugi eval`.

Licences: the text comes from the Debian packages manpages-ja, manpages-ja-dev, manpages and
manpages-dev; their copyright files are in `data/corpus/LICENSES/` and the corpus README lists
versions and licences.

    python3 scripts/build_eval_sets.py --corpus data/corpus --out data/eval
"""

if __name__ == "__main__":
    main()
