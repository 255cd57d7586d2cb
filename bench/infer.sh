#!/usr/bin/env bash
# Decoding speed: prompt and decode tokens/s of `tsumugi generate --bench` at f32, bf16, f16 and
# q8_0, side by side with llama.cpp's llama-bench on the same weights (exported to GGUF with
# `tsumugi export --format gguf`), GPT-2 124M shape, in one run.
#
# llama.cpp is built from its public source outside this repository, e.g.
#   git clone https://github.com/ggml-org/llama.cpp /work/ext/llama.cpp
#   cmake -S /work/ext/llama.cpp -B /work/ext/llama.cpp/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
#         -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
#   cmake --build /work/ext/llama.cpp/build --target llama-bench -j
# Knobs (environment):
#   LLAMA_CPP_DIR  llama.cpp tree with build/bin/llama-bench (default /work/ext/llama.cpp);
#                  LLAMA_BENCH=PATH names the binary directly; SKIP_LLAMA=1 measures tsumugi only
#   MODEL=DIR      a checkpoint / HF directory to measure (default: one made here by one
#                  `tsumugi pretrain` step of configs/bench-124m.toml, which needs `make demo`'s data)
#   THREADS        CPU threads for both (default 2)
#   PROMPT, GEN    prompt tokens and decoded tokens (default 128 and 128, llama-bench's pp/tg)
#   ROUNDS         paired rounds (default 5): each runs every precision in both tools back to back
#   REPEAT         timed repetitions inside each run (default 1: --bench-repeat, llama-bench -r)
#   DTYPES         tsumugi weight types (default "f32 bf16 f16 q8_0")
#   QUIET_LOAD=X   wait (up to 10 minutes) for the 1-minute load average to drop below X before each
#                  timed run: the machine is shared
#   KEEP=1         keep the temporary directory (GGUF files, logs)
# Usage: bench/infer.sh [BUILD_DIR] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}/tsumugi
threads=${THREADS:-2}
prompt=${PROMPT:-128}
gen=${GEN:-128}
repeat=${REPEAT:-1}
rounds=${ROUNDS:-5}
dtypes=${DTYPES:-f32 bf16 f16 q8_0}
llama_dir=${LLAMA_CPP_DIR:-/work/ext/llama.cpp}
llama_bench=${LLAMA_BENCH:-$llama_dir/build/bin/llama-bench}
work=$(mktemp -d "${TMPDIR:-/tmp}/infer-bench.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then echo "temp dir: $work"; else trap 'rm -rf "$work"' EXIT; fi
[[ -x $bin ]] || { echo "no tsumugi binary at $bin (build it first: make, or ninja -C build tsumugi)" >&2; exit 1; }

load() { sed 's/ [0-9]*\/.*//' /proc/loadavg; }
settle() {
  [[ -n ${QUIET_LOAD:-} ]] || return 0
  local i
  for ((i = 0; i < 120; i++)); do
    awk -v q="$QUIET_LOAD" '{ exit !($1 < q) }' /proc/loadavg && return 0
    sleep 5
  done
  echo "load stayed above $QUIET_LOAD; timing anyway" >&2
}

model=${MODEL:-}
if [[ -z $model ]]; then
  cd "$root"  # the config names the demo data relative to the repository
  [[ -e demo-out/tok.model && -e demo-out/shards ]] || { echo "no demo data: run 'make demo' first or set MODEL=DIR" >&2; exit 1; }
  echo "making a GPT-2 124M-shape checkpoint (one pretrain step of configs/bench-124m.toml)" >&2
  "$bin" pretrain --config configs/bench-124m.toml --set train.steps=1 --set "out_dir=$work/run" > "$work/pretrain.log" 2>&1 ||
    { cat "$work/pretrain.log" >&2; exit 1; }
  model=$(ls -d "$work"/run/checkpoints/step_* | tail -1)
fi
echo "model: $model"

# The ceiling: decoding reads every weight once per token, so tok/s <= read bandwidth / weight bytes.
# (On a shared host the bandwidth a VM gets moves from minute to minute: compare within one run.)
membw=$(dirname "$bin")/bench/membw_bench
bw_4k=0 bw_huge=0
if [[ -x $membw ]]; then
  settle
  "$membw" --benchmark_format=json --benchmark_filter="/threads:$threads\$" > "$work/membw.json" 2> "$work/membw.log" || true
  read -r bw_4k bw_huge < <(python3 -c '
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["benchmarks"]
except Exception:
    rows = []
get = lambda n: next((r["bytes_per_second"] for r in rows if r["name"].startswith(n)), 0)
print(get("BM_ReadPages4K"), get("BM_ReadHugePages"))' "$work/membw.json")
  printf 'memory read bandwidth, %d threads: %.1f GB/s with 4 KiB pages, %.1f GB/s with huge pages (decode ceiling: that / MB of weights per token)\n' "$threads" \
    "$(python3 -c "print($bw_4k / 1e9)")" "$(python3 -c "print($bw_huge / 1e9)")"
else
  echo "no $membw (configure with TSUMUGI_BUILD_BENCH=ON): no bandwidth ceiling" >&2
fi

# Paired rounds: in each round every precision runs in tsumugi and in llama.cpp back to back (the
# order alternating between rounds), so both see the same minute of the host; a round's ratio is
# taken within the pair and the medians over rounds are reported, with the range of the ratios.
if [[ ${SKIP_LLAMA:-0} != 1 ]]; then
  if [[ ! -x $llama_bench ]]; then
    echo "no llama-bench at $llama_bench: build llama.cpp as described at the top of $0, set LLAMA_CPP_DIR or LLAMA_BENCH, or SKIP_LLAMA=1" >&2
    exit 1
  fi
  for dt in $dtypes; do
    peer=$dt
    [[ $dt == bf16 ]] && peer=f16  # llama.cpp's CPU 16-bit comparison point
    gguf=$work/model-$peer.gguf
    [[ -e $gguf ]] && continue
    "$bin" export --format gguf --dtype "$peer" --model "$model" -o "$gguf" > "$work/export-$peer.log" 2>&1 ||
      { cat "$work/export-$peer.log" >&2; echo "tsumugi export --format gguf failed" >&2; exit 1; }
  done
fi

run_tsumugi() {  # dtype round
  settle
  local l0 line
  l0=$(load)
  line=$("$bin" generate --model "$model" --bench --dtype "$1" --threads "$threads" --bench-prompt "$prompt" \
           --max-tokens "$gen" --bench-repeat "$repeat")
  echo "$line" >> "$work/tsumugi-$1.jsonl"
  python3 -c '
import json, sys
j = json.loads(sys.argv[1])
pp, tg, mb = j["prompt_tokens_per_s"], j["decode_tokens_per_s"], j["weights_bytes"] // 1000000
print(f"round {sys.argv[2]}: tsumugi   {sys.argv[3]:<5} pp {pp:8.1f}  tg {tg:7.1f} tok/s  ({mb} MB of weights per token; load {sys.argv[4]} -> {sys.argv[5]})")' \
    "$line" "$2" "$1" "$l0" "$(load)"
}
run_llama() {  # dtype round
  local peer=$1
  [[ $peer == bf16 ]] && peer=f16
  settle
  local l0
  l0=$(load)
  "$llama_bench" -m "$work/model-$peer.gguf" -t "$threads" -p "$prompt" -n "$gen" -r "$repeat" -o json > "$work/llama.json" 2> "$work/llama.log" ||
    { cat "$work/llama.log" >&2; exit 1; }
  python3 -c '
import json, sys
rows = json.load(open(sys.argv[1]))
pp = [r["avg_ts"] for r in rows if r["n_prompt"] > 0 and r["n_gen"] == 0]
tg = [r["avg_ts"] for r in rows if r["n_gen"] > 0 and r["n_prompt"] == 0]
line = {"prompt_tokens_per_s": pp[0] if pp else 0, "decode_tokens_per_s": tg[0] if tg else 0}
open(sys.argv[2], "a").write(json.dumps(line) + "\n")
pp, tg = line["prompt_tokens_per_s"], line["decode_tokens_per_s"]
print(f"round {sys.argv[3]}: llama.cpp {sys.argv[4]:<5} pp {pp:8.1f}  tg {tg:7.1f} tok/s  (load {sys.argv[5]} -> {sys.argv[6]})")' \
    "$work/llama.json" "$work/llama-$1.jsonl" "$2" "$peer" "$l0" "$(load)"
}

for ((round = 1; round <= rounds; round++)); do
  for dt in $dtypes; do
    if [[ ${SKIP_LLAMA:-0} == 1 ]]; then
      run_tsumugi "$dt" "$round"
    elif ((round % 2)); then
      run_tsumugi "$dt" "$round"
      run_llama "$dt" "$round"
    else
      run_llama "$dt" "$round"
      run_tsumugi "$dt" "$round"
    fi
  done
done

echo
echo "GPT-2 124M shape, $threads threads, pp$prompt / tg$gen, $(lscpu | sed -n 's/^Model name: *//p'); medians of $rounds paired rounds (ratio range in brackets); load at the end $(load)"
python3 - "$work" "$dtypes" <<'PY'
import json, os, statistics, sys
work, dtypes = sys.argv[1], sys.argv[2].split()
def rows(path):
    return [json.loads(l) for l in open(path)] if os.path.exists(path) else []
med = statistics.median
print("| weights | tsumugi pp tok/s | llama.cpp pp tok/s | pp ratio | tsumugi tg tok/s | llama.cpp tg tok/s | tg ratio |")
print("|---|---|---|---|---|---|---|")
for dt in dtypes:
    ts, ll = rows(f"{work}/tsumugi-{dt}.jsonl"), rows(f"{work}/llama-{dt}.jsonl")
    name = dt if dt != "bf16" else "bf16 (vs llama.cpp f16)"
    cells = [name]
    for key in ("prompt_tokens_per_s", "decode_tokens_per_s"):
        a = [r[key] for r in ts]
        b = [r[key] for r in ll]
        cells += [f"{med(a):.1f}", f"{med(b):.1f}" if b else "-"]
        if b:
            ratios = sorted(x / y for x, y in zip(a, b) if y)
            cells.append(f"{med(ratios):.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]" if len(ratios) > 1 else f"{ratios[0]:.2f}x")
        else:
            cells.append("-")
    print("| " + " | ".join(cells) + " |")
PY
