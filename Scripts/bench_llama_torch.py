#!/usr/bin/env python3
"""PyTorch (fp32) reference figures for `tmf bench llama`, on the same random checkpoint.

    /work/venv/bin/python Scripts/bench_llama_torch.py /tmp/llama-110m [--threads 2] [--repeats 5]

Writes the 110M random checkpoint (hidden 768, 12 layers, 12 heads, FFN 2048, vocab 32000,
tied embeddings; seed 0; F32 model.safetensors + config.json) to the folder if it has no
config.json yet (never commit it), then measures with torch.set_num_threads(N):
  prefill   one sequence of 256 tokens, logits for the last position only (what generation needs)
  decode    64 single-token steps with a DynamicCache after a 16-token prompt
  lora      one training step with peft LoRA r=8 alpha=16 on q_proj,v_proj: forward over
            batch 4 x 128 tokens, cross-entropy on every position, backward, Adam step
Each figure is the median of --repeats timed runs after one warm-up. The shapes match
`tmf bench llama` (Sources/TMFCLI/BenchLlama.swift).
"""
import argparse
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM, DynamicCache

CONFIG = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
              num_key_value_heads=12, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
              rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
PREFILL, PROMPT, DECODE, BATCH, SEQ = 256, 16, 64, 4, 128


def median_time(repeats, fn):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if not os.path.exists(os.path.join(a.folder, "config.json")):
        torch.manual_seed(0)
        m = LlamaForCausalLM(LlamaConfig(**CONFIG)).float()
        m.save_pretrained(a.folder)
        print(f"wrote random 110M checkpoint to {a.folder}")
        del m
    model = LlamaForCausalLM.from_pretrained(a.folder, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, CONFIG["vocab_size"], (1, PREFILL), generator=g)

    with torch.no_grad():
        t = median_time(a.repeats, lambda: model(input_ids=ids, logits_to_keep=1, use_cache=False))
    print(f"prefill {PREFILL} tokens: {PREFILL / t:.1f} tok/s ({t * 1e3:.1f} ms)")

    prompt = ids[:, :PROMPT]

    def decode():
        cache = DynamicCache(config=model.config)
        out = model(input_ids=prompt, past_key_values=cache, use_cache=True, logits_to_keep=1)
        tok = out.logits[:, -1:].argmax(-1)
        t0 = time.perf_counter()
        for _ in range(DECODE):
            out = model(input_ids=tok, past_key_values=cache, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
        return time.perf_counter() - t0

    with torch.no_grad():
        decode()
        dt = statistics.median(decode() for _ in range(a.repeats))
    print(f"decode: {DECODE / dt:.1f} tok/s ({dt / DECODE * 1e3:.1f} ms/token)")

    from peft import LoraConfig, get_peft_model
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                  lora_dropout=0.0, task_type="CAUSAL_LM"))
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-4)
    batch = torch.randint(3, CONFIG["vocab_size"], (BATCH, SEQ), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = peft_model(input_ids=batch).logits
        loss = F.cross_entropy(logits.reshape(-1, CONFIG["vocab_size"]), batch.reshape(-1))
        loss.backward()
        opt.step()

    t = median_time(a.repeats, step)
    print(f"lora step (q,v r=8; batch {BATCH}x{SEQ}): {BATCH * SEQ / t:.1f} tok/s ({t * 1e3:.0f} ms)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
