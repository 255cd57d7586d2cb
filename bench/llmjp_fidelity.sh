#!/usr/bin/env bash
# LLM-jp corpus v1 fidelity check: `tsumugi corpus clean` with the exact LLM-jp v1 Japanese
# configuration against HojiChar (bench/peers/hojichar_llmjp_v1.py, the Python reference)
# on the same seeded dirty Japanese input. Prints how many documents each kept, whether the
# kept ids agree, the fraction of byte-identical texts among the documents both kept, and
# the first disagreements with the filter and reason tsumugi gave.
#
#   bench/llmjp_fidelity.sh [WORKDIR]          (default: a fresh temp directory)
#   TSUMUGI=build-rel/tsumugi SEED=2 bench/llmjp_fidelity.sh
#
# Needs: a built tsumugi (default build/tsumugi), python3 with bench/requirements.txt
# (hojichar, regex), the zstd program. Exits 0 on full agreement, 1 otherwise.
#
# The profile written below is LLM-jp's configuration, not the llm-jp-v1-ja preset: it reads
# HojiChar's own installed word lists (never copied into this repository), matches them as
# HojiChar's regexes do (case-sensitive, no ASCII word boundaries; katakana words standalone
# only for the adult/discrimination/violence lists, as NgWordsFilterJa(ignore_confused=True)),
# uses zlib level 9, and joins the kept lines with "" (join = "none"). LLM-jp pinned
# hojichar==0.9.0; bench/requirements.txt pins 0.18.1, whose word lists are byte-identical and
# whose AcceptJapanese, DiscardAds, NgWordsFilterJa (and subclasses) and DiscardRareKuten
# differ from 0.9.0 only in type annotations (0.9.0's AcceptJapanese ignores lookup_size and
# always uses 50, which is what LLM-jp passes).
#
# Three comparisons: ja.jsonl (the dirty mix), ja-body.jsonl (the same without each first
# line, so that the later filters see most documents) and lines.jsonl (random texts, line
# extraction only; see (f)).
set -euo pipefail
cd "$(dirname "$0")/.."

TSUMUGI=${TSUMUGI:-build/tsumugi}
SEED=${SEED:-1}
W=${1:-$(mktemp -d "${TMPDIR:-/tmp}/llmjp_fidelity.XXXXXX")}
mkdir -p "$W"
[[ -x $TSUMUGI ]] || { echo "no tsumugi binary at $TSUMUGI (build it, or set TSUMUGI=...)" >&2; exit 2; }
command -v zstd >/dev/null || { echo "the zstd program is needed to read tsumugi's output" >&2; exit 2; }
echo "== work directory: $W" >&2

# (a) the dirty Japanese input, and a second one from the same documents without their first
# line: the man-page title line ("SIN(3)   Linux Programmer's Manual   SIN(3)") puts 50+ ASCII
# characters before any kana, so AcceptJapanese rejects 5 in 6 documents of ja.jsonl; without
# it the NG-word, kuten, compression and line rules see most documents.
python3 scripts/make_dirty_corpus.py --in data/corpus --langs ja --seed "$SEED" --out "$W/ja.jsonl" >&2
python3 - "$W/ja.jsonl" "$W/ja-body.jsonl" <<'PY'
import json, sys
with open(sys.argv[1], encoding="utf-8") as fin, open(sys.argv[2], "w", encoding="utf-8") as fout:
    for line in fin:
        rec = json.loads(line)
        rec["text"] = rec["text"].split("\n", 1)[-1]
        fout.write(json.dumps(rec, ensure_ascii=False) + "\n")
PY

# (c) the exact LLM-jp profile, pointing at HojiChar's installed word lists
DICT=$(python3 -c 'import hojichar, os; print(os.path.join(os.path.dirname(hojichar.__file__), "dict"))')
python3 - "$DICT" <<'PY'
# tsumugi's word-list reader skips lines starting with '#' and strips only ASCII blanks;
# HojiChar's reads every non-empty line and str.strip()s it. Same words only if no line is
# affected: check rather than assume.
import sys, pathlib
for name in ["advertisement", "adult", "discrimination", "violence"]:
    p = pathlib.Path(sys.argv[1]) / f"{name}_keywords_ja.txt"
    for n, line in enumerate(p.read_text(encoding="utf-8").split("\n"), 1):
        w = line.strip()
        if line and (not w or w.startswith("#") or w != line.strip(" \t\r\f\v")):
            sys.exit(f"{p}:{n}: {line!r} would be read differently by tsumugi and HojiChar")
PY
cat >"$W/llmjp-v1-exact.toml" <<EOF
name = "llm-jp-v1-ja-exact"
description = "LLM-jp corpus v1 Japanese filters exactly as LLM-jp ran them (HojiChar word lists, zlib 9, lines joined with '')"

[[filters]]
type = "accept_japanese"
within_chars = 50

[[filters]]
type = "ng_words"
name = "ng_ads"
files = ["$DICT/advertisement_keywords_ja.txt"]
count = "occurrences"
max_count = 10
pick = "first"
katakana_standalone = false
ascii_boundary = false
ignore_case = false

[[filters]]
type = "ng_words"
name = "ng_adult"
files = ["$DICT/adult_keywords_ja.txt"]
count = "occurrences"
max_count = 3
pick = "first"
katakana_standalone = true
ascii_boundary = false
ignore_case = false

[[filters]]
type = "ng_words"
name = "ng_discrimination"
files = ["$DICT/discrimination_keywords_ja.txt"]
count = "occurrences"
max_count = 3
pick = "first"
katakana_standalone = true
ascii_boundary = false
ignore_case = false

[[filters]]
type = "ng_words"
name = "ng_violence"
files = ["$DICT/violence_keywords_ja.txt"]
count = "occurrences"
max_count = 3
pick = "first"
katakana_standalone = true
ascii_boundary = false
ignore_case = false

[[filters]]
type = "kuten_run"
max_average_run = 250

[[filters]]
type = "compression_ratio"
min = 0.30
max = 0.70
engine = "zlib"
level = 9

[[filters]]
type = "line_filter_ja"
mode = "cut"
join = "none"
require_kana = true
drop_urls = true
max_ascii_run = 100
EOF

# (b) HojiChar: the LLM-jp chain with HojiChar's bundled dictionaries, lines joined with "";
# (d) tsumugi with the profile above; (e) the comparison.
HOJI_VERSION=$(python3 -c 'from importlib.metadata import version; print(version("hojichar"))')
status=0
for name in ja ja-body; do
  python3 bench/peers/hojichar_llmjp_v1.py "$W/$name.jsonl" --out "$W/hoji-$name.jsonl" >"$W/hoji-$name-stats.json"
  rm -rf "$W/ts-$name"
  "$TSUMUGI" corpus clean --profile "$W/llmjp-v1-exact.toml" -o "$W/ts-$name" --no-progress --no-table "$W/$name.jsonl"
  echo
  echo "== $name.jsonl (seed $SEED): HojiChar $HOJI_VERSION vs $TSUMUGI"
  python3 bench/peers/compare_kept.py --input "$W/$name.jsonl" --hoji-out "$W/hoji-$name.jsonl" \
    --ts-dir "$W/ts-$name" || status=1
done
# (f) The bundled documents rarely put a long ASCII run, a CR or a URL followed by Japanese
# text on a kana line, so the line extraction alone is also compared on random texts built
# from the characters where its rules turn (kana and \w classes, URL schemes, ASCII runs near
# 100): HojiChar's ExtractJapaneseLines + NonEmpty against line_filter_ja mode = "cut",
# join = "none".
python3 - "$W/lines.jsonl" "$SEED" <<'PY'
import json, random, sys
rng = random.Random(int(sys.argv[2]))
pieces = ["あ", "カ", "ー", "ｰ", "ｱ", "ｶﾞ", "ﾞ", "・", "゠", "゛", "\u3099", "か\u3099", "\u32d0", "\u3300",
          "\U0001b001", "\U0001f200", "漢字", "。", "、", "「", "」", "\u3000", " ", "\t", "\r", "\x01", "\x7f",
          "http://", "https://", "HTTP://", "http:/", "https:", "www.", "example.com/a?b=c&d=e#f", "(x)", "~u",
          "_", "-", "+", "%20", "$", "]", "<", "\"", "Ａ", "１", "é", "e\u0301", "²", "½", "Ⓐ", "\u200d", "٣", "ß",
          "😀", "\ufeff", "x" * 40, "y" * 60, "z" * 99, "w" * 100, "abc def ", "\U00020b9f"]
with open(sys.argv[1], "w", encoding="utf-8") as f:
    for i in range(20000):
        lines = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 15))) for _ in range(rng.randint(1, 6))]
        text = "\n".join(lines) + ("\n" if rng.random() < 0.3 else "")
        f.write(json.dumps({"id": f"rand-{i}", "text": text}, ensure_ascii=False) + "\n")
PY
printf 'name = "llm-jp-v1-lines"\n[[filters]]\ntype = "line_filter_ja"\nmode = "cut"\njoin = "none"\n' \
  >"$W/llmjp-v1-lines.toml"
rm -rf "$W/ts-lines"
"$TSUMUGI" corpus clean --profile "$W/llmjp-v1-lines.toml" -o "$W/ts-lines" --no-progress --no-table "$W/lines.jsonl"
echo
echo "== lines.jsonl (random, seed $SEED): HojiChar peer's line extraction vs $TSUMUGI line_filter_ja"
python3 bench/peers/compare_kept.py --chain lines --input "$W/lines.jsonl" --ts-dir "$W/ts-lines" || status=1

exit $status
