#!/usr/bin/env bash
# Benchmark of `tsumugi corpus clean` against its peers, all in one run on this machine:
#  - throughput (MB/s per core) of each preset on the bundled Japanese corpus scaled up,
#    with 1 and 2 worker threads, and peak RSS at two input sizes (it must not grow);
#  - HojiChar (PyPI) running the LLM-jp v1 chain on the same documents, single process;
#  - MinHash dedup docs/s against datasketch and rensa with the same n-gram, bands and rows.
# Usage: bench/corpus_clean.sh [SCALE]   (SCALE: repetitions of the corpus; default 6)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TSUMUGI:-build/tsumugi}
SCALE=${1:-6}
W=${BENCH_DIR:-/tmp/tsumugi-bench}
mkdir -p "$W"

pip_ok() { python3 -c "import hojichar, datasketch, rensa" 2>/dev/null; }
if ! pip_ok; then
  echo "installing peers from bench/requirements.txt" >&2
  python3 -m pip install -q -r bench/requirements.txt
fi

if [ ! -f "$W/ja-x$SCALE.jsonl" ]; then
  python3 scripts/make_dirty_corpus.py --in data/corpus --langs ja --scale 1 --seed 1 --out "$W/ja-x1.jsonl"
  python3 scripts/make_dirty_corpus.py --in data/corpus --langs ja --scale "$SCALE" --seed 1 --out "$W/ja-x$SCALE.jsonl"
fi
SMALL=$W/ja-x1.jsonl
BIG=$W/ja-x$SCALE.jsonl
mb() { python3 -c "import os,sys; print(f'{os.path.getsize(sys.argv[1])/1e6:.1f}')" "$1"; }

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F)"
echo "inputs: $SMALL ($(mb "$SMALL") MB), $BIG ($(mb "$BIG") MB)"
echo

# run_clean PRESET THREADS INPUT DEDUP -> prints "mb_per_s docs_kept peak_rss_mb"
run_clean() {
  local out="$W/out-$1-$2" stats
  rm -rf "$out"
  /usr/bin/time -f "%M" -o "$W/rss" "$BIN" -q corpus clean --preset "$1" -j "$2" --dedup "$4" --no-progress \
    --no-table -o "$out" "$3"
  python3 - "$out/stats.json" "$W/rss" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
rss = int(open(sys.argv[2]).read().split()[-1]) / 1024
print(f"{s['mb_per_s']:.1f} {s['documents']['kept']} {rss:.0f}")
PY
}

echo "| preset | MB/s, 1 thread | MB/s, 2 threads | scaling | peak RSS x1 input | peak RSS x$SCALE input |"
echo "|---|---|---|---|---|---|"
for preset in llm-jp-v1-ja swallow-ja en code; do
  read -r t1 k1 r1 < <(run_clean "$preset" 1 "$BIG" none)
  read -r t2 k2 r2 < <(run_clean "$preset" 2 "$BIG" none)
  read -r ts ks rs < <(run_clean "$preset" 1 "$SMALL" none)
  scale=$(python3 -c "print(f'{$t2/$t1:.2f}x')")
  echo "| $preset | $t1 | $t2 | $scale | ${rs} MB | ${r1} MB |"
done
echo

# Filtering memory must not grow with the input: doubling the x$SCALE input should not raise peak RSS.
cat "$BIG" "$BIG" > "$W/ja-x2x$SCALE.jsonl"
read -r _ _ rbig < <(run_clean llm-jp-v1-ja 1 "$BIG" none)
read -r _ _ rdouble < <(run_clean llm-jp-v1-ja 1 "$W/ja-x2x$SCALE.jsonl" none)
rm -f "$W/ja-x2x$SCALE.jsonl"
echo "peak RSS, llm-jp-v1-ja, 1 thread: ${rbig} MB at x$SCALE input, ${rdouble} MB at twice that"
echo

echo "LLM-jp v1 chain, single process, same documents ($SMALL):"
read -r ours _ _ < <(run_clean llm-jp-v1-ja 1 "$SMALL" none)
peer=$(python3 bench/peers/hojichar_llmjp_v1.py "$SMALL")
hoji=$(python3 -c "import json,sys; print(f\"{json.loads(sys.argv[1])['mb_per_s']:.2f}\")" "$peer")
echo "| tool | MB/s | ratio |"
echo "|---|---|---|"
echo "| tsumugi llm-jp-v1-ja (1 thread) | $ours | $(python3 -c "print(f'{$ours/$hoji:.0f}x')") |"
echo "| HojiChar $(python3 -c 'from importlib.metadata import version; print(version("hojichar"))') (1 process) | $hoji | 1x |"
echo

echo "MinHash near-dedup (5-gram, 20 bands x 12 rows), documents of $SMALL:"
rm -rf "$W/out-mh"
printf '{"name":"none","filters":[]}' > "$W/none.json"
"$BIN" -q corpus clean --profile "$W/none.json" --dedup minhash -j 1 --no-progress --no-table -o "$W/out-mh" "$SMALL"
read -r ndocs ndup dsec < <(python3 -c "
import json; s=json.load(open('$W/out-mh/stats.json')); d=s['dedup']
print(d['docs_in'], d['duplicates'], s['seconds'])")
echo "| tool | docs | duplicates | docs/s |"
echo "|---|---|---|---|"
echo "| tsumugi (1 thread, whole run: read, parse, MinHash, LSH exchange, write) | $ndocs | $ndup | $(python3 -c "print(f'{$ndocs/$dsec:.0f}')") |"
for impl in datasketch rensa; do
  r=$(python3 bench/peers/minhash_peer.py "$SMALL" --impl $impl --ngram 5 --num-perm 240 --bands 20 --rows 12)
  python3 -c "import json,sys; j=json.loads(sys.argv[1]); print(f\"| {sys.argv[2]} | {j['docs']} | {j['duplicates']} | {j['docs_per_s']:.0f} |\")" "$r" "$impl"
done
