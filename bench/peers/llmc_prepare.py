#!/usr/bin/env python3
"""Write the input files that llm.c's CPU reference train_gpt2.c reads, for a chosen GPT-2 shape.

  llmc_prepare.py --out-model M.bin --out-data D.bin --layers 12 --channels 768 --heads 12
                  [--vocab 50257] [--max-seq 1024] [--seed 0] [--tokens FILE] [--num-tokens N]

Model file (train_gpt2.c gpt2_build_from_checkpoint): int32[256] header (magic 20240326, version 3,
maxT, V, L, NH, C, Vp) then the fp32 parameters in its fixed order; V is padded to a multiple of 128
(Vp) as its train_gpt2.py does, padded wte rows zero. Weights are random (GPT-2 init, seeded): the
benchmark only measures speed, so no pretrained checkpoint is needed.

Data file (llmc/dataloader.h): int32[256] header (magic 20240520, version 1, ntok) then uint16
tokens. Tokens come from --tokens (a Megatron .bin of uint16 tokens from `tsumugi tokenize`, read
raw) or by default from the bundled corpus text (UTF-8 bytes taken in pairs as uint16), mod V:
llm.c's cost per step does not depend on the token values, only that they are in range.
"""
import argparse, gzip, json, math, pathlib, sys
import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]


def param_shapes(L, C, Vp, maxT):
    # Same order and shapes as fill_in_parameter_sizes(); Linear weights are [out, in].
    return [("wte", (Vp, C)), ("wpe", (maxT, C)), ("ln1w", (L, C)), ("ln1b", (L, C)),
            ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)), ("attprojw", (L, C, C)), ("attprojb", (L, C)),
            ("ln2w", (L, C)), ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
            ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)), ("lnfw", (C,)), ("lnfb", (C,))]


def write_model(path, L, C, NH, V, maxT, seed):
    Vp = (V + 127) // 128 * 128
    header = np.zeros(256, np.int32)
    header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
    rng = np.random.default_rng(seed)
    n = 0
    with open(path, "wb") as f:
        header.tofile(f)
        for name, shape in param_shapes(L, C, Vp, maxT):
            if name.endswith("b"):  # biases and LayerNorm shifts
                t = np.zeros(shape, np.float32)
            elif name in ("ln1w", "ln2w", "lnfw"):
                t = np.ones(shape, np.float32)
            else:  # GPT-2 init; residual projections scaled by 1/sqrt(2L)
                std = 0.02 / math.sqrt(2 * L) if name in ("attprojw", "fcprojw") else 0.02
                t = rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
                if name == "wte":
                    t[V:] = 0
            t.tofile(f)
            n += t.size
    return n, Vp


def corpus_tokens(num_tokens):
    # Bytes of the bundled corpus texts, two bytes per uint16 token.
    buf = bytearray()
    for name in ("en", "ja", "code"):
        with gzip.open(ROOT / "data" / "corpus" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                buf += json.loads(line)["text"].encode("utf-8")
                if len(buf) >= 2 * num_tokens:
                    return np.frombuffer(bytes(buf[: 2 * num_tokens]), "<u2")
    buf += b"\0" * (len(buf) & 1)
    return np.frombuffer(bytes(buf), "<u2")


def write_data(path, tokens):
    header = np.zeros(256, np.int32)
    header[:3] = [20240520, 1, tokens.size]
    with open(path, "wb") as f:
        header.tofile(f)
        tokens.astype("<u2").tofile(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-model", required=True)
    ap.add_argument("--out-data", required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--channels", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--max-seq", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tokens", help="Megatron .bin with uint16 tokens (default: bundled corpus bytes)")
    ap.add_argument("--num-tokens", type=int, default=1 << 20)
    a = ap.parse_args()
    if a.channels % a.heads:
        sys.exit(f"channels {a.channels} not divisible by heads {a.heads}")
    if not 0 < a.vocab <= 65536:
        sys.exit("vocab must fit uint16 tokens")
    n, Vp = write_model(a.out_model, a.layers, a.channels, a.heads, a.vocab, a.max_seq, a.seed)
    if a.tokens:
        toks = np.fromfile(a.tokens, "<u2", count=a.num_tokens)
    else:
        toks = corpus_tokens(a.num_tokens)
    toks = (toks.astype(np.int64) % a.vocab).astype("<u2")
    if toks.size < 2 * 4 * 1024 + 1:
        sys.exit(f"only {toks.size} tokens; llm.c needs several B*T+1 windows")
    write_data(a.out_data, toks)
    print(f"llm.c model: L={a.layers} C={a.channels} NH={a.heads} V={a.vocab} Vp={Vp} maxT={a.max_seq} "
          f"params={n} -> {a.out_model}; {toks.size} tokens -> {a.out_data}")


if __name__ == "__main__":
    main()
