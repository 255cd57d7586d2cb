#!/usr/bin/env python3
"""Reference results for the inference tests, from Hugging Face transformers, peft and gguf-py.

  hf-save   --family gpt2|llama --dtype float32|bfloat16 [--shard SIZE] --out DIR --ids "1 2 3"
            a random small model saved with save_pretrained; DIR/expected_logits.json holds the
            logits transformers computes (float32) for the ids at every position
  hf-logits --dir DIR --ids "1 2 3" --out FILE   logits of any HF directory (e.g. one tsumugi wrote)
  peft      --base DIR --out ADAPTER --ids "..." --logits-out FILE
            a LoRA adapter (random A and B) saved by peft, and the adapted model's logits
  q8        --in FILE --out FILE   float32 values quantized to GGML Q8_0 blocks by gguf-py
  batch     FILE   runs each argument list of a JSON array of lists in one process (torch loads once)
"""
import argparse
import json
import sys


def need(module, package):
    try:
        return __import__(module)
    except ImportError:
        sys.exit(f"oracle.py: the Python module '{module}' is missing: install it with "
                 f"/usr/bin/python3 -m pip install --break-system-packages {package} "
                 f"(or `make test`, which installs tests/requirements-torch.txt)")


def ids_of(s):
    return [int(x) for x in s.split()]


def logits_of(model, ids):
    torch = need("torch", "torch")
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0].float()
    return out.tolist()


def spread_weights(model, seed):
    """Weights large enough that logits are far apart (random init gives near-ties)."""
    torch = need("torch", "torch")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "ln_" in name or "norm" in name:
                p.copy_(noise * 0.1 + (0.0 if name.endswith("bias") else 1.0))
            else:
                p.copy_(noise * 0.15)


def hf_save(a):
    torch = need("torch", "torch")
    tf = need("transformers", "transformers==4.49.0")
    if a.family == "gpt2":
        cfg = tf.GPT2Config(vocab_size=384, n_positions=64, n_embd=64, n_layer=2, n_head=4,
                            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                            layer_norm_epsilon=1e-5)
        model = tf.GPT2LMHeadModel(cfg)
    else:
        cfg = tf.LlamaConfig(vocab_size=384, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             rms_norm_eps=1e-5, rope_theta=5000.0, tie_word_embeddings=False)
        model = tf.LlamaForCausalLM(cfg)
    spread_weights(model, a.seed)
    model.eval()
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[a.dtype]
    model = model.to(dtype)
    kw = {"safe_serialization": True}
    if a.shard:
        kw["max_shard_size"] = a.shard
    model.save_pretrained(a.out, **kw)
    # Reloaded as float32, as a user would run it (casting the bf16 model back would also keep the
    # rotary inv_freq buffer rounded to bf16, which the saved checkpoint does not hold).
    reloaded = tf.AutoModelForCausalLM.from_pretrained(a.out, torch_dtype=torch.float32)
    reloaded.eval()
    ids = ids_of(a.ids)
    with open(f"{a.out}/expected_logits.json", "w") as f:
        json.dump({"ids": ids, "logits": logits_of(reloaded, ids)}, f)


def hf_logits(a):
    torch = need("torch", "torch")
    tf = need("transformers", "transformers==4.49.0")
    model = tf.AutoModelForCausalLM.from_pretrained(a.dir, torch_dtype=torch.float32)
    model.eval()
    ids = ids_of(a.ids)
    with open(a.out, "w") as f:
        json.dump({"ids": ids, "logits": logits_of(model, ids)}, f)


def peft_adapter(a):
    torch = need("torch", "torch")
    tf = need("transformers", "transformers==4.49.0")
    peft = need("peft", "peft==0.14.0 --no-deps")
    model = tf.AutoModelForCausalLM.from_pretrained(a.base, torch_dtype=torch.float32)
    if model.config.model_type == "gpt2":
        targets, fifo = ["c_attn", "c_proj", "c_fc"], True
    else:
        targets, fifo = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], False
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, fan_in_fan_out=fifo, lora_dropout=0.0,
                          task_type="CAUSAL_LM")
    pm = peft.get_peft_model(model, cfg)
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    pm.eval()
    pm.save_pretrained(a.out)
    ids = ids_of(a.ids)
    with open(a.logits_out, "w") as f:
        json.dump({"ids": ids, "logits": logits_of(pm, ids)}, f)


def q8(a):
    np = need("numpy", "numpy")
    gguf = need("gguf", "gguf==0.19.0")
    from gguf.quants import quantize
    x = np.fromfile(a.inp, dtype=np.float32)
    quantize(x.reshape(1, -1), gguf.GGMLQuantizationType.Q8_0).tofile(a.out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("hf-save")
    s.add_argument("--family", required=True)
    s.add_argument("--dtype", default="float32")
    s.add_argument("--shard", default="")
    s.add_argument("--out", required=True)
    s.add_argument("--ids", required=True)
    s.add_argument("--seed", type=int, default=3)
    s = sub.add_parser("hf-logits")
    s.add_argument("--dir", required=True)
    s.add_argument("--ids", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("peft")
    s.add_argument("--base", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ids", required=True)
    s.add_argument("--logits-out", required=True)
    s = sub.add_parser("q8")
    s.add_argument("--in", dest="inp", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("batch")
    s.add_argument("file")
    a = ap.parse_args()
    run = {"hf-save": hf_save, "hf-logits": hf_logits, "peft": peft_adapter, "q8": q8}
    if a.cmd == "batch":
        with open(a.file) as f:
            for argv in json.load(f):
                b = ap.parse_args(argv)
                run[b.cmd](b)
    else:
        run[a.cmd](a)


if __name__ == "__main__":
    main()
