#!/usr/bin/env python3
"""Golden fixtures for TMFLlamaTests / TMFLoRATests, made by transformers + peft.

    /work/venv/bin/python Scripts/make_llama_fixtures.py            # writes Fixtures/llama/
    /work/venv/bin/python Scripts/make_llama_fixtures.py --check-adapter DIR
        # loads an adapter folder written by tmf (DIR holds adapter_config.json,
        # adapter_model.safetensors and tmf_check.safetensors with input_ids, attention_mask,
        # position_ids and the logits tmf computed) on the base model DIR names in
        # tmf_check.json, and compares peft's logits with tmf's.

Everything is random-init from seeded torch generators (no hub). Weights are re-drawn with
std 0.1 (norm weights 1 ± 0.2) instead of the usual 0.02 so that logits differ clearly
between tokens and a wrong layout shows up as a large error. Forward passes run in float32
with attn_implementation="eager". See Fixtures/llama/README.md for the files.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file, load_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Fixtures", "llama")

CONFIGS = {
    # GQA (4 heads, 2 KV heads), untied lm_head, non-default theta/eps; saved sharded.
    "tiny-untied": dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, vocab_size=128,
                        max_position_embeddings=128, rms_norm_eps=1e-5, rope_theta=5000.0,
                        tie_word_embeddings=False),
    # GQA, tied embeddings, explicit head_dim (4 heads x 32 = 128 != hidden 64), 3 layers.
    "tiny-tied": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=32, vocab_size=128,
                      max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=20000.0,
                      tie_word_embeddings=True),
}

LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)


def build(name, seed):
    torch.manual_seed(seed)
    cfg = LlamaConfig(**CONFIGS[name], bos_token_id=1, eos_token_id=2, pad_token_id=0,
                      attn_implementation="eager")
    model = LlamaForCausalLM(cfg).float().eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                p.copy_(1 + 0.2 * (torch.rand(p.shape, generator=g) * 2 - 1))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    return model


def positions_from_mask(mask):
    """HF generate's rule: position = (number of real tokens before) for real tokens."""
    pos = mask.long().cumsum(-1) - 1
    return pos.masked_fill(mask == 0, 1)


def batch_inputs(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    # Left-padded batch: row 0 has 3 pads, row 1 none.
    padded = ids.clone()
    mask = torch.ones_like(ids)
    padded[0, :3] = 0
    mask[0, :3] = 0
    return ids, padded, mask


def make_fixtures():
    os.makedirs(OUT, exist_ok=True)
    cases = {}
    for seed, name in enumerate(CONFIGS):
        model = build(name, 100 + seed)
        folder = os.path.join(OUT, name)
        if name == "tiny-untied":
            model.save_pretrained(folder, max_shard_size="200KB")
        else:
            model.save_pretrained(folder)
        for extra in ("generation_config.json",):
            p = os.path.join(folder, extra)
            if os.path.exists(p):
                os.remove(p)
        vocab = model.config.vocab_size
        ids, padded, mask = batch_inputs(vocab, 7 + seed)
        pos = positions_from_mask(mask)
        expected = {}
        with torch.no_grad():
            expected["logits_plain"] = model(input_ids=ids).logits
            expected["logits_padded"] = model(input_ids=padded, attention_mask=mask, position_ids=pos).logits
        # Greedy continuation of the padded batch (no EOS stop).
        gen = model.generate(input_ids=padded, attention_mask=mask, max_new_tokens=8, do_sample=False,
                             eos_token_id=None, pad_token_id=0)
        greedy = gen[:, padded.shape[1]:].tolist()
        case = dict(input_ids=ids.tolist(), padded_ids=padded.tolist(), attention_mask=mask.tolist(),
                    position_ids=pos.tolist(), greedy=greedy)

        if name == "tiny-untied":
            from peft import LoraConfig, get_peft_model
            torch.manual_seed(1234)
            peft_model = get_peft_model(model, LoraConfig(**LORA, task_type="CAUSAL_LM"))
            g = torch.Generator().manual_seed(4321)
            with torch.no_grad():
                for pname, p in peft_model.named_parameters():
                    if "lora_B" in pname:
                        p.copy_(0.1 * torch.randn(p.shape, generator=g))
            peft_model.eval()
            with torch.no_grad():
                expected["lora_logits_padded"] = peft_model(input_ids=padded, attention_mask=mask,
                                                            position_ids=pos).logits
            # Gradients of a fixed loss w.r.t. LoRA weights and the input embeddings.
            labels = torch.randint(3, vocab, padded.shape, generator=g)
            labels[mask == 0] = -100
            labels[1, :2] = -100
            embeds = model.get_input_embeddings()(padded).detach().clone().requires_grad_(True)
            logits = peft_model(inputs_embeds=embeds, attention_mask=mask, position_ids=pos).logits
            loss = F.cross_entropy(logits.reshape(-1, vocab), labels.reshape(-1), ignore_index=-100)
            loss.backward()
            expected["loss"] = loss.detach().reshape(1)
            expected["grad.inputs_embeds"] = embeds.grad
            for pname, p in peft_model.named_parameters():
                if "lora_" in pname:
                    # peft's saved key: drop the adapter name ".default".
                    expected["grad." + pname.replace(".default", "")] = p.grad
            case["labels"] = labels.tolist()
            case["lora"] = LORA
            adapter_dir = os.path.join(OUT, name + "-adapter")
            peft_model.save_pretrained(adapter_dir)
            os.remove(os.path.join(adapter_dir, "README.md"))  # peft's model-card template
        save_file({k: v.contiguous().float() for k, v in expected.items()},
                  os.path.join(folder + "-expected.safetensors"))
        cases[name] = case
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    print("wrote", OUT)


def check_adapter(folder):
    """Loads a tmf-written adapter in peft and compares logits with tmf's."""
    from peft import PeftModel
    meta = json.load(open(os.path.join(folder, "tmf_check.json")))
    base = LlamaForCausalLM.from_pretrained(meta["base"], attn_implementation="eager").float().eval()
    model = PeftModel.from_pretrained(base, folder).eval()
    data = load_file(os.path.join(folder, "tmf_check.safetensors"))
    ids = data["input_ids"].long()
    mask = data["attention_mask"].long()
    pos = data["position_ids"].long()
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
    ours = data["logits"]
    keep = mask.bool()
    diff = (logits - ours).abs()[keep]
    rel = diff.max().item() / logits[keep].abs().max().item()
    loaded = [n for n, _ in model.named_parameters() if "lora_" in n]
    print(f"peft loaded {len(loaded)} LoRA tensors from {folder}")
    print(f"adapter_config: r={model.peft_config['default'].r} alpha={model.peft_config['default'].lora_alpha} "
          f"targets={sorted(model.peft_config['default'].target_modules)}")
    nonzero_b = sum(int(p.abs().sum() > 0) for n, p in model.named_parameters() if "lora_B" in n)
    print(f"non-zero lora_B tensors: {nonzero_b}")
    print(f"max |peft - tmf| logits = {diff.max().item():.3e} (relative to max |logit|: {rel:.3e})")
    ok = rel < 1e-4 and nonzero_b > 0
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-adapter")
    a = ap.parse_args()
    if a.check_adapter:
        sys.exit(check_adapter(a.check_adapter))
    make_fixtures()
