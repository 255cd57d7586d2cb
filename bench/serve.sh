#!/usr/bin/env bash
# `tsumugi serve` under load: 1, 4 and 16 concurrent streaming clients on loopback, each taking
# exactly TOKENS tokens. Prints time to first token, per-stream and aggregate tokens/s, and the
# ratio of what a streaming client sees to the engine's own decode speed (from /metrics): the
# cost of HTTP, JSON and server-sent events per token.
# The model is a random-weight GPT-2 of the gpt2-124m shape with a tokenizer trained on the
# bundled corpus (speed does not depend on the weights).
# Usage: bench/serve.sh [BUILD_DIR] [TOKENS] [PARALLEL]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${1:-build}/tsumugi")
TOKENS=${2:-64}
PARALLEL=${3:-4}
W=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$W"' EXIT

"$BIN" -q tokenizer train --input data/corpus/ja.jsonl.gz --vocab-size 8000 -o "$W/tok" > /dev/null
mkdir -p "$W/model"
cp "$W/tok.model" "$W/model/tokenizer.model"
python3 - "$W/model" <<'PY'
# GPT-2 124M shape, random weights, Hugging Face layout (Conv1D weights are [in, out]).
import json, sys, numpy as np
from safetensors.numpy import save_file
out, V, T, D, L = sys.argv[1], 8000, 1024, 768, 12
rng = np.random.default_rng(0)
w = lambda *s: (rng.standard_normal(s) * 0.02).astype(np.float32)
t = {"transformer.wte.weight": w(V, D), "transformer.wpe.weight": w(T, D),
     "transformer.ln_f.weight": np.ones(D, np.float32), "transformer.ln_f.bias": np.zeros(D, np.float32)}
for i in range(L):
    p = f"transformer.h.{i}."
    t.update({p + "ln_1.weight": np.ones(D, np.float32), p + "ln_1.bias": np.zeros(D, np.float32),
              p + "ln_2.weight": np.ones(D, np.float32), p + "ln_2.bias": np.zeros(D, np.float32),
              p + "attn.c_attn.weight": w(D, 3 * D), p + "attn.c_attn.bias": np.zeros(3 * D, np.float32),
              p + "attn.c_proj.weight": w(D, D), p + "attn.c_proj.bias": np.zeros(D, np.float32),
              p + "mlp.c_fc.weight": w(D, 4 * D), p + "mlp.c_fc.bias": np.zeros(4 * D, np.float32),
              p + "mlp.c_proj.weight": w(4 * D, D), p + "mlp.c_proj.bias": np.zeros(D, np.float32)})
save_file(t, f"{out}/model.safetensors", metadata={"format": "pt"})
json.dump({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": L, "n_head": 12, "n_embd": D,
           "n_positions": T, "vocab_size": V, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
           "bos_token_id": 1, "eos_token_id": 2}, open(f"{out}/config.json", "w"))
PY

"$BIN" serve --model "$W/model" --port 0 --parallel "$PARALLEL" --max-queue 64 2> "$W/serve.log" &
SERVER=$!
for _ in $(seq 1 600); do
  PORT=$(grep -o 'http://127.0.0.1:[0-9]*' "$W/serve.log" | head -1 | sed 's/.*://') || true
  [ -n "${PORT:-}" ] && break
  sleep 0.1
done
[ -n "${PORT:-}" ] || { cat "$W/serve.log"; exit 1; }
echo "gpt2-124m shape, $TOKENS tokens a stream, --parallel $PARALLEL, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
python3 bench/serve_load.py "http://127.0.0.1:$PORT" 1 "$TOKENS" 2 > /dev/null  # warm-up
for c in 1 4 16; do
  python3 bench/serve_load.py "http://127.0.0.1:$PORT" "$c" "$TOKENS" 1
done
