#!/usr/bin/env python3
"""Golden fixtures for tmf's 16-bit frozen weights (issue 16), made by transformers.

    /work/venv/bin/python Scripts/make_half_llama_fixtures.py     # writes Fixtures/llama/half/

1. `tiny-untied-bf16/`, `tiny-untied-f16/`: Fixtures/llama/tiny-untied (F32) with every
   tensor stored as BF16 / F16 (what `save_pretrained` writes for a model in that dtype).
   `half-expected.safetensors` holds, for the same `input_ids` / padded cases as
   `tiny-untied-expected.safetensors` (read from cases.json):
   - `bf16.logits_plain`, `bf16.logits_padded`: transformers in float32 on the bf16-valued
     weights (what tmf's widening kernels compute: weights widened exactly, fp32 sums);
   - `bf16dot.logits_plain`, `bf16dot.logits_padded`: the same with the input of every
     nn.Linear (including lm_head) rounded to bf16 first, as AVX512-BF16's vdpbf16ps does
     (products of two bf16 exact, sums fp32);
   - `f16.logits_plain`, `f16.logits_padded`: float32 on the f16-valued weights;
   - `bf16.grad.inputs_embeds`: the gradient of the tiny-untied LoRA-free loss of cases.json
     (`labels`) with respect to `inputs_embeds`, float32 on the bf16-valued weights.
2. `tiny-llama-greedy.json`: the bundled Fixtures/models/tiny-llama (trained by `tmf pretrain`,
   stored BF16) decoding greedily for 40 tokens from a prompt of the bundled shop, in
   transformers with `torch_dtype=torch.bfloat16` (every activation bf16) and in float32 on
   the same weights.
"""
import json
import os
import shutil

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
LLAMA = os.path.join(ROOT, "Fixtures", "llama")
OUT = os.path.join(LLAMA, "half")


def positions(mask):
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def store(model, dtype, folder):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    half = LlamaForCausalLM.from_pretrained(os.path.join(LLAMA, "tiny-untied"), torch_dtype=torch.float32)
    half.load_state_dict(model.state_dict())
    half = half.to(dtype)
    half.save_pretrained(folder, safe_serialization=True)
    gen = os.path.join(folder, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)


def valued(dtype):
    """tiny-untied in float32 with every weight rounded to `dtype` and widened back."""
    m = LlamaForCausalLM.from_pretrained(os.path.join(LLAMA, "tiny-untied"), torch_dtype=torch.float32,
                                         attn_implementation="eager")
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(dtype).float())
    return m.eval()


def round_linear_inputs(model):
    def hook(_module, args):
        return (args[0].to(torch.bfloat16).float(),) + tuple(args[1:])
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            mod.register_forward_pre_hook(hook)


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = json.load(open(os.path.join(LLAMA, "cases.json")))["tiny-untied"]
    ids = torch.tensor(cases["input_ids"])
    padded = torch.tensor(cases["padded_ids"])
    mask = torch.tensor(cases["attention_mask"])
    pos = positions(mask)
    labels = torch.tensor(cases["labels"])
    expected = {}
    base = LlamaForCausalLM.from_pretrained(os.path.join(LLAMA, "tiny-untied"), torch_dtype=torch.float32)
    for name, dtype in [("bf16", torch.bfloat16), ("f16", torch.float16)]:
        store(base, dtype, os.path.join(OUT, "tiny-untied-" + name))
        m = valued(dtype)
        with torch.no_grad():
            expected[name + ".logits_plain"] = m(input_ids=ids).logits
            expected[name + ".logits_padded"] = m(input_ids=padded, attention_mask=mask, position_ids=pos).logits
        if name == "bf16":
            embeds = m.model.embed_tokens(padded).detach().requires_grad_(True)
            logits = m(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
            loss.backward()
            expected["bf16.loss"] = loss.detach().reshape(1)
            expected["bf16.grad.inputs_embeds"] = embeds.grad
            round_linear_inputs(m)
            with torch.no_grad():
                expected["bf16dot.logits_plain"] = m(input_ids=ids).logits
                expected["bf16dot.logits_padded"] = m(input_ids=padded, attention_mask=mask, position_ids=pos).logits
    save_file({k: v.contiguous().float() for k, v in expected.items()}, os.path.join(OUT, "half-expected.safetensors"))

    # Greedy decoding of the bundled model, bf16 and fp32.
    tiny = os.path.join(ROOT, "Fixtures", "models", "tiny-llama")
    from sentencepiece import SentencePieceProcessor
    sp = SentencePieceProcessor(model_file=os.path.join(tiny, "tokenizer.model"))
    prompt = "The user views Kestrel Sleeping Bag Zusane, then views"
    prompt_ids = [sp.bos_id()] + sp.encode(prompt)
    out = {"prompt": prompt, "prompt_ids": prompt_ids, "new_tokens": 40}
    for name, dtype in [("bf16", torch.bfloat16), ("f32", torch.float32)]:
        m = LlamaForCausalLM.from_pretrained(tiny, torch_dtype=dtype, attn_implementation="eager").eval()
        with torch.no_grad():
            g = m.generate(torch.tensor([prompt_ids]), max_new_tokens=40, do_sample=False, eos_token_id=None,
                           pad_token_id=0)
        out[name + "_ids"] = g[0, len(prompt_ids):].tolist()
        out[name + "_text"] = sp.decode(out[name + "_ids"])
    json.dump(out, open(os.path.join(OUT, "tiny-llama-greedy.json"), "w"), indent=1)
    print(json.dumps({k: v for k, v in out.items() if k.endswith("text")}, indent=1))
    print("same greedy ids bf16 vs f32:", out["bf16_ids"] == out["f32_ids"])


if __name__ == "__main__":
    main()
