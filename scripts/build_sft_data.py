#!/usr/bin/env python3
"""Build the bundled instruction-tuning data (data/sft/) from the bundled man-page corpus.

Every pair is real: the question names a manual page of data/corpus/{ja,en}.jsonl.gz and the answer
is taken from that page (its NAME line, the first sentence of its DESCRIPTION, its section). The
three record shapes `tsumugi sft` reads all occur:

  * Alpaca style  {"instruction", "output"} and {"instruction", "input", "output"}
  * OpenAI chat   {"messages": [user, assistant, user, assistant]}
  * pre-rendered  {"text": "...### 応答:\\n..."} in the LLM-jp template

Pages are split into train / valid by a hash of the page id, so no page of the held-out set is seen
in training. Python standard library only; the output is deterministic.

    python3 scripts/build_sft_data.py --corpus data/corpus --out data/sft
"""
import argparse
import gzip
import hashlib
import json
import os
import re

SECTION_JA = {"1": "コマンド", "2": "システムコール", "3": "ライブラリ関数", "4": "特殊ファイル",
              "5": "ファイル形式", "6": "ゲーム", "7": "概念", "8": "管理コマンド"}
SECTION_EN = {"1": "command", "2": "system call", "3": "library function", "4": "special file",
              "5": "file format", "6": "game", "7": "overview", "8": "administration command"}
SYSTEM = "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。"


def h(s):
    return int(hashlib.sha256(s.encode()).hexdigest(), 16)


def section_text(text, heading):
    m = re.search(r"^" + heading + r"\n((?:(?:[ \t]+.*)?\n)+?)(?=^\S|\Z)", text, re.M)
    return m.group(1) if m else ""


def name_line(text, lang):
    body = section_text(text, "名前" if lang == "ja" else "NAME")
    line = " ".join(x.strip() for x in body.splitlines() if x.strip())
    m = re.match(r"(.+?)\s+[-—–]\s*(.+)$", line) or re.match(r"(.+?)\s*[-—–]\s*(.+)$", line)
    if not m:
        return None
    names, desc = m.group(1).strip(), m.group(2).strip()
    if not names or not desc or len(names) > 80 or len(desc) > 160:
        return None
    return names, desc


def first_sentence(text, lang):
    body = section_text(text, "説明" if lang == "ja" else "DESCRIPTION")
    para = []
    for line in body.splitlines():
        if not line.strip():
            if para:
                break
            continue
        para.append(line.strip())
    p = " ".join(para)
    if lang == "ja":
        m = re.match(r"(.+?。)", p)
    else:
        m = re.match(r"(.+?\.)(\s|$)", p)
    s = m.group(1) if m else ""
    return s if 20 <= len(s) <= 200 else ""


def records_for(doc):
    lang = doc["lang"]
    page = doc["id"].split(":", 1)[1]  # man1/ls.1
    m = re.match(r"man(\d)\w*/(.+)\.\d\w*$", page)
    if not m:
        return []
    sec, title = m.group(1), m.group(2)
    nl = name_line(doc["text"], lang)
    if not nl:
        return []
    names, desc = nl
    first = names.split(",")[0].strip()
    sentence = first_sentence(doc["text"], lang)
    k = h(doc["id"])
    out = []
    if lang == "ja":
        kind = SECTION_JA.get(sec, "項目")
        asks = [f"{kind} {first} は何をしますか？", f"{first} について一行で説明してください。",
                f"マニュアルの {first}({sec}) の概要を教えてください。"]
        out.append({"instruction": asks[k % 3], "output": f"{names} - {desc}"})
        if sentence:
            out.append({"instruction": "次のマニュアルの説明文は、どの項目についてのものですか？名前を答えてください。",
                        "input": sentence, "output": first})
        if k % 4 == 0:
            out.append({"messages": [
                {"role": "user", "content": f"{first} とは何ですか？"},
                {"role": "assistant", "content": f"{names} - {desc}"},
                {"role": "user", "content": "マニュアルの何章に載っていますか？"},
                {"role": "assistant", "content": f"{sec} 章 ({kind}) です。"}]})
        elif k % 4 == 1:
            out.append({"text": f"{SYSTEM}\n\n### 指示:\n{first} はマニュアルの何章にありますか？\n\n### 応答:\n"
                                f"{first} は {sec} 章 ({kind}) にあります。"})
    else:
        kind = SECTION_EN.get(sec, "entry")
        asks = [f"What does the {kind} {first} do?", f"Describe {first} in one line.",
                f"What is {first}({sec}) for?"]
        out.append({"instruction": asks[k % 3], "output": f"{names} - {desc}"})
        if sentence:
            out.append({"instruction": "Which manual page does this description come from? Answer with its name.",
                        "input": sentence, "output": first})
        if k % 4 == 0:
            out.append({"messages": [
                {"role": "user", "content": f"What is {first}?"},
                {"role": "assistant", "content": f"{names} - {desc}"},
                {"role": "user", "content": "Which section of the manual is it in?"},
                {"role": "assistant", "content": f"Section {sec} ({kind}s)."}]})
    for r in out:
        r["source"] = doc["id"]
        r["license"] = doc.get("license", "")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="data/corpus")
    ap.add_argument("--out", default="data/sft")
    ap.add_argument("--valid-percent", type=int, default=8)
    ap.add_argument("--max-train", type=int, default=3000, help="cap on training records (0 = all)")
    a = ap.parse_args()
    train, valid = [], []
    for lang in ("ja", "en"):
        with gzip.open(os.path.join(a.corpus, f"{lang}.jsonl.gz"), "rt", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                recs = records_for(doc)
                (valid if h("split:" + doc["id"]) % 100 < a.valid_percent else train).extend(recs)
    # Interleave languages and shapes deterministically, then cap.
    train.sort(key=lambda r: h(json.dumps(r, ensure_ascii=False, sort_keys=True)))
    valid.sort(key=lambda r: h(json.dumps(r, ensure_ascii=False, sort_keys=True)))
    if a.max_train:
        train = train[: a.max_train]
    os.makedirs(a.out, exist_ok=True)
    for name, rows in (("train", train), ("valid", valid)):
        tmp = os.path.join(a.out, f".{name}.jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, os.path.join(a.out, f"{name}.jsonl"))
    shapes = lambda rows: {k: sum(1 for r in rows if k in r) for k in ("instruction", "input", "messages", "text")}
    print(f"train: {len(train)} records {shapes(train)}; valid: {len(valid)} records {shapes(valid)}")


if __name__ == "__main__":
    main()
