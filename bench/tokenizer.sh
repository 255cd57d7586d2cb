#!/usr/bin/env bash
# Tokenizer benchmark in one run on this machine: training time and peak RSS of
# `tsumugi tokenizer train` against spm_train (same options and vocabulary), and encode MB/s and
# tokens/s of `tsumugi tokenizer encode` (1 thread and all cores) against spm_encode (1 thread)
# and HF tokenizers (1 thread and all cores) on the bundled Japanese and English text with the same
# model, with identical-output checks; plus `tsumugi tokenize` into Megatron shards.
# Details and options: bench/tokenizer.py --help.
# Usage: bench/tokenizer.sh [--build DIR] [--vocab-size N] [--repeat N] [--models unigram,bpe] ...
set -euo pipefail
cd "$(dirname "$0")/.."
for t in spm_train spm_encode python3 /usr/bin/time lscpu; do
  command -v $t > /dev/null || { echo "missing $t (apt-get install sentencepiece python3 time util-linux)" >&2; exit 1; }
done
if ! python3 -c "import tokenizers" 2> /dev/null; then
  pin=$(grep '^tokenizers==' tests/requirements.txt)  # the version the tests pin
  echo "installing $pin" >&2
  python3 -m pip install -q "$pin" 2> /dev/null || python3 -m pip install -q --break-system-packages "$pin"
fi
exec python3 bench/tokenizer.py "$@"
