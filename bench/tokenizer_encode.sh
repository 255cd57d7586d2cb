#!/usr/bin/env bash
# Encode speed of `tsumugi tokenizer encode` against spm_encode (SentencePiece 0.1.97), both
# single-threaded, on the bundled corpora, with models trained by spm_train; also checks that
# the outputs are identical. Usage: bench/tokenizer_encode.sh [BUILD_DIR] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}/tsumugi
for t in spm_train spm_encode python3; do
  command -v $t > /dev/null || { echo "missing $t (apt-get install sentencepiece python3)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The `text` field of each record, split into lines.
for c in ja en code; do
  python3 - "$root/data/corpus/$c.jsonl.gz" > "$work/$c.txt" <<'EOF'
import gzip, json, sys
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as f:
    for rec in f:
        sys.stdout.write(json.loads(rec)["text"] + "\n")
EOF
done
cat "$work/ja.txt" "$work/en.txt" "$work/code.txt" > "$work/all.txt"

best() {  # best wall time of 3 runs of "$@" < input > /dev/null
  local input=$1; shift
  local b=999999
  for _ in 1 2 3; do
    local s=$(date +%s.%N)
    "$@" < "$input" > /dev/null
    local e=$(date +%s.%N)
    b=$(python3 -c "print(min($b, $e - $s))")
  done
  echo "$b"
}

printf "%-10s %-6s %8s %12s %12s %7s %s\n" model corpus MB "spm MB/s" "tsumugi MB/s" ratio identical
for spec in "unigram:--model_type=unigram --vocab_size=8000" "bpe:--model_type=bpe --vocab_size=8000"; do
  name=${spec%%:*}
  spm_train --input="$work/all.txt" --model_prefix="$work/$name" ${spec#*:} --input_sentence_size=60000 \
    --shuffle_input_sentence=true --num_threads=2 --minloglevel=2 > /dev/null 2>&1
  for c in ja en code; do
    mb=$(python3 -c "import os; print(os.path.getsize('$work/$c.txt') / 1e6)")
    t_spm=$(best "$work/$c.txt" spm_encode --model="$work/$name.model" --output_format=id)
    t_ours=$(best "$work/$c.txt" "$bin" tokenizer encode --model "$work/$name.model")
    spm_encode --model="$work/$name.model" --output_format=id < "$work/$c.txt" > "$work/spm.out"
    "$bin" tokenizer encode --model "$work/$name.model" < "$work/$c.txt" > "$work/ours.out"
    same=$(cmp -s "$work/spm.out" "$work/ours.out" && echo yes || echo NO)
    python3 -c "mb=$mb; a=$t_spm; b=$t_ours; print('%-10s %-6s %8.1f %12.1f %12.1f %6.2fx %s' % ('$name', '$c', mb, mb/a, mb/b, a/b, '$same'))"
  done
done
