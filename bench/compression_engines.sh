#!/usr/bin/env bash
# The compression-ratio filter's two engines on the bundled Japanese corpus: zlib level 9
# (what LLM-jp ran; bit-exact with Python's zlib) against libdeflate level 6 (the preset's
# fast engine). Prints the filter's seconds for each and how many keep/reject decisions differ.
# Usage: bench/compression_engines.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build}/tsumugi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
zcat data/corpus/ja.jsonl.gz > "$W/ja.jsonl"
for eng in "zlib 9" "libdeflate 6"; do
  set -- $eng
  printf '{"name":"%s","filters":[{"type":"compression_ratio","engine":"%s","level":%s}]}' "$1" "$1" "$2" > "$W/$1.json"
  "$BIN" -q corpus clean --profile "$W/$1.json" -j 1 --no-progress --no-table --output-ext .jsonl -o "$W/$1" "$W/ja.jsonl"
done
python3 - "$W" <<'PY'
import json, sys
w = sys.argv[1]
def kept(e): return {json.loads(l)["id"] for l in open(f"{w}/{e}/kept-00000.jsonl")}
def secs(e): return json.load(open(f"{w}/{e}/stats.json"))["filters"][0]["seconds"]
z, d = kept("zlib"), kept("libdeflate")
n = json.load(open(f"{w}/zlib/stats.json"))["documents"]["read"]
print(f"documents: {n}")
print(f"zlib level 9:       {secs('zlib'):.3f} s, kept {len(z)}")
print(f"libdeflate level 6: {secs('libdeflate'):.3f} s, kept {len(d)}  ({secs('zlib')/secs('libdeflate'):.1f}x faster)")
print(f"decisions that differ: {len(z ^ d)} of {n}")
PY
