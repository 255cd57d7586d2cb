#!/usr/bin/env bash
# Suffix-array index benchmark in one run: `tsumugi index` build tokens/s, peak RSS and bytes per
# token; `tsumugi search count` and `search docs` latency p50/p99 against ripgrep on the same raw
# text for the same queries, and against the infini-gram package's C++ engine on an index of the
# same tokens (when it installs). The corpus is the bundled one, tokenized and repeated to
# --tokens (default 100M).
# Usage: bench/index.sh [--build DIR] [--tokens N] [--queries N] [--work DIR] [--no-infinigram]
set -euo pipefail
cd "$(dirname "$0")/.."
for t in python3 /usr/bin/time; do
  command -v $t > /dev/null || { echo "missing $t (apt-get install python3 time)" >&2; exit 1; }
done
if ! command -v rg > /dev/null; then
  echo "ripgrep (the baseline) is not installed: installing it with apt-get (bench-only tool)" >&2
  apt-get install -y -q ripgrep > /dev/null || { echo "could not install ripgrep: apt-get install ripgrep" >&2; exit 1; }
fi
exec python3 bench/index.py "$@"
