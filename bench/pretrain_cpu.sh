#!/usr/bin/env bash
# CPU pretraining throughput: tokens/s of `tsumugi pretrain` (fp32 and bf16 matmuls) side by side
# with llm.c's CPU reference train_gpt2.c, at GPT-2 124M and L6/C384 (NH 6), B=4, T=64, V=50257.
#
# llm.c is built from its public source in a temp dir outside the repo (never vendored):
#   LLMC_SRC=DIR   a directory holding train_gpt2.c and llmc/, or else
#   LLMC_GIT=DIR   a git dir of github.com/karpathy/llm.c (default /work/.mirror/karpathy+llm.c/repo)
# Other knobs: THREADS (OMP_NUM_THREADS for both, default 2), LLMC_STEPS (timed llm.c steps, default
# 10), TS_STEPS (tsumugi steps, default 20), LLMC_CFLAGS, TS_SET (extra "--set K=V ..." for tsumugi),
# CONFIG_124M / CONFIG_L6 (tsumugi configs), SHAPES="124M" (only these), SKIP_LLMC=1, SKIP_TSUMUGI=1,
# KEEP=1 (keep the temp dir),
# QUIET_LOAD=X (before each timed run wait, up to 10 minutes, for the 1-minute load average to drop
# below X: the machine is shared). Both engines are scored by the median step after the first; the
# figure in parentheses is the CPU cores each run kept busy on average ((user+sys)/wall, from
# /usr/bin/time), which shows how much other load took from it.
# Usage: bench/pretrain_cpu.sh [BUILD_DIR] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}/tsumugi
threads=${THREADS:-2}
llmc_steps=${LLMC_STEPS:-10}
ts_steps=${TS_STEPS:-20}
py=/usr/bin/python3  # needs numpy only
work=$(mktemp -d "${TMPDIR:-/tmp}/llmc.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then echo "temp dir: $work"; else trap 'rm -rf "$work"' EXIT; fi

# name L C NH tsumugi-config
shapes=("124M 12 768 12 ${CONFIG_124M:-$root/configs/bench-124m.toml}"
        "L6/C384 6 384 6 ${CONFIG_L6:-$root/configs/bench-l6c384.toml}")
B=4 T=64 V=50257
if [[ -n ${SHAPES:-} ]]; then
  for i in "${!shapes[@]}"; do [[ " $SHAPES " == *" ${shapes[i]%% *} "* ]] || unset 'shapes[i]'; done
fi
declare -A llmc ts32 ts16 mfu32 mfu16
cores() { awk '{ if ($1 > 0) printf "%.2f", ($2 + $3) / $1; else printf "-" }' "$1"; }  # file written by /usr/bin/time -f '%e %U %S'

load() { echo "load: $(uptime | sed 's/.*load average: //')"; }
settle() {  # wait for a quieter machine when QUIET_LOAD is set
  [[ -n ${QUIET_LOAD:-} ]] || return 0
  local i
  for ((i = 0; i < 120; i++)); do
    awk -v q="$QUIET_LOAD" '{ exit !($1 < q) }' /proc/loadavg && return 0
    sleep 5
  done
  echo "load stayed above $QUIET_LOAD; timing anyway" >&2
}

build_llmc() {
  local src=$work/src
  mkdir -p "$src"
  if [[ -n ${LLMC_SRC:-} ]]; then
    cp "$LLMC_SRC/train_gpt2.c" "$src/" && cp -r "$LLMC_SRC/llmc" "$src/"
  else
    local git=${LLMC_GIT:-/work/.mirror/karpathy+llm.c/repo}
    [[ -d $git ]] || { echo "no llm.c source: set LLMC_SRC or LLMC_GIT" >&2; return 1; }
    git --git-dir="$git" archive HEAD train_gpt2.c llmc | tar -x -C "$src"
    echo "llm.c $(git --git-dir="$git" rev-parse --short HEAD)"
  fi
  # The temp copy only: checkpoint path from $LLMC_CKPT (one binary for every shape), the step
  # count, and no validation or sampling (they run between steps, outside its per-step timer, but
  # would cost minutes of wall time at 124M).
  sed -i -e 's|gpt2_build_from_checkpoint(&model, "gpt2_124M.bin")|gpt2_build_from_checkpoint(\&model, getenv("LLMC_CKPT"))|' \
         -e "s|step <= 40; step++|step <= $llmc_steps; step++|" \
         -e 's|if (step % 10 == 0) {|if (0) {|' \
         -e 's|if (step > 0 \&\& step % 20 == 0) {|if (0) {|' "$src/train_gpt2.c"
  local want=('getenv("LLMC_CKPT")' "step <= $llmc_steps;")
  for w in "${want[@]}"; do
    grep -qF "$w" "$src/train_gpt2.c" || { echo "patching train_gpt2.c failed ($w); upstream changed?" >&2; return 1; }
  done
  [[ $(grep -c 'if (0) {' "$src/train_gpt2.c") -ge 2 ]] || { echo "could not disable val/sampling" >&2; return 1; }
  # Flags of llm.c's Makefile for train_gpt2 (gcc, OpenMP); LLMC_CFLAGS is split into words on purpose.
  # shellcheck disable=SC2086
  gcc ${LLMC_CFLAGS:--Ofast -march=native -fopenmp -DOMP -Wno-unused-result} -I"$src" \
      "$src/train_gpt2.c" -lm -o "$work/train_gpt2"
}

run_llmc() {  # name L C NH -> llmc[name] = B*T / median step time of steps 1..N (step 0 allocates)
  local name=$1 L=$2 C=$3 NH=$4 dir=$work/run-$2-$3
  mkdir -p "$dir/dev/data/tinyshakespeare"
  $py "$root/bench/peers/llmc_prepare.py" --out-model "$dir/model.bin" \
      --out-data "$dir/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" \
      --layers "$L" --channels "$C" --heads "$NH" --vocab $V
  cp "$dir/dev/data/tinyshakespeare/tiny_shakespeare_train.bin" "$dir/dev/data/tinyshakespeare/tiny_shakespeare_val.bin"
  settle; load
  (cd "$dir" && LLMC_CKPT=model.bin OMP_NUM_THREADS=$threads /usr/bin/time -f '%e %U %S' -o time.txt \
      "$work/train_gpt2") > "$dir/log.txt"
  load
  grep '^step' "$dir/log.txt" | sed 's/^/  /'
  llmc[$name]=$(awk '/^step [0-9]+: .*took/ && $2 != "0:" { print $(NF-1) }' "$dir/log.txt" | sort -g |
      awk -v bt=$((B * T)) '{ t[NR] = $1 } END { if (!NR) { print "n/a"; exit }
        m = NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2; printf "%.1f", bt / (m / 1000) }')
  llmc[$name]+=" ($(cores "$dir/time.txt"))"
  echo "llm.c $name: ${llmc[$name]} tokens/s (B=$B T=$T, $threads threads)"
}

run_tsumugi() {  # name config backend -> "tokens/s mfu" (medians over the steps after the first), "(cores)"
  local name=$1 cfg=$2 backend=$3 out=$work/ts-$RANDOM
  # B and T as llm.c hardcodes them; the model shape (vocabulary included) comes from the config.
  local args=(--config "$cfg" --set "train.steps=$ts_steps" --set "train.batch_size=$B" --set "train.seq_len=$T"
              --set out_dir="$out")
  [[ $backend == cpu-bf16 ]] && args+=(--set backend=cpu-bf16)
  settle; load >&2
  # shellcheck disable=SC2086  # TS_SET holds several words
  OMP_NUM_THREADS=$threads /usr/bin/time -f '%e %U %S' -o "$out.time" "$bin" pretrain "${args[@]}" ${TS_SET:-} >&2 ||
    { printf 'failed -\n(-)\n'; return; }
  load >&2
  $py - "$out/metrics.jsonl" <<'EOF' || echo "no-metrics -"
import json, statistics, sys
rows = [r for r in map(json.loads, filter(str.strip, open(sys.argv[1]))) if "tokens_per_s" in r]
rows = rows[1:] or rows  # the first step warms up
med = lambda k: statistics.median(float(r.get(k, "nan")) for r in rows)
print(f"{med('tokens_per_s'):.1f} {100 * med('mfu'):.1f}%")  # mfu is a fraction
EOF
  echo "($(cores "$out.time"))"
}

uname -m; grep -m1 'model name' /proc/cpuinfo; nproc; load
if [[ ${SKIP_LLMC:-0} != 1 ]]; then
  build_llmc
  for s in "${shapes[@]}"; do read -r name L C NH cfg <<< "$s"; run_llmc "$name" "$L" "$C" "$NH"; done
fi

have_pretrain=0
cd "$root"  # the configs name data and tokenizer relative to the repo
if [[ ${SKIP_TSUMUGI:-0} != 1 && -x $bin ]] && "$bin" pretrain --help 2>&1 | grep -q -- --config; then have_pretrain=1; fi
for s in "${shapes[@]}"; do
  read -r name L C NH cfg <<< "$s"
  if [[ $have_pretrain == 1 && -f $cfg ]]; then
    { read -r "ts32[$name]" "mfu32[$name]"; read -r c; ts32[$name]+=" $c"; } < <(run_tsumugi "$name" "$cfg" cpu)
    { read -r "ts16[$name]" "mfu16[$name]"; read -r c; ts16[$name]+=" $c"; } < <(run_tsumugi "$name" "$cfg" cpu-bf16)
  elif [[ $have_pretrain == 1 ]]; then
    echo "tsumugi: no config $cfg"
  fi
done
[[ $have_pretrain == 1 || ${SKIP_TSUMUGI:-0} == 1 ]] || echo "tsumugi pretrain not available ($bin)"

ratio() {  # first numbers of "A (cores)" and "B (cores)"
  $py -c "import sys; a, b = (float(x.split()[0]) for x in sys.argv[1:]); print(f'{a / b:.2f}x')" "$1" "$2" 2>/dev/null || echo -
}
echo
printf '%-8s %14s %14s %8s %14s %8s %9s %9s\n' shape llm.c_tok/s tsumugi_fp32 mfu tsumugi_bf16 mfu fp32/llmc bf16/llmc
for s in "${shapes[@]}"; do
  read -r name _ <<< "$s"
  l=${llmc[$name]:--} a=${ts32[$name]:--} b=${ts16[$name]:--}
  printf '%-8s %14s %14s %8s %14s %8s %9s %9s\n' "$name" "$l" "$a" "${mfu32[$name]:--}" "$b" "${mfu16[$name]:--}" \
         "$(ratio "$a" "$l")" "$(ratio "$b" "$l")"
done
echo "tokens/s (cores busy); B=$B T=$T V=$V, OMP_NUM_THREADS=$threads; $(load)"
