"""PyTorch's CLIP throughput on a ViT-B/32-shaped random checkpoint, to compare with `tmf bench clip`.

Writes a random-init transformers CLIPModel with ViT-B/32's shapes (vision 768 wide, 12 layers,
patch 32, 224 px; text 512 wide, 12 layers, 77 positions; projection 512) to OUT (config.json +
model.safetensors, ~600 MB: put it under /tmp, never in the repository), unless OUT already
holds one, then measures images/s and texts/s exactly as `tmf bench clip` does: batches of
`--batch` standard-normal images and of full-length (77-token) id sequences ending in eos,
no padding, median of `--repeats` after one warm-up, in `torch.inference_mode()`.

Run:  /work/venv/bin/python Scripts/bench_clip_torch.py /tmp/clip-b32 --threads 2
Then: .build/release/tmf bench clip --clip /tmp/clip-b32 --threads 2
"""
import argparse
import os
import statistics
import time

import torch
from transformers import CLIPConfig, CLIPModel


def median_seconds(repeats, fn):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="checkpoint folder (created if missing)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if not os.path.exists(os.path.join(args.out, "model.safetensors")):
        torch.manual_seed(0)
        config = CLIPConfig()  # transformers' defaults are ViT-B/32's shapes
        assert config.vision_config.hidden_size == 768 and config.vision_config.patch_size == 32
        assert config.text_config.hidden_size == 512 and config.projection_dim == 512
        CLIPModel(config).save_pretrained(args.out, safe_serialization=True)
        print(f"wrote {args.out}")
    model = CLIPModel.from_pretrained(args.out, attn_implementation=args.attn).eval()
    vc, tc = model.config.vision_config, model.config.text_config

    torch.manual_seed(1)
    pixels = torch.randn(args.batch, vc.num_channels, vc.image_size, vc.image_size)
    t = tc.max_position_embeddings
    ids = torch.randint(0, tc.vocab_size - 2, (args.batch, t))
    ids[:, -1] = tc.eos_token_id
    with torch.inference_mode():
        image = median_seconds(args.repeats, lambda: model.get_image_features(pixel_values=pixels))
        text = median_seconds(args.repeats, lambda: model.get_text_features(input_ids=ids))
    print(f"torch {torch.__version__} ({args.attn} attention), {args.threads} thread(s), median of {args.repeats}")
    print(f"images (batch {args.batch}): {args.batch / image:.1f} images/s")
    print(f"texts (batch {args.batch}x{t}): {args.batch / text:.1f} texts/s")


if __name__ == "__main__":
    main()
