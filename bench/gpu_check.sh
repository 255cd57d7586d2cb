#!/usr/bin/env bash
# One-shot check of the CUDA backend on a GPU machine: build, nvidia-smi, the CUDA op tests
# (every op against the CPU backend), kernel timings at GPT-2 124M shapes, a short GPT-2 124M
# training run, CPU-vs-CUDA parity and, with 2+ GPUs, 2-GPU data parallelism over NCCL. Each
# stage runs even when an earlier one failed; a summary closes the output.
#
#   bash bench/gpu_check.sh            on the GPU machine
#   bash bench/gpu_check.sh --bundle   on a build machine (no GPU needed): builds Release for Hopper
#                                      (sm_90) and packs the binaries with their non-system shared
#                                      libraries into build-gpu/gpu-bundle.tar.gz. Carry that file
#                                      to a GPU machine that lacks the project's -dev packages; the
#                                      default mode then uses it instead of building. The bundle is
#                                      built without MPI, so it has no NCCL and skips that stage.
#
# Environment: OUT (results; the device tool sets it; default /tmp/tsumugi-gpu-check), STEPS
# (training steps, default 30), CUDA_ARCH (default: the GPU's compute capability, else 90), JOBS
# (build parallelism), STAGES (comma-separated stages to run after the build, default all:
# data,tests,kernel-bench,train-bench,train-variants,train-parity,nccl-2gpu; a lent GPU machine
# allows 10 minutes per command, so a first call can take the build and the tests and a second,
# on the still-warm machine, the rest: STAGES=data,train-bench,... reuses demo-out/).
#
# The training stages read demo-out/ (the demo's tokenizer and Megatron shards); the data stage
# makes it from data/corpus with the built binary when it is missing (about a minute), so carry
# demo-out/ to the GPU machine if you have it.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 1
OUT=${OUT:-/tmp/tsumugi-gpu-check}
STEPS=${STEPS:-30}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
BUILD=build-gpu
BUNDLE_TGZ=$BUILD/gpu-bundle.tar.gz
BUNDLE_DIR=$BUILD/bundle
SUMMARY=()
NOTES=()

# stage NAME TIMEOUT_S CMD...: runs CMD with a time limit, records ok/FAILED and the duration.
stage() {
  local name=$1 limit=$2
  shift 2
  echo
  echo "=== [$name] $(date +%H:%M:%S)"
  local t0=$SECONDS rc
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local status="ok"
  [ "$rc" -eq 124 ] && status="TIMED OUT after ${limit}s"
  [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && status="FAILED (exit $rc)"
  SUMMARY+=("$(printf '%-16s %-28s %4ss' "$name" "$status" "$((SECONDS - t0))")")
  return "$rc"
}

# Shared libraries a binary needs that a different Linux image may lack: everything except the C
# runtime, libstdc++/libgcc (newer on the GPU image) and cuBLAS (part of every CUDA install).
bundle_libs() {
  ldd "$@" | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|libpthread|librt|libutil|ld-linux[^/]*|libstdc\+\+|libgcc_s)\.so' |
    grep -v -E '/libcublas(Lt)?\.so'
}

make_bundle() {
  local arch=${CUDA_ARCH:-90}
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTSUMUGI_BUILD_BENCH=OFF \
    -DTSUMUGI_WITH_MPI=OFF -DCMAKE_CUDA_ARCHITECTURES="$arch" || return 1
  ninja -C "$BUILD" -j "$JOBS" tsumugi tsumugi_cuda_tests tsumugi_cuda_bench || return 1
  rm -rf "$BUNDLE_DIR"
  mkdir -p "$BUNDLE_DIR/bin" "$BUNDLE_DIR/lib"
  cp "$BUILD/tsumugi" "$BUILD/tests/cuda/tsumugi_cuda_tests" "$BUILD/tests/cuda/tsumugi_cuda_bench" \
    "$BUNDLE_DIR/bin/"
  bundle_libs "$BUNDLE_DIR"/bin/* | xargs -r cp -L -t "$BUNDLE_DIR/lib/"
  tar czf "$BUNDLE_TGZ" -C "$BUILD" bundle
  ls -la "$BUNDLE_TGZ"
  echo "carry $BUNDLE_TGZ to the GPU machine and run: bash bench/gpu_check.sh"
}

if [ "${1:-}" = "--bundle" ]; then
  make_bundle
  exit $?
fi

mkdir -p "$OUT"
BIN_TSUMUGI=$BUILD/tsumugi
BIN_TESTS=$BUILD/tests/cuda/tsumugi_cuda_tests
BIN_BENCH=$BUILD/tests/cuda/tsumugi_cuda_bench

gpu_arch() {
  local cap
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
  if [[ "$cap" =~ ^[0-9]+$ ]]; then echo "$cap"; else echo 90; fi
}

build() {
  if [ -f "$BUNDLE_TGZ" ]; then
    echo "using the prebuilt bundle $BUNDLE_TGZ"
    rm -rf "$BUNDLE_DIR" && tar xzf "$BUNDLE_TGZ" -C "$BUILD" || return 1
    BIN_TSUMUGI=$BUNDLE_DIR/bin/tsumugi
    BIN_TESTS=$BUNDLE_DIR/bin/tsumugi_cuda_tests
    BIN_BENCH=$BUNDLE_DIR/bin/tsumugi_cuda_bench
    export LD_LIBRARY_PATH="$ROOT/$BUNDLE_DIR/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    NOTES+=("binaries: prebuilt bundle")
  else
    local arch=${CUDA_ARCH:-$(gpu_arch)}
    echo "building for sm_$arch with $JOBS jobs"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTSUMUGI_BUILD_BENCH=OFF \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" || {
      NOTES+=("configure failed: if -dev packages are missing here, run 'bash bench/gpu_check.sh --bundle' on the build machine and carry $BUNDLE_TGZ")
      return 1
    }
    ninja -C "$BUILD" -j "$JOBS" tsumugi tsumugi_cuda_tests tsumugi_cuda_bench || return 1
    NOTES+=("binaries: built here for sm_$arch")
  fi
  # cuBLAS may live in the Python wheels rather than /usr/local/cuda.
  if ldd "$BIN_TESTS" 2>/dev/null | grep -q 'not found'; then
    local d
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
      $(find / -xdev \( -name 'libcublasLt.so.13' -o -name 'libcudart.so.13' \) -printf '%h\n' 2>/dev/null | sort -u); do
      [ -d "$d" ] && export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$d"
    done
  fi
  if ldd "$BIN_TESTS" | grep 'not found'; then
    echo "some shared libraries are still missing (above)"
    return 1
  fi
}

# The demo's tokenizer and shards (scripts/demo.sh steps 1-5), when they are not there yet.
ensure_data() {
  local d=demo-out
  if [ -f $d/tok.model ] && [ -f $d/shards/ja.idx ] && [ -f $d/shards/en.idx ] && [ -f $d/shards/code.idx ]; then
    echo "$d/ is there"
    return 0
  fi
  echo "making $d/ from data/corpus"
  mkdir -p $d || return 1
  python3 scripts/make_dirty_corpus.py --in data/corpus --langs ja --out $d/raw.jsonl.gz --seed 1 || return 1
  "$BIN_TSUMUGI" -q corpus clean --preset llm-jp-v1-ja --dedup minhash -o $d/clean-ja $d/raw.jsonl.gz || return 1
  "$BIN_TSUMUGI" -q corpus clean --preset en --dedup exact -o $d/clean-en data/corpus/en.jsonl.gz || return 1
  "$BIN_TSUMUGI" -q corpus clean --preset code --dedup exact -o $d/clean-code data/corpus/code.jsonl.gz || return 1
  "$BIN_TSUMUGI" -q tokenizer train --input $d/clean-ja/kept-*.jsonl.zst $d/clean-en/kept-*.jsonl.zst \
    $d/clean-code/kept-*.jsonl.zst --vocab-size 8000 --model-type unigram --byte-fallback true \
    --split-digits true --control-symbols '<EOD>' --input-sentence-size 30000 --num-threads "$(nproc)" \
    -o $d/tok || return 1
  local lang
  for lang in ja en code; do
    "$BIN_TSUMUGI" -q tokenize --model $d/tok.model -o $d/shards/$lang $d/clean-$lang/kept-*.jsonl.zst || return 1
  done
}

gpu_info() {
  nvidia-smi || return 1
  nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.max.sm,driver_version --format=csv
}

cuda_tests() {
  "$BIN_TESTS" 2>&1 | tee "$OUT/cuda_tests.log"
  return "${PIPESTATUS[0]}"
}

kernel_bench() {
  "$BIN_BENCH" 16 1024 2>&1 | tee "$OUT/kernel_bench.log"
  local rc=${PIPESTATUS[0]} m
  # The other attention kernels (TSUMUGI_CUDA_ATTENTION) on the same shapes, for comparison.
  for m in fa2_q64 wmma; do
    echo "== TSUMUGI_CUDA_ATTENTION=$m"
    TSUMUGI_CUDA_ATTENTION=$m "$BIN_BENCH" 16 1024 2>&1 | grep -E 'attention|estimated step'
  done
  echo "== TSUMUGI_CUDA_CE=two_pass TSUMUGI_CUDA_LN=two_pass (the two-pass cross-entropy and LayerNorm backward kernels)"
  TSUMUGI_CUDA_CE=two_pass TSUMUGI_CUDA_LN=two_pass "$BIN_BENCH" 16 1024 2>&1 |
    grep -E 'cross-entropy|layernorm bwd|estimated step'
  echo "== B=64 (the micro-batch llm.c trains GPT-2 124M with)"
  "$BIN_BENCH" 64 1024 2>&1 | grep -E 'matmul|estimated step'
  # The MLP's GELU in cuBLASLt's matmul epilogues: 1 forward only, 2 forward and backward; bias
  # gradients from the weight-gradient matmuls.
  for m in 1 2; do
    echo "== TSUMUGI_CUDA_GELU_FUSION=$m"
    TSUMUGI_CUDA_GELU_FUSION=$m "$BIN_BENCH" 16 1024 2>&1 | grep -E 'gelu|estimated step'
  done
  echo "== TSUMUGI_CUDA_BGRAD_FUSION=1"
  TSUMUGI_CUDA_BGRAD_FUSION=1 "$BIN_BENCH" 16 1024 2>&1 | grep -E 'matmul bwd|estimated step'
  return "$rc"
}

# Median tokens/s and MFU of steps 11 and later (the first ones include start-up work).
median_speed() {
  python3 - "$1" "$2" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if "tokens_per_s" in r and r.get("step", 0) > 10]
if not rows:
    sys.exit(f"{sys.argv[2]}: no steps after 10 in {sys.argv[1]}")
tps = statistics.median(r["tokens_per_s"] for r in rows)
mfu = statistics.median(r["mfu"] for r in rows)
print(f"{sys.argv[2]:<40} {tps:>12,.0f} tokens/s   MFU {100 * mfu:5.1f}%   ({len(rows)} steps)")
PY
}

# The same GPT-2 124M run with each optional CUDA setting and with larger micro-batches (bigger
# matmuls; AdamW, the gradient norm and the host's per-step work spread over more tokens), 30
# steps each, for a direct comparison with the defaults in one session. Each line: NAME
# VAR=VALUE[,VAR=VALUE...] B.
train_variants() {
  local rc=0 name env_set b
  while read -r name env_set b; do
    env ${env_set//,/ } "$BIN_TSUMUGI" -q pretrain --config configs/gpt2-124m.toml --set backend=cuda \
      --set train.seq_len=1024 --set "train.micro_batch_size=$b" --set "train.batch_size=$b" \
      --set train.steps=30 --set train.eval_interval=0 --set train.checkpoint_interval=0 \
      --set train.report_interval=0 --set train.sample_tokens=0 --set "out_dir=$OUT/variant-$name" </dev/null || rc=1
    median_speed "$OUT/variant-$name/metrics.jsonl" "$name" || rc=1
  done <<'EOF2'
B16-gelu-fusion-1 TSUMUGI_CUDA_GELU_FUSION=1 16
B16-gelu-fusion-2 TSUMUGI_CUDA_GELU_FUSION=2 16
B16-bgrad-fusion TSUMUGI_CUDA_BGRAD_FUSION=1 16
B32 TSUMUGI_CUDA_GELU_FUSION=0 32
B64 TSUMUGI_CUDA_GELU_FUSION=0 64
B64-both-fusions TSUMUGI_CUDA_GELU_FUSION=2,TSUMUGI_CUDA_BGRAD_FUSION=1 64
EOF2
  # Where the time goes inside a run: GPU time per op and shape, and the GPU's idle gaps (events
  # around every op slow the host a little, so this run is not a speed figure). 20 steps.
  TSUMUGI_CUDA_PROFILE=1 "$BIN_TSUMUGI" -q pretrain --config configs/gpt2-124m.toml --set backend=cuda \
    --set train.seq_len=1024 --set train.micro_batch_size=16 --set train.batch_size=16 \
    --set train.steps=20 --set train.eval_interval=0 --set train.checkpoint_interval=0 \
    --set train.report_interval=0 --set train.sample_tokens=0 --set "out_dir=$OUT/profile" \
    2> "$OUT/profile.log" || rc=1
  grep -A80 'CUDA profile' "$OUT/profile.log" || { echo "no profile in $OUT/profile.log"; rc=1; }
  return "$rc"
}

train_bench() {
  local dir=$OUT/gpt2-124m
  "$BIN_TSUMUGI" pretrain --config configs/gpt2-124m.toml --set backend=cuda \
    --set train.seq_len=1024 --set train.micro_batch_size=16 --set train.batch_size=16 \
    --set "train.steps=$STEPS" --set "out_dir=$dir" 2>&1 | tee "$OUT/train.log" | tail -n 40
  local rc=${PIPESTATUS[0]}
  if [ -f "$dir/metrics.jsonl" ]; then
    echo "--- last lines of $dir/metrics.jsonl"
    tail -n 5 "$dir/metrics.jsonl"
  else
    echo "no $dir/metrics.jsonl"
    [ "$rc" -eq 0 ] && rc=1
  fi
  return "$rc"
}

# Training parity: the first 50 steps of a small GPT-2 and a small LLaMA on the CPU backend (fp32)
# and on CUDA (bf16 compute, fp32 master weights), same data and seed. Step 1 sees identical weights
# and data, so its loss must agree to bf16 rounding (0.5%); after that the two trajectories drift
# apart step by step (bf16 noise amplified by a 3e-3 learning rate), so later steps are compared as
# 10-step means (2%): a wrong kernel is off by far more than either.
train_parity() {
  local rc=0 cfg
  for cfg in tiny tiny-llama; do
    for be in cpu cuda; do
      "$BIN_TSUMUGI" -q pretrain --config "configs/$cfg.toml" --set backend=$be --set train.steps=50 \
        --set train.eval_interval=0 --set train.checkpoint_interval=0 --set train.report_interval=0 \
        --set train.sample_tokens=0 --set "out_dir=$OUT/parity-$cfg-$be" || rc=1
    done
    python3 - "$OUT/parity-$cfg-cpu/metrics.jsonl" "$OUT/parity-$cfg-cuda/metrics.jsonl" "$cfg" <<'PY' || rc=1
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
first = abs(a[0] - b[0]) / a[0]
means = [abs(sum(a[i:i + 10]) - sum(b[i:i + 10])) / sum(a[i:i + 10]) for i in range(0, min(len(a), len(b)), 10)]
worst_step = max(abs(x - y) / x for x, y in zip(a, b))
print(f"{sys.argv[3]}: {len(a)} steps, loss cpu {a[0]:.4f} -> {a[-1]:.4f}, cuda {b[0]:.4f} -> {b[-1]:.4f}; "
      f"step-1 gap {first:.5f}, worst 10-step-mean gap {max(means):.4f}, worst single-step gap {worst_step:.4f}")
sys.exit(0 if len(a) == len(b) == 50 and first <= 0.005 and max(means) <= 0.02 else 1)
PY
  done
  return $rc
}

# Data parallelism on two GPUs (one rank each, picked by local rank): the tiny GPT-2 for 30 steps
# under mpirun -np 2 with gradients summed by NCCL on the device, plain and ZeRO-1, against the
# host path (TSUMUGI_NCCL=0: download, MPI, upload) and one GPU with the same global batch and
# micro-batch. NCCL and the host path sum the same bf16 gradients, so they agree to fp32 rounding;
# one GPU accumulates its two micro-batches where two GPUs sum one each, so it is compared as
# 10-step means.
nccl_two_gpus() {
  local rc=0 z run
  local common=(--config configs/tiny.toml --set backend=cuda --set train.steps=30 --set train.batch_size=16
    --set train.micro_batch_size=8 --set train.eval_interval=0 --set train.checkpoint_interval=0
    --set train.report_interval=0 --set train.sample_tokens=0)
  local mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  "$BIN_TSUMUGI" -q pretrain "${common[@]}" --set "out_dir=$OUT/nccl-one" || rc=1
  for z in 0 1; do
    "${mpi[@]}" "$BIN_TSUMUGI" pretrain "${common[@]}" --set train.zero_stage=$z --set "out_dir=$OUT/nccl-z$z" \
      2>&1 | tee "$OUT/nccl-z$z.log" | grep -E 'data parallel|gradients|error' || rc=1
    grep -q 'gradients summed on the device with NCCL' "$OUT/nccl-z$z.log" || { echo "zero_stage=$z did not use NCCL"; rc=1; }
    TSUMUGI_NCCL=0 "${mpi[@]}" -x TSUMUGI_NCCL "$BIN_TSUMUGI" -q pretrain "${common[@]}" --set train.zero_stage=$z \
      --set "out_dir=$OUT/host-z$z" || rc=1
    python3 - "$OUT/nccl-one/metrics.jsonl" "$OUT/nccl-z$z/metrics.jsonl" "$OUT/host-z$z/metrics.jsonl" "zero_stage=$z" <<'PY' || rc=1
import json, sys
one, nccl, host = ([json.loads(l) for l in open(f)] for f in sys.argv[1:4])
a, b, c = ([r["loss"] for r in x] for x in (one, nccl, host))
host_gap = max(abs(x - y) / y for x, y in zip(b, c))
means = [abs(sum(a[i:i + 10]) - sum(b[i:i + 10])) / sum(a[i:i + 10]) for i in range(0, min(len(a), len(b)), 10)]
print(f"{sys.argv[4]}: 2 GPUs NCCL loss {b[0]:.4f} -> {b[-1]:.4f}, {nccl[-1]['tokens_per_s']:.0f} tokens/s, "
      f"{nccl[-1]['mem_bytes'] / 2**20:.0f} MiB; vs host path worst gap {host_gap:.2e} "
      f"({host[-1]['tokens_per_s']:.0f} tokens/s); vs 1 GPU worst 10-step-mean gap {max(means):.4f}")
sys.exit(0 if len(a) == len(b) == len(c) == 30 and host_gap <= 1e-3 and max(means) <= 0.01 else 1)
PY
  done
  return $rc
}

echo "tsumugi GPU check: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), results in $OUT"
# build() sets the binary paths and LD_LIBRARY_PATH for the later stages, so it runs in this
# shell rather than under `timeout`.
echo
echo "=== [build] $(date +%H:%M:%S)"
t0=$SECONDS
if build; then build_status=ok; else build_status=FAILED; fi
SUMMARY+=("$(printf '%-16s %-28s %4ss' build "$build_status" "$((SECONDS - t0))")")

# `timeout` runs programs, not shell functions: export them and call them through bash.
export -f ensure_data gpu_info cuda_tests kernel_bench median_speed train_bench train_variants train_parity \
  nccl_two_gpus
export OUT STEPS BIN_TSUMUGI BIN_TESTS BIN_BENCH
STAGES=${STAGES:-data,tests,kernel-bench,train-bench,train-variants,train-parity,nccl-2gpu}
wanted() { [[ ",$STAGES," == *",$1,"* ]]; }
# want NAME BINARY: whether to run stage NAME (asked for, and its binary was built).
want() {
  wanted "$1" || return 1
  [ -x "$2" ] && return 0
  SUMMARY+=("$(printf '%-16s skipped (not built)' "$1")")
  return 1
}
stage nvidia-smi 30 bash -c gpu_info
if want data "$BIN_TSUMUGI"; then stage data 300 bash -c ensure_data; fi
if want tests "$BIN_TESTS"; then stage cuda-tests 120 bash -c cuda_tests; fi
if want kernel-bench "$BIN_BENCH"; then stage kernel-bench 120 bash -c kernel_bench; fi
if want train-bench "$BIN_TSUMUGI"; then stage train-bench 150 bash -c train_bench; fi
if want train-variants "$BIN_TSUMUGI"; then stage train-variants 300 bash -c train_variants; fi
if want train-parity "$BIN_TSUMUGI"; then stage train-parity 120 bash -c train_parity; fi
gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
if ! wanted nccl-2gpu; then
  :
elif [ "$gpus" -lt 2 ]; then
  SUMMARY+=("nccl-2gpu        skipped ($gpus GPU)")
elif ! command -v mpirun >/dev/null; then
  SUMMARY+=("nccl-2gpu        skipped (no mpirun)")
elif ! ldd "$BIN_TSUMUGI" 2>/dev/null | grep -q libnccl; then
  SUMMARY+=("nccl-2gpu        skipped (built without NCCL)")
else
  stage nccl-2gpu 300 bash -c nccl_two_gpus
fi

echo
echo "================================ summary ================================"
for line in "${SUMMARY[@]}"; do echo "$line"; done
for n in "${NOTES[@]}"; do echo "note: $n"; done
if [ -f "$OUT/cuda_tests.log" ]; then
  grep -E '^\[  (PASSED|FAILED|SKIPPED) +\] [0-9]+ test' "$OUT/cuda_tests.log"
  grep -E ' FAIL$' "$OUT/cuda_tests.log" | head -20
fi
[ -f "$OUT/kernel_bench.log" ] && grep -E '^estimated step' "$OUT/kernel_bench.log"
[ -f "$OUT/gpt2-124m/metrics.jsonl" ] && median_speed "$OUT/gpt2-124m/metrics.jsonl" "GPT-2 124M, B16, defaults"
[ -f "$OUT/profile.log" ] && grep -E 'CUDA profile|all ops|gaps' "$OUT/profile.log"
for f in "$OUT"/variant-*/metrics.jsonl; do
  [ -f "$f" ] || continue
  v=$(basename "$(dirname "$f")")
  median_speed "$f" "GPT-2 124M, ${v#variant-}"
done
# The same figures as a Markdown table for README, in $OUT/summary.md.
python3 - "$OUT" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" <<'PY' || true
import glob, json, os, re, statistics, sys
out, commit, gpu = sys.argv[1], sys.argv[2], sys.argv[3] or "?"
rows = []
def speed(path):
    r = [json.loads(l) for l in open(path) if l.strip()]
    r = [x for x in r if "tokens_per_s" in x and x.get("step", 0) > 10]
    if not r:
        return None
    return statistics.median(x["tokens_per_s"] for x in r), statistics.median(x["mfu"] for x in r), len(r)
runs = [("B16, defaults", os.path.join(out, "gpt2-124m", "metrics.jsonl"))]
runs += [(os.path.basename(os.path.dirname(f))[len("variant-"):], f)
         for f in sorted(glob.glob(os.path.join(out, "variant-*", "metrics.jsonl")))]
for name, f in runs:
    if os.path.exists(f) and (s := speed(f)):
        rows.append(f"| GPT-2 124M training, {name} (median of steps 11+, {s[2]} steps) | {s[0]:,.0f} tokens/s, MFU {100 * s[1]:.1f}% |")
tests = os.path.join(out, "cuda_tests.log")
if os.path.exists(tests):
    t = open(tests).read()
    ok = re.search(r"\[  PASSED  \] (\d+) test", t)
    bad = re.search(r"\[  FAILED  \] (\d+) test", t)
    rows.insert(0, f"| CUDA op tests against the CPU backend | {ok.group(1) if ok else 0} pass, {bad.group(1) if bad else 0} fail |")
bench = os.path.join(out, "kernel_bench.log")
if os.path.exists(bench):
    for line in open(bench):
        if line.startswith("estimated step"):
            what, _, fig = line.strip().replace("|", "/").partition(": ")
            rows.append(f"| kernel bench, {what} | {fig} |")
            break
prof = os.path.join(out, "profile.log")
if os.path.exists(prof):
    for line in open(prof):
        if "gaps" in line or "all ops" in line:
            m = re.match(r"\s*(.*?)\s+(\d+\s+)?([\d.]+)\s+([\d.]+%)\s*$", line)
            if m:
                calls = f", {m.group(2).strip()} gaps" if m.group(2) else ""
                rows.append(f"| profile of 20 steps: {m.group(1)} | {m.group(3)} ms, {m.group(4)} of the GPU timeline{calls} |")
if rows:
    text = f"On one {gpu}, commit {commit}:\n\n| what | figure |\n|---|---|\n" + "\n".join(rows) + "\n"
    open(os.path.join(out, "summary.md"), "w").write(text)
    print("\n" + text)
PY
if [ -f "$OUT/gpt2-124m/metrics.jsonl" ]; then
  python3 - "$OUT/gpt2-124m/metrics.jsonl" <<'PY' || tail -n 1 "$OUT/gpt2-124m/metrics.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
last = [r for r in rows if "tokens_per_s" in r][-5:]
for r in last:
    print("train step %s: tokens_per_s=%s mfu=%s loss=%s" % (r.get("step"), r.get("tokens_per_s"), r.get("mfu"), r.get("loss")))
PY
fi
