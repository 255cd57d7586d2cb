#!/usr/bin/python3
"""Oracle for tsumugi's LoRA adapters: load a tsumugi checkpoint directory with Hugging Face
transformers, put the adapter directory on it with PyPI peft (PeftModel.from_pretrained), and write
the logits for a batch of tokens, in float32 with the model in eval mode (no dropout).

  peft_logits.py --model DIR --adapter DIR --tokens T.i32 --batch B --out LOGITS.f32 [--case ...]

Each --case starts another "MODEL ADAPTER TOKENS BATCH OUT" set after the first (one interpreter
start for several checks: importing transformers and peft is the slow part). T.i32 holds B*T little-endian int32 token ids; LOGITS.f32 gets B*T*V float32 values. Also checks
that peft found every adapter tensor (no missing lora_A/lora_B keys) and that the adapter changes
the logits, so a silently ignored adapter cannot pass.
"""
import argparse
import sys

import numpy as np
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM


def run(model_dir, adapter_dir, tokens, batch, out):
    ids = torch.from_numpy(np.fromfile(tokens, dtype="<i4").astype(np.int64)).view(batch, -1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32)
    base.eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits.clone()
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    lora_params = [n for n, _ in model.named_parameters() if "lora_" in n]
    if not lora_params:
        sys.exit("peft attached no LoRA parameters")
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    if torch.allclose(logits, base_logits):
        sys.exit("the adapter did not change the logits")
    logits.to(torch.float32).numpy().astype("<f4").tofile(out)
    print(f"{model_dir}: {len(lora_params)} LoRA tensors; max |logit change| "
          f"{float((logits - base_logits).abs().max()):.4f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--case", nargs=5, action="append", default=[],
                    metavar=("MODEL", "ADAPTER", "TOKENS", "BATCH", "OUT"))
    a = ap.parse_args()
    torch.manual_seed(0)
    run(a.model, a.adapter, a.tokens, a.batch, a.out)
    for m, ad, t, b, o in a.case:
        run(m, ad, t, int(b), o)


if __name__ == "__main__":
    main()
