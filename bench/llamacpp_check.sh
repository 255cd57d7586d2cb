#!/usr/bin/env bash
# llama.cpp runs tsumugi's GGUF export and decodes greedily exactly as tsumugi does.
#
#   bench/llamacpp_check.sh CHECKPOINT_DIR...
#
# For every checkpoint and every GGUF type in $DTYPES (default "f32 f16 bf16 q8_0"), exports the
# GGUF, then for each prompt compares the ids llama.cpp generates greedily after tsumugi's prompt ids
# with `tsumugi generate --temperature 0 --output-format ids` on the same weights: the checkpoint
# itself for f32 and q8_0, and for f16 / bf16 the checkpoint rounded to that type (exported to HF
# in it and imported back), since llama.cpp then computes with the rounded weights. It also reports whether llama.cpp's
# own SentencePiece tokenizer ("llama" vocab: greedy bigram merges by score) splits the prompt text
# into the same ids as tsumugi's unigram Viterbi encoder. Exit status 1 when an f32 or f16 greedy
# continuation differs (bf16 and q8_0 change the weights, so their rows are informational).
#
# llama.cpp is built outside the repository: LLAMA_CPP_DIR (default /work/ext/llama.cpp) with its
# build in $LLAMA_CPP_DIR/build (cmake -B build && cmake --build build). A tiny driver linked against
# its libllama (bench/llamacpp_greedy.cc) does the decoding so the comparison is id for id.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TSUMUGI:-build/tsumugi}
LLAMA=${LLAMA_CPP_DIR:-/work/ext/llama.cpp}
OUT=${OUT:-$(mktemp -d /tmp/tsumugi-llamacpp-XXXXXX)}
N=${N_PREDICT:-32}
DTYPES=${DTYPES:-f32 f16 bf16 q8_0}
[ $# -ge 1 ] || { echo "usage: $0 CHECKPOINT_DIR..." >&2; exit 2; }
LIBDIR="$LLAMA/build/bin"
[ -e "$LIBDIR/libllama.so" ] || LIBDIR="$LLAMA/build/src"
[ -e "$LIBDIR/libllama.so" ] || { echo "no libllama.so under $LLAMA/build (build llama.cpp first)" >&2; exit 2; }
GGML_LIBDIR=$(dirname "$(find "$LLAMA/build" -name 'libggml.so' | head -1)")
mkdir -p "$OUT"
g++ -O2 -std=c++17 bench/llamacpp_greedy.cc -I"$LLAMA/include" -I"$LLAMA/ggml/include" \
  -L"$LIBDIR" -L"$GGML_LIBDIR" -lllama -lggml -lggml-base \
  -Wl,-rpath,"$LIBDIR" -Wl,-rpath,"$GGML_LIBDIR" -o "$OUT/llamacpp_greedy"

PROMPTS=("ファイルを" "吾輩は猫である。名前は" "The file is" "int main(void) {")
status=0
printf '%-28s %-5s %-26s %-7s %-10s %s\n' model dtype prompt greedy tokenizer "first difference"
for model in "$@"; do
  name=$(basename "$model")
  for dtype in $DTYPES; do
    gguf="$OUT/$name-$dtype.gguf"
    "$BIN" -q export --format gguf --dtype "$dtype" --model "$model" -o "$gguf" --no-progress
    ref=$model
    if [ "$dtype" = f16 ] || [ "$dtype" = bf16 ]; then
      ref="$OUT/$name-$dtype-ref"
      rm -rf "$OUT/$name-$dtype-hf" "$ref"
      "$BIN" -q export --format hf --dtype "$dtype" --model "$model" -o "$OUT/$name-$dtype-hf" --no-progress
      "$BIN" -q import --from-hf "$OUT/$name-$dtype-hf" -o "$ref"
    fi
    for prompt in "${PROMPTS[@]}"; do
      ids=$(printf '%s\n' "$prompt" | "$BIN" tokenizer encode --model "$model/tokenizer.model" --output-format id)
      ours=$("$BIN" -q generate --model "$ref" --prompt-ids "$ids" --max-tokens "$N" --temperature 0 --output-format ids)
      # shellcheck disable=SC2086
      theirs_all=$("$OUT/llamacpp_greedy" "$gguf" "$N" "$prompt" $ids)
      theirs=$(sed -n 's/^generated: *//p' <<<"$theirs_all")
      their_tok=$(sed -n 's/^tokenized: *//p' <<<"$theirs_all")
      greedy=same
      diff_at=""
      if [ "$(echo $ours)" != "$(echo $theirs)" ]; then
        greedy=DIFFERS
        read -r -a a <<<"$ours"
        read -r -a b <<<"$theirs"
        for ((k = 0; k < ${#a[@]} || k < ${#b[@]}; k++)); do
          if [ "${a[k]:-end}" != "${b[k]:-end}" ]; then diff_at="token $k: tsumugi ${a[k]:-end}, llama.cpp ${b[k]:-end}"; break; fi
        done
        case $dtype in f32 | f16) status=1 ;; esac
      fi
      tok=same
      [ "$(echo $ids)" = "$(echo $their_tok)" ] || tok="differs"
      printf '%-28s %-5s %-26s %-7s %-10s %s\n' "$name" "$dtype" "$prompt" "$greedy" "$tok" "$diff_at"
      [ -z "${VERBOSE:-}" ] || printf '  ids %s\n  tsumugi   %s\n  llama.cpp %s\n  llama.cpp tokens %s\n' "$ids" "$ours" "$theirs" "$their_tok"
    done
  done
done
exit $status
