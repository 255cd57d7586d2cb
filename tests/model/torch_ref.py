#!/usr/bin/python3
"""PyTorch reference for tsumugi's model engine: GPT-2 and LLaMA in plain torch with the Hugging Face
layout and semantics (current transformers needs torch >= 2; Debian has 1.13), read from an HF-style
directory (config.json + model.safetensors). Computes in --dtype (default float64), writes float32.

  torch_ref.py --model DIR --tokens T.npy --out OUT.safetensors [--dtype float64|float32]
      T.npy: integer [B, T+1]; inputs = [:, :-1], targets = [:, 1:]. OUT: logits [B,T,V], loss []
      (mean CE over all B*T targets), grad.<hf name> for every parameter (a tied embedding's gradient
      includes the lm_head use).
  torch_ref.py --model DIR --tokens T.npy --out OUT.safetensors --adamw-steps K [--lr 1e-3 --beta1 0.9
      --beta2 0.999 --eps 1e-8 --weight-decay 0 --grad-clip 0]
      K steps of torch.optim.AdamW on that one batch, constant lr; decay on 2-D weights only (embeddings
      included), none on biases and norm weights; if grad-clip > 0, torch's clip_grad_norm_ (scale by
      clip / (norm + 1e-6) when that is < 1). OUT: losses [K] (before each step), grad_norms [K] (before
      clipping), final_loss [] (after the last step), and the final parameters under their HF names.
  torch_ref.py --self-test    (also compares with transformers' models where transformers imports)
"""
import argparse, json, math, os, struct, sys, tempfile
import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors (reader and writer)
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "U16": np.uint16, "U8": np.uint8}

DTYPE_NAMES = {np.dtype(v): k for k, v in DTYPES.items()}

def read_safetensors(path):
    data = open(path, "rb").read()
    base = 8 + struct.unpack("<Q", data[:8])[0]
    out = {}
    for name, info in json.loads(data[8:base]).items():
        if name == "__metadata__":
            continue
        raw = data[base + info["data_offsets"][0]:base + info["data_offsets"][1]]
        if info["dtype"] == "BF16":  # bf16 is the top half of an fp32
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, np.dtype(DTYPES[info["dtype"]]).newbyteorder("<"))
        out[name] = arr.reshape(info["shape"])
    return out

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, arr in tensors.items():
        arr = np.asarray(arr)  # 0-d arrays stay 0-d (shape [])
        blobs.append(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        header[name] = {"dtype": DTYPE_NAMES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(blobs[-1])]}
        off += len(blobs[-1])
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)  # data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

# ---------------------------------------------------------------- models
def param_shapes(cfg):
    """HF tensor names and shapes the config implies (checked against the file)."""
    V = cfg["vocab_size"]
    if cfg["model_type"] == "gpt2":
        C, I = cfg["n_embd"], cfg.get("n_inner") or 4 * cfg["n_embd"]
        head = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [cfg["n_positions"], C]}
        layer = {"ln_1.weight": [C], "ln_1.bias": [C], "attn.c_attn.weight": [C, 3 * C], "attn.c_attn.bias": [3 * C],
                 "attn.c_proj.weight": [C, C], "attn.c_proj.bias": [C], "ln_2.weight": [C], "ln_2.bias": [C],
                 "mlp.c_fc.weight": [C, I], "mlp.c_fc.bias": [I], "mlp.c_proj.weight": [I, C], "mlp.c_proj.bias": [C]}
        prefix, L, tail = "transformer.h", cfg["n_layer"], {"transformer.ln_f.weight": [C], "transformer.ln_f.bias": [C]}
        tied = cfg.get("tie_word_embeddings", True)
    elif cfg["model_type"] == "llama":
        if cfg.get("rope_scaling") or cfg.get("attention_bias") or cfg.get("mlp_bias"):
            raise SystemExit("rope_scaling / attention_bias / mlp_bias are not modelled")
        C, I, H = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_attention_heads"]
        KV, D = cfg.get("num_key_value_heads") or H, cfg.get("head_dim") or C // H
        head = {"model.embed_tokens.weight": [V, C]}
        layer = {"input_layernorm.weight": [C], "self_attn.q_proj.weight": [H * D, C],
                 "self_attn.k_proj.weight": [KV * D, C], "self_attn.v_proj.weight": [KV * D, C],
                 "self_attn.o_proj.weight": [C, H * D], "post_attention_layernorm.weight": [C],
                 "mlp.gate_proj.weight": [I, C], "mlp.up_proj.weight": [I, C], "mlp.down_proj.weight": [C, I]}
        prefix, L, tail = "model.layers", cfg["num_hidden_layers"], {"model.norm.weight": [C]}
        tied = cfg.get("tie_word_embeddings", False)
    else:
        raise SystemExit(f"unknown model_type {cfg.get('model_type')!r}")
    for i in range(L):
        head.update({f"{prefix}.{i}.{n}": s for n, s in layer.items()})
    return {**head, **tail, **({} if tied else {"lm_head.weight": [V, C]})}

def attention(q, k, v):
    """q, k, v [B, heads, T, D]; causal softmax(q k^T / sqrt(D)) v -> [B, T, heads*D]."""
    T = q.shape[2]
    att = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    return (att @ v).transpose(1, 2).reshape(q.shape[0], T, -1)

def gpt2_logits(cfg, p, idx):
    B, T = idx.shape
    C, H, eps = cfg["n_embd"], cfg["n_head"], cfg.get("layer_norm_epsilon", 1e-5)
    gelu = {"gelu_new": lambda x: F.gelu(x, approximate="tanh"), "gelu": F.gelu}[cfg.get("activation_function", "gelu_new")]
    heads = lambda t: t.view(B, T, H, C // H).transpose(1, 2)
    x = p["transformer.wte.weight"][idx] + p["transformer.wpe.weight"][:T]
    for i in range(cfg["n_layer"]):
        w = lambda n: p[f"transformer.h.{i}.{n}"]
        h = F.layer_norm(x, (C,), w("ln_1.weight"), w("ln_1.bias"), eps)
        q, k, v = (h @ w("attn.c_attn.weight") + w("attn.c_attn.bias")).split(C, dim=-1)  # Conv1D: x @ W[in,out]
        x = x + attention(heads(q), heads(k), heads(v)) @ w("attn.c_proj.weight") + w("attn.c_proj.bias")
        h = F.layer_norm(x, (C,), w("ln_2.weight"), w("ln_2.bias"), eps)
        x = x + gelu(h @ w("mlp.c_fc.weight") + w("mlp.c_fc.bias")) @ w("mlp.c_proj.weight") + w("mlp.c_proj.bias")
    x = F.layer_norm(x, (C,), p["transformer.ln_f.weight"], p["transformer.ln_f.bias"], eps)
    return x @ p.get("lm_head.weight", p["transformer.wte.weight"]).t()

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)

def rope_cos_sin(T, D, theta, dt):
    """HF LlamaRotaryEmbedding: dims i and i + D/2 rotate together by angle pos * theta^(-2i/D)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, D, 2, dtype=dt) / D)
    emb = torch.arange(T, dtype=dt)[:, None] * inv_freq[None, :]
    return torch.cat((emb, emb), -1).cos(), torch.cat((emb, emb), -1).sin()

def llama_logits(cfg, p, idx):
    B, T = idx.shape
    C, H, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg.get("rms_norm_eps", 1e-6)
    KV, D = cfg.get("num_key_value_heads") or H, cfg.get("head_dim") or C // H
    cos, sin = rope_cos_sin(T, D, cfg.get("rope_theta", 10000.0), p["model.norm.weight"].dtype)
    rope = lambda t: t * cos + rotate_half(t) * sin
    x = p["model.embed_tokens.weight"][idx]
    for i in range(cfg["num_hidden_layers"]):
        w = lambda n: p[f"model.layers.{i}.{n}"]
        h = rms_norm(x, w("input_layernorm.weight"), eps)
        proj = lambda n, heads: (h @ w(f"self_attn.{n}_proj.weight").t()).view(B, T, heads, D).transpose(1, 2)
        q, k, v = rope(proj("q", H)), rope(proj("k", KV)), proj("v", KV)
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)  # HF repeat_kv
        x = x + attention(q, k, v) @ w("self_attn.o_proj.weight").t()
        h = rms_norm(x, w("post_attention_layernorm.weight"), eps)
        x = x + (F.silu(h @ w("mlp.gate_proj.weight").t()) * (h @ w("mlp.up_proj.weight").t())) @ w("mlp.down_proj.weight").t()
    x = rms_norm(x, p["model.norm.weight"], eps)
    return x @ p.get("lm_head.weight", p["model.embed_tokens.weight"]).t()

def logits_and_loss(cfg, p, tokens):
    logits = (gpt2_logits if cfg["model_type"] == "gpt2" else llama_logits)(cfg, p, tokens[:, :-1])
    return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

# ---------------------------------------------------------------- modes
def load_model(d, dtype):
    cfg = json.load(open(os.path.join(d, "config.json")))
    want, got = param_shapes(cfg), read_safetensors(os.path.join(d, "model.safetensors"))
    if set(want) != set(got):
        raise SystemExit(f"tensor names differ: missing {sorted(set(want) - set(got))[:5]}, "
                         f"unexpected {sorted(set(got) - set(want))[:5]}")
    bad = [f"{n}: {list(got[n].shape)}, config implies {s}" for n, s in want.items() if list(got[n].shape) != s]
    if bad:
        raise SystemExit("wrong shapes: " + "; ".join(bad[:5]))
    return cfg, {n: torch.tensor(np.array(got[n]), dtype=dtype, requires_grad=True) for n in want}

f32 = lambda t: t.detach().to(torch.float32).numpy()

def forward_backward(cfg, p, tokens):
    logits, loss = logits_and_loss(cfg, p, tokens)
    loss.backward()
    return {"logits": f32(logits), "loss": f32(loss), **{"grad." + n: f32(t.grad) for n, t in p.items()}}

def adamw(cfg, p, tokens, a):
    groups = [{"params": [t for t in p.values() if t.dim() == 2], "weight_decay": a.weight_decay},
              {"params": [t for t in p.values() if t.dim() != 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(a.beta1, a.beta2), eps=a.eps)
    losses, norms = [], []
    for _ in range(a.adamw_steps):
        opt.zero_grad()
        loss = logits_and_loss(cfg, p, tokens)[1]
        loss.backward()
        losses.append(loss.item())
        norms.append(torch.cat([t.grad.reshape(-1) for t in p.values()]).norm().item())
        if a.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(list(p.values()), a.grad_clip)
        opt.step()
    with torch.no_grad():
        final = logits_and_loss(cfg, p, tokens)[1]
    return {"losses": np.array(losses, np.float32), "grad_norms": np.array(norms, np.float32),
            "final_loss": f32(final), **{n: f32(t) for n, t in p.items()}}

# ---------------------------------------------------------------- self-test
GPT2_TINY = {"model_type": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 8, "n_positions": 8, "vocab_size": 11,
             "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new", "tie_word_embeddings": True}
LLAMA_TINY = {"model_type": "llama", "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "hidden_size": 16, "intermediate_size": 12, "vocab_size": 11, "max_position_embeddings": 8,
              "rms_norm_eps": 1e-6, "rope_theta": 500.0, "tie_word_embeddings": False}

def rand_params(cfg, dt=torch.float64):  # norm weights near 1, the rest N(0, 0.3^2)
    is_norm = lambda n: n.endswith("norm.weight") or ".ln_" in n and n.endswith(".weight")
    return {n: (torch.randn(s, dtype=dt) * 0.3 + is_norm(n)).requires_grad_() for n, s in param_shapes(cfg).items()}

def hf_check(tokens):
    """Same logits and gradients as transformers' own models, in float32 (in float64 HF still casts its
    RMSNorm and LLaMA logits to float32). Runs where transformers imports, e.g. 4.36.2 in a venv made
    with --system-site-packages over Debian's torch 1.13."""
    try:
        import transformers as T
    except ImportError:
        return print("transformers not importable: comparison with GPT2LMHeadModel/LlamaForCausalLM skipped")
    for cfg, (HC, HM) in ((GPT2_TINY, (T.GPT2Config, T.GPT2LMHeadModel)), (LLAMA_TINY, (T.LlamaConfig, T.LlamaForCausalLM))):
        p = rand_params(cfg, torch.float32)
        m = HM(HC(**{k: v for k, v in cfg.items() if k != "model_type"})).eval()  # eval: no dropout
        missing, unexpected = m.load_state_dict({n: t.detach() for n, t in p.items()}, strict=False)
        assert set(missing) <= {"lm_head.weight"} and not unexpected, (missing, unexpected)
        lh = m(input_ids=tokens[:, :-1]).logits
        F.cross_entropy(lh.reshape(-1, lh.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
        logits, loss = logits_and_loss(cfg, p, tokens)
        loss.backward()
        assert torch.allclose(logits, lh, rtol=1e-5, atol=1e-5), f"{cfg['model_type']} logits vs HF"
        for n, t in m.named_parameters():
            assert torch.allclose(p[n].grad, t.grad, rtol=1e-4, atol=1e-5 * t.grad.abs().max()), f"{n} grad vs HF"
        print(f"{cfg['model_type']}: logits and gradients match transformers {T.__version__}")

def self_test():
    torch.manual_seed(0)
    dt = torch.float64
    tokens = torch.randint(0, 11, (2, 6))
    with tempfile.TemporaryDirectory() as d:  # file round trip through the writer, reader and loader
        for cfg in (GPT2_TINY, LLAMA_TINY):
            p = rand_params(cfg)
            json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
            write_safetensors(os.path.join(d, "model.safetensors"), {n: t.detach().numpy() for n, t in p.items()})
            assert all(torch.equal(p[n], q) for n, q in load_model(d, dt)[1].items()), "safetensors round trip"
    for cfg in (GPT2_TINY, LLAMA_TINY):
        p = rand_params(cfg)
        # gradcheck perturbs GPT-2's tied wte as one tensor: its gradient must sum the embedding and lm_head uses.
        fn = lambda *ts: logits_and_loss(cfg, dict(zip(p, ts)), tokens)[1]
        assert torch.autograd.gradcheck(fn, tuple(p.values()), eps=1e-6, atol=1e-6), cfg["model_type"]
        t2 = tokens.clone()  # causal: changing the last input token changes only the last logits
        t2[:, -2] = (t2[:, -2] + 1) % 11
        l1, l2 = logits_and_loss(cfg, p, tokens)[0], logits_and_loss(cfg, p, t2)[0]
        assert torch.allclose(l1[:, :-1], l2[:, :-1]) and not torch.allclose(l1[:, -1], l2[:, -1]), "causality"
        ref = -torch.log_softmax(l1, -1).gather(-1, tokens[:, 1:, None]).mean()
        assert torch.allclose(ref, logits_and_loss(cfg, p, tokens)[1]), "cross-entropy"
        print(f"{cfg['model_type']}: gradcheck (float64), causality, cross-entropy ok")
    # GQA: 2 kv heads equal 4 kv heads holding each one twice (HF repeat_kv: query head j reads kv head j // 2).
    p = rand_params(LLAMA_TINY)
    kv = lambda n: n.endswith(("k_proj.weight", "v_proj.weight"))
    q = {n: t.detach().view(2, 4, 16).repeat_interleave(2, 0).reshape(-1, 16) if kv(n) else t.detach()
         for n, t in p.items()}
    full = dict(LLAMA_TINY, num_key_value_heads=4)
    assert torch.allclose(logits_and_loss(LLAMA_TINY, p, tokens)[0], logits_and_loss(full, q, tokens)[0]), "GQA"
    # RoPE: q.k after rotation depends only on the distance between positions; dims i and i + D/2 pair up.
    cos, sin = rope_cos_sin(8, 8, 10000.0, dt)
    rot = lambda x, i: x * cos[i] + rotate_half(x) * sin[i]
    q, k = torch.randn(2, 8, dtype=dt)
    e = torch.eye(8, dtype=dt)
    assert torch.allclose(rot(q, 3) @ rot(k, 1), rot(q, 7) @ rot(k, 5)), "RoPE relative"
    assert torch.allclose(rot(e[0], 1), cos[1, 0] * e[0] + sin[1, 0] * e[4]), "RoPE pairing"
    print("GQA, RoPE ok")
    # AdamW: decoupled decay on 2-D tensors only and global-norm clipping, against the formulas by hand.
    p = rand_params(GPT2_TINY)
    a = argparse.Namespace(adamw_steps=2, lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, grad_clip=0.5)
    w = {n: t.detach().clone().requires_grad_() for n, t in p.items()}
    out = adamw(GPT2_TINY, p, tokens, a)
    m, v = ({n: torch.zeros_like(t) for n, t in w.items()} for _ in range(2))
    for step in (1, 2):
        g = torch.autograd.grad(logits_and_loss(GPT2_TINY, w, tokens)[1], list(w.values()))
        c = min(1.0, a.grad_clip / (math.sqrt(sum((x ** 2).sum().item() for x in g)) + 1e-6))
        with torch.no_grad():
            for (n, t), gn in zip(w.items(), g):
                m[n] = a.beta1 * m[n] + (1 - a.beta1) * c * gn
                v[n] = a.beta2 * v[n] + (1 - a.beta2) * (c * gn) ** 2
                upd = (m[n] / (1 - a.beta1 ** step)) / ((v[n] / (1 - a.beta2 ** step)).sqrt() + a.eps)
                t -= a.lr * (upd + (a.weight_decay * t if t.dim() == 2 else 0))
    assert all(np.allclose(out[n], t.detach().numpy(), rtol=1e-5, atol=1e-6) for n, t in w.items()), "AdamW"
    print("AdamW ok")
    hf_check(tokens)
    print("self-test passed")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="directory with config.json and model.safetensors")
    ap.add_argument("--tokens", help=".npy integer array [B, T+1]")
    ap.add_argument("--out", help="output .safetensors")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--adamw-steps", type=int, default=0)
    for name, default in (("lr", 1e-3), ("beta1", 0.9), ("beta2", 0.999), ("eps", 1e-8), ("weight-decay", 0.0),
                          ("grad-clip", 0.0)):
        ap.add_argument("--" + name, type=float, default=default)
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if not (a.model and a.tokens and a.out):
        ap.error("--model, --tokens and --out are required (or --self-test)")
    cfg, p = load_model(a.model, getattr(torch, a.dtype))
    tokens = torch.from_numpy(np.load(a.tokens).astype(np.int64))
    if tokens.dim() != 2 or tokens.shape[1] < 2:
        raise SystemExit(f"tokens must be [B, T+1], got {list(tokens.shape)}")
    if tokens.min() < 0 or tokens.max() >= cfg["vocab_size"]:
        raise SystemExit(f"token ids must be in [0, {cfg['vocab_size']})")
    write_safetensors(a.out, adamw(cfg, p, tokens, a) if a.adamw_steps > 0 else forward_backward(cfg, p, tokens))

if __name__ == "__main__":
    sys.exit(main())
