#!/usr/bin/env bash
# LoRA instruction-tuning throughput on the CPU: `tsumugi sft` against PyPI peft on Hugging Face
# transformers (Debian's CPU torch), same GPT-2 shape, same LoRA (r=8, alpha=32, dropout 0.05 on
# c_attn, c_proj, c_fc), same batch (B sequences x T tokens), AdamW. Both start from one base
# checkpoint that transformers writes and tsumugi reads. Scored by the median step time after the
# first two; also each side's peak RSS. tsumugi trains on the bundled instructions (data/sft/,
# packed), the peer on random tokens of the same shape (the arithmetic does not depend on values).
# Knobs: THREADS (default 2), STEPS (default 12), L C NH (default 6 384 6), B T (default 8 128),
# TOK (a SentencePiece model with <EOD>; default demo-out/tok.model), KEEP=1 keeps the temp dir.
# Usage: bench/sft_cpu.sh [BUILD_DIR] (default: build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build}/tsumugi
threads=${THREADS:-2} steps=${STEPS:-12} L=${L:-6} C=${C:-384} NH=${NH:-6} B=${B:-8} T=${T:-128}
tok=${TOK:-$root/demo-out/tok.model}
[[ -f $tok ]] || { echo "no tokenizer at $tok: run make demo first or set TOK" >&2; exit 1; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sftbench.XXXXXX")
if [[ ${KEEP:-0} == 1 ]]; then echo "temp dir: $work"; else trap 'rm -rf "$work"' EXIT; fi
V=$(( ($($bin tokenizer info --model "$tok" | awk '/vocab/ {print $NF; exit}') + 127) / 128 * 128 ))
echo "shape: L=$L C=$C heads=$NH vocab=$V; batch $B x $T tokens; $steps steps; $threads threads"
echo "load before: $(uptime | sed 's/.*load average: //')"

OMP_NUM_THREADS=$threads /usr/bin/python3 - "$work" "$L" "$C" "$NH" "$V" "$T" "$B" "$steps" "$tok" <<'PY'
import json, os, resource, shutil, statistics, sys, time
import torch
from transformers import GPT2Config, GPT2LMHeadModel
from peft import LoraConfig, get_peft_model
work, L, C, NH, V, T, B, steps, tok = sys.argv[1], *map(int, sys.argv[2:9]), sys.argv[9]
torch.manual_seed(0)
cfg = GPT2Config(n_layer=L, n_embd=C, n_head=NH, vocab_size=V, n_positions=T, bos_token_id=7, eos_token_id=7)
base = GPT2LMHeadModel(cfg)
base.save_pretrained(f"{work}/base", safe_serialization=True)
shutil.copy(tok, f"{work}/base/tokenizer.model")
model = get_peft_model(base, LoraConfig(r=8, lora_alpha=32, lora_dropout=0.05, target_modules=["c_attn", "c_proj", "c_fc"],
                                        fan_in_fan_out=True, task_type="CAUSAL_LM"))
model.train()
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0)
ids = torch.randint(8, V, (B, T))
labels = ids.clone()
labels[:, : T * 5 // 6] = -100  # response-only loss, as SFT batches
times = []
for _ in range(steps):
    t0 = time.perf_counter()
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
med = statistics.median(times[2:])
json.dump({"tokens_per_s": B * T / med, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
          open(f"{work}/peft.json", "w"))
PY

cat > "$work/sft.toml" <<EOF2
backend = "cpu"
model = "$work/base"
out_dir = "$work/run"
[data]
train = ["$root/data/sft/train.jsonl"]
[lora]
r = 8
alpha = 32
dropout = 0.05
[train]
steps = $steps
batch_size = $B
seq_len = $T
lr = 1e-3
eval_interval = 0
checkpoint_interval = 0
report_interval = 0
sample_tokens = 0
log_interval = 1000
EOF2
OMP_NUM_THREADS=$threads "$bin" -q sft --config "$work/sft.toml"
/usr/bin/python3 - "$work" "$B" "$T" <<'PY'
import json, statistics, sys
work, B, T = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = [json.loads(l) for l in open(f"{work}/run/metrics.jsonl") if '"loss"' in l]
ts = statistics.median(x["tokens_per_s"] for x in m[2:])
rss = max(x["mem_bytes"] for x in m) / 2**20
p = json.load(open(f"{work}/peft.json"))
print(f"{'engine':<28} {'tokens/s':>10} {'peak RSS MB':>12}")
print(f"{'tsumugi sft (LoRA, fp32)':<28} {ts:>10.0f} {rss:>12.0f}")
print(f"{'peft + transformers (fp32)':<28} {p['tokens_per_s']:>10.0f} {p['peak_rss_mb']:>12.0f}")
print(f"tsumugi / peft: {ts / p['tokens_per_s']:.2f}x tokens/s, {rss / p['peak_rss_mb']:.2f}x memory")
PY
echo "load after: $(uptime | sed 's/.*load average: //')"
