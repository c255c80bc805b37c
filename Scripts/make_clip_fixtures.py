"""Tiny random-init CLIP checkpoints and golden embeddings, made by transformers.

For each configuration below: a seeded random-init `transformers.CLIPModel` saved with
`save_pretrained` (config.json + model.safetensors, float32), and golden outputs of
`get_image_features` / `get_text_features` (projected, not normalised) for seeded random
pixel_values and a token-id batch with padding and end-of-text tokens:

  Fixtures/clip/<name>/config.json, model.safetensors   the checkpoint
  Fixtures/clip/<name>/golden.safetensors               pixel_values [N,3,H,W], image_embeds [N,P],
                                                        text_embeds [B,P] (float32)
  Fixtures/clip/<name>/golden.json                      input_ids, attention_mask (lists of ints)

Run: /work/venv/bin/python Scripts/make_clip_fixtures.py  (CPU, no network; deterministic).
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPModel

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "clip")

CONFIGS = {
    # Legacy pooling (eos_token_id == 2: argmax of the ids), quick_gelu, square 32-pixel images.
    "tiny-quickgelu": dict(
        seed=1,
        text=dict(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=16, hidden_act="quick_gelu",
                  bos_token_id=0, eos_token_id=2, pad_token_id=1),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8, hidden_act="quick_gelu"),
        projection_dim=24,
        # Right padding with pad id 1; the highest id marks the pooled position (legacy rule).
        input_ids=[[0, 17, 42, 99, 1, 1, 1, 1],
                   [0, 5, 6, 7, 8, 9, 98, 3],
                   [0, 64, 1, 1, 1, 1, 1, 1]],
        attention_mask=[[1, 1, 1, 1, 0, 0, 0, 0],
                        [1, 1, 1, 1, 1, 1, 1, 1],
                        [1, 1, 0, 0, 0, 0, 0, 0]],
    ),
    # eos_token_id != 2 (first eos position), exact-erf gelu, 48-pixel images with 16-pixel
    # patches, head_dim 16 (vision) and 10 (text), layer_norm_eps 1e-6.
    "tiny-gelu": dict(
        seed=2,
        text=dict(vocab_size=120, hidden_size=40, intermediate_size=72, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=20, hidden_act="gelu",
                  bos_token_id=118, eos_token_id=119, pad_token_id=119, layer_norm_eps=1e-6),
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=3,
                    image_size=48, patch_size=16, hidden_act="gelu", layer_norm_eps=1e-6),
        projection_dim=16,
        # Padded with the eos id itself (as the OpenAI tokenizer does): pooling must take the
        # first eos. Row 2 has left padding with id 0 (keys 0 and 1 hidden from every query; the
        # padded queries themselves see no key, which PyTorch's attention implementations fill
        # differently, so they are never pooled); row 3 has no eos at all (transformers then
        # pools position 0).
        input_ids=[[118, 10, 20, 30, 119, 119, 119, 119, 119, 119],
                   [118, 1, 2, 3, 4, 5, 6, 7, 8, 119],
                   [0, 0, 118, 50, 60, 119, 119, 119, 119, 119],
                   [118, 11, 12, 13, 14, 15, 16, 17, 18, 19]],
        attention_mask=[[1, 1, 1, 1, 1, 0, 0, 0, 0, 0],
                        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
                        [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
                        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
    ),
}


def make(name, spec):
    torch.manual_seed(spec["seed"])
    config = CLIPConfig(text_config=spec["text"], vision_config=spec["vision"],
                        projection_dim=spec["projection_dim"])
    config._attn_implementation = "eager"
    model = CLIPModel(config).eval()
    # Random-init LayerNorm weights are 1 and biases 0; perturb them (and logit_scale) so that a
    # mixed-up norm or a dropped bias shows in the outputs.
    with torch.no_grad():
        for key, p in model.named_parameters():
            if "norm" in key or key.endswith(".bias") or key == "logit_scale":
                p.add_(0.1 * torch.randn_like(p))
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)

    v = spec["vision"]
    pixel_values = torch.randn(3, 3, v["image_size"], v["image_size"])
    input_ids = torch.tensor(spec["input_ids"])
    attention_mask = torch.tensor(spec["attention_mask"])
    with torch.no_grad():
        image = model.get_image_features(pixel_values=pixel_values)
        text = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    image = image.pooler_output if hasattr(image, "pooler_output") else image
    text = text.pooler_output if hasattr(text, "pooler_output") else text
    assert torch.isfinite(image).all() and torch.isfinite(text).all()
    save_file({"pixel_values": pixel_values.contiguous(), "image_embeds": image.contiguous(),
               "text_embeds": text.contiguous()}, os.path.join(out, "golden.safetensors"))
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump({"input_ids": spec["input_ids"], "attention_mask": spec["attention_mask"]}, f, indent=1)
        f.write("\n")
    print(name, "image", tuple(image.shape), "text", tuple(text.shape))


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, spec in CONFIGS.items():
        make(name, spec)
