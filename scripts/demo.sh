#!/usr/bin/env bash
# End-to-end demo on the bundled real corpus (Debian man pages and C sources).
# Each stage of tsumugi adds its step here as it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TSUMUGI:-build/tsumugi}
OUT=${DEMO_OUT:-demo-out}
rm -rf "$OUT"
mkdir -p "$OUT"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. A web-like dirty mix of the bundled corpus (duplicates, near-duplicates, URLs, ads, junk)"
python3 scripts/make_dirty_corpus.py --in data/corpus --langs ja --out "$OUT/raw.jsonl.gz" --seed 1
python3 - "$OUT/raw.jsonl.gz" <<'PY'
import gzip, json, sys, collections
c = collections.Counter(json.loads(l).get("synthetic", "original") for l in gzip.open(sys.argv[1], "rt"))
print("documents by kind:", dict(c))
PY

step "2. corpus clean: Japanese with the LLM-jp corpus v1 rules and MinHash near-dedup"
$BIN corpus clean --preset llm-jp-v1-ja --dedup minhash -o "$OUT/clean-ja" "$OUT/raw.jsonl.gz"

step "3. corpus clean: English man pages with the Gopher/C4 rules, code with the RedPajama rules"
$BIN corpus clean --preset en --dedup exact -o "$OUT/clean-en" data/corpus/en.jsonl.gz
$BIN corpus clean --preset code --dedup exact -o "$OUT/clean-code" data/corpus/code.jsonl.gz

step "What was rejected, and why (first of each filter)"
python3 - "$OUT/clean-ja/rejects.jsonl.zst" <<'PY' || true
import json, subprocess, sys
seen = set()
out = subprocess.run(["zstdcat", sys.argv[1]], capture_output=True, text=True).stdout
for line in out.splitlines():
    r = json.loads(line)
    f = r["reject"]["filter"]
    if f in seen: continue
    seen.add(f)
    extra = f" (duplicate of {r['reject']['duplicate_of']})" if "duplicate_of" in r["reject"] else ""
    print(f"- {f}: {r['reject']['reason']}{extra}\n    {r['text'][:80]!r}")
PY

step "4. tokenizer train: a SentencePiece-compatible unigram model on the cleaned ja + en + code text"
$BIN tokenizer train --input "$OUT"/clean-ja/kept-*.jsonl.zst "$OUT"/clean-en/kept-*.jsonl.zst \
  "$OUT"/clean-code/kept-*.jsonl.zst --vocab-size 8000 --model-type unigram --byte-fallback true \
  --split-digits true --control-symbols '<EOD>' --input-sentence-size 30000 --num-threads "$(nproc)" -o "$OUT/tok"
$BIN tokenizer info --model "$OUT/tok.model" | head -12
echo "吾輩は猫である。名前はまだ無い。 The quick brown fox; printf(\"%d\", 42);" > "$OUT/sample.txt"
echo "pieces:"; $BIN tokenizer encode --model "$OUT/tok.model" --output-format piece < "$OUT/sample.txt"
echo "ids:   "; $BIN tokenizer encode --model "$OUT/tok.model" --output-format id < "$OUT/sample.txt" \
  | tee "$OUT/sample.ids"
echo "decode:"; $BIN tokenizer decode --model "$OUT/tok.model" < "$OUT/sample.ids"

step "5. tokenize: the cleaned ja / en / code text into Megatron-LM indexed datasets (.bin/.idx), <EOD> after each document"
$BIN tokenize --model "$OUT/tok.model" -o "$OUT/shards/ja" "$OUT"/clean-ja/kept-*.jsonl.zst
$BIN tokenize --model "$OUT/tok.model" -o "$OUT/shards/en" "$OUT"/clean-en/kept-*.jsonl.zst
$BIN tokenize --model "$OUT/tok.model" -o "$OUT/shards/code" "$OUT"/clean-code/kept-*.jsonl.zst

step "6. tokenizer export-hf: the same tokenizer for Hugging Face (tokenizer.json)"
$BIN tokenizer export-hf --model "$OUT/tok.model" -o "$OUT/hf-tokenizer"
ls -l "$OUT/hf-tokenizer"

step "7. pretrain: a small GPT-2-family model on those shards (configs/tiny.toml; a few minutes on a CPU)"
$BIN pretrain --config configs/tiny.toml --set out_dir="$OUT/run-tiny" --set tokenizer="$OUT/tok.model" \
  --set data.train="$OUT/shards/ja,$OUT/shards/en,$OUT/shards/code" ${DEMO_STEPS:+--set train.steps=$DEMO_STEPS}
python3 - "$OUT/run-tiny/metrics.jsonl" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
val = [(x["step"], x["val_loss"]) for x in m if "val_loss" in x]
print(f"training loss: step 1 {m[0]['loss']:.3f} -> step {m[-1]['step']} {m[-1]['loss']:.3f}")
print("validation loss:", ", ".join(f"step {s}: {v:.3f}" for s, v in val))
PY
CKPT=$(ls -d "$OUT"/run-tiny/checkpoints/step_* | tail -1)

step "8. generate: greedy continuation from the last checkpoint"
$BIN generate --model "$CKPT" --prompt "ファイルを" --max-tokens 40
$BIN generate --model "$CKPT" --prompt "The file" --max-tokens 40
echo "run report: $OUT/run-tiny/report.html (plots of loss, lr, gradient norm, throughput); TensorBoard: $OUT/run-tiny/tensorboard"

step "9. sft: LoRA instruction tuning of that model on the bundled man-page instructions (data/sft/, configs/sft-tiny.toml)"
$BIN sft --config configs/sft-tiny.toml --set model="$CKPT" --set out_dir="$OUT/sft-tiny" \
  ${DEMO_SFT_STEPS:+--set train.steps=$DEMO_SFT_STEPS}
python3 - "$OUT/sft-tiny/metrics.jsonl" <<'PY'
import json, sys
m = [json.loads(l) for l in open(sys.argv[1])]
val = [(x["step"], x["val_loss"]) for x in m if "val_loss" in x]
print("held-out response-only loss:", ", ".join(f"step {s}: {v:.3f}" for s, v in val))
print(f"  {val[0][1]:.3f} (base model) -> {val[-1][1]:.3f} (tuned)" + ("  lower" if val[-1][1] < val[0][1] else "  NOT lower"))
PY
ADAPTER=$(ls -d "$OUT"/sft-tiny/checkpoints/step_* | tail -1)
echo "PEFT adapter: $ADAPTER"; ls "$ADAPTER"
$BIN sft merge --model "$CKPT" --adapter "$ADAPTER" -o "$OUT/sft-tiny/merged"
PROMPT=$'以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。\n\n### 指示:\nコマンド ls は何をしますか？\n\n### 応答:\n'
echo "before tuning:"; $BIN generate --model "$CKPT" --prompt "$PROMPT" --max-tokens 24
echo "after tuning:";  $BIN generate --model "$OUT/sft-tiny/merged" --prompt "$PROMPT" --max-tokens 24

step "10. eval: the bundled llm-jp-eval-format sets (data/eval/), base model and tuned adapter, one report"
$BIN eval --model "$CKPT" --dataset data/eval/*.json --num-few-shots 0 --max-samples 20 -o "$OUT/eval/base"
$BIN eval --model "$CKPT" --adapter "$ADAPTER" --dataset data/eval/*.json --num-few-shots 0 --max-samples 20 \
  -o "$OUT/eval/tuned" --compare "$OUT/eval/base"
echo "scores: $OUT/eval/{base,tuned}/scores.json; side by side: $OUT/eval/tuned/report.html"

step "11. export: the tuned model as a Hugging Face directory and as GGUF for llama.cpp"
$BIN export --format hf --model "$OUT/sft-tiny/merged" -o "$OUT/export/hf"
$BIN export --format gguf --dtype q8_0 --model "$OUT/sft-tiny/merged" -o "$OUT/export/tiny-q8_0.gguf"
ls -l "$OUT/export" "$OUT/export/hf"

step "12. index / search / trace: the cleaned Japanese and English text, searchable, and where an output comes from"
$BIN index --text "$OUT"/clean-ja/kept-*.jsonl.zst "$OUT"/clean-en/kept-*.jsonl.zst --tokenizer "$OUT/tok.model" \
  -o "$OUT/index" --force --no-progress
$BIN search count --index "$OUT/index" 'ファイル'
$BIN search next --index "$OUT/index" --top 5 'ファイルを'
$BIN trace --index "$OUT/index" --min-tokens 4 --text "$($BIN generate --model "$CKPT" --prompt 'ファイルを' --max-tokens 24)"
echo "serve it all: $BIN serve --model $OUT/sft-tiny/merged --index $OUT/index  (chat at /, search at /search)"

echo
echo "Outputs are in $OUT/: cleaned shards with rejects and stats, the tokenizer, Megatron shards, HF files,"
echo "the pretraining and tuning runs, eval reports, exports and the corpus index."
