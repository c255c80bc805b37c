"""The bundled tiny CLIP checkpoint: Fixtures/models/tiny-clip/.

A seeded random-init `transformers.CLIPModel` (no training, no downloads) whose text tower uses
the CLIP-format BPE vocabulary of Fixtures/tokenizer/clip (vocab.json + merges.txt, 914 tokens,
<|startoftext|> 912, <|endoftext|> 913), sized for the bundled shop's 32x32 PNGs:

  vision: image 32, patch 8, hidden 64, 2 layers, 2 heads, intermediate 128, quick_gelu
  text:   vocab 914, hidden 64, 2 layers, 2 heads, intermediate 128, 77 positions, quick_gelu
  projection_dim 32

Writes config.json + model.safetensors (float32, `save_pretrained`), vocab.json + merges.txt
(copied), preprocessor_config.json (size/crop 32, CLIP's mean/std, bicubic), check.json (inputs and
transformers' `get_image_features` / `get_text_features` on three shop images and three texts, read
by Tests/TMFCLITests) and check.txt (a log of the same, and how well these random features separate
the shop's categories).

Run from the repository root:  /work/venv/bin/python Scripts/make_tiny_clip.py [path/to/tmf]
With a tmf binary given, check.txt also holds `tmf embed --json` on the same inputs and the
largest absolute difference.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "Fixtures", "models", "tiny-clip")
VOCAB = os.path.join(ROOT, "Fixtures", "tokenizer", "clip")
SHOP = os.path.join(ROOT, "Fixtures", "shop")
SEED = 0

CHECK_IMAGES = ["images/I000001.png", "images/I000002.png", "images/I000003.png"]
CHECK_TEXTS = ["Northpeak Retro Bike Helmet Saraka", "a red running shoe", ""]


def build():
    vocab = json.load(open(os.path.join(VOCAB, "vocab.json")))
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    torch.manual_seed(SEED)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=bos, eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8, num_channels=3, hidden_act="quick_gelu"),
        projection_dim=32,
    )
    model = CLIPModel(config).eval()
    os.makedirs(OUT, exist_ok=True)
    model.save_pretrained(OUT, safe_serialization=True)
    for name in ["vocab.json", "merges.txt"]:
        shutil.copyfile(os.path.join(VOCAB, name), os.path.join(OUT, name))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                   do_resize=True, do_center_crop=True, do_rescale=True, do_normalize=True,
                                   resample=3, do_convert_rgb=True)
    processor.save_pretrained(OUT)
    return model


def embed_reference(model, images, texts):
    processor = CLIPImageProcessor.from_pretrained(OUT)
    tokenizer = CLIPTokenizer.from_pretrained(OUT)
    with torch.no_grad():
        pixels = processor(images=[Image.open(os.path.join(SHOP, p)) for p in images], return_tensors="pt")["pixel_values"]
        image = model.get_image_features(pixel_values=pixels)
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        text = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    # transformers 5 may return an output object; take the tensor.
    image = image if torch.is_tensor(image) else image.pooler_output
    text = text if torch.is_tensor(text) else text.pooler_output
    return image.numpy(), text.numpy()


def separation(model, log):
    """Leave-one-out 1-nearest-neighbour (cosine) accuracy of each item's category and fill colour
    from its random-CLIP image / text embedding, beside raw pixels and chance."""
    items = [json.loads(line) for line in open(os.path.join(SHOP, "items.jsonl"))]
    items = [it for it in items if it.get("image")]
    labels = np.array([it["categories"][-1] for it in items])
    texts = [" ".join([it["title"], it.get("brand", "")] + it.get("categories", []) + [it.get("description", "")])
             for it in items]
    image, text = [], []
    for start in range(0, len(items), 64):
        chunk = items[start:start + 64]
        i, t = embed_reference(model, [it["image"] for it in chunk], texts[start:start + 64])
        image.append(i)
        text.append(t)
    image, text = np.concatenate(image), np.concatenate(text)
    pixels = np.stack([np.asarray(Image.open(os.path.join(SHOP, it["image"])).convert("RGB"), dtype=np.float32).ravel()
                       for it in items])

    def loo_1nn(x, y):
        x = x - x.mean(0)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        s = x @ x.T
        np.fill_diagonal(s, -np.inf)
        return float((y[s.argmax(1)] == y).mean())

    def chance(labels):
        counts = [int((labels == c).sum()) for c in set(labels)]
        return sum((n / len(labels)) * ((n - 1) / (len(labels) - 1)) for n in counts)

    # The fill colour of each picture: its pixels go to the nearest of the synthetic shop's 10
    # palette colours (Sources/TMFData/Synth.swift), the background grey or the outline grey; the
    # palette colour with most pixels is the label.
    palette = np.array([(214, 32, 40), (240, 120, 180), (245, 140, 20), (238, 206, 38), (40, 160, 64),
                        (20, 150, 150), (32, 84, 204), (132, 52, 172), (28, 28, 28), (250, 250, 250),
                        (236, 236, 236), (60, 60, 60)], dtype=np.float32)
    px = pixels.reshape(len(items), -1, 3)
    nearest = ((px[:, :, None, :] - palette[None, None]) ** 2).sum(-1).argmin(-1)
    colours = np.array([np.bincount(n[n < 10], minlength=10).argmax() for n in nearest])

    for name, y in [("category", labels), ("fill colour", colours)]:
        log(f"{name}: {len(set(y))} classes; leave-one-out 1-NN accuracy by cosine after centring:")
        log(f"  raw pixels (32x32x3):            {loo_1nn(pixels, y):.3f}")
        log(f"  tiny-clip image embeddings (32): {loo_1nn(image, y):.3f}")
        log(f"  tiny-clip text embeddings (32):  {loo_1nn(text, y):.3f}")
        log(f"  chance (same class at random):   {chance(y):.3f}")


def main():
    lines = []

    def log(s=""):
        print(s)
        lines.append(s)

    model = build()
    log(f"tiny-clip: random-init CLIPModel, torch.manual_seed({SEED}), transformers {transformers.__version__}, "
        f"torch {torch.__version__}")
    size = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT) if not f.startswith(("check.", "README")))
    log(f"checkpoint size (config, weights, tokenizer, preprocessor): {size} bytes")
    image, text = embed_reference(model, CHECK_IMAGES, CHECK_TEXTS)
    log("")
    log("transformers get_image_features (projected, not normalised), first 4 values and norm:")
    for p, v in zip(CHECK_IMAGES, image):
        log(f"  {p}: {np.array2string(v[:4], precision=6)} norm {np.linalg.norm(v):.6f}")
    log("transformers get_text_features (padding=max_length 77):")
    for t, v in zip(CHECK_TEXTS, text):
        log(f"  {json.dumps(t)}: {np.array2string(v[:4], precision=6)} norm {np.linalg.norm(v):.6f}")

    with open(os.path.join(OUT, "check.json"), "w") as f:
        json.dump({"images": [os.path.join("Fixtures", "shop", p) for p in CHECK_IMAGES], "texts": CHECK_TEXTS,
                   "image_embeds": image.tolist(), "text_embeds": text.tolist()}, f)
        f.write("\n")

    if len(sys.argv) > 1:
        tmf = sys.argv[1]
        rel = os.path.relpath(OUT, ROOT)

        def run(args):
            out = subprocess.run([tmf, "embed", "--clip", rel, "--json", "--threads", "1"] + args, cwd=ROOT,
                                 check=True, capture_output=True, text=True).stdout
            return np.array(json.loads(out)["embeddings"], dtype=np.float32)

        ours_image = run(["--image"] + [os.path.join("Fixtures", "shop", p) for p in CHECK_IMAGES])
        ours_text = run(["--text"] + CHECK_TEXTS)
        log("")
        log(f"`tmf embed --clip {rel} --json` on the same inputs:")
        log(f"  images: max |tmf - transformers| = {np.abs(ours_image - image).max():.3g}")
        log(f"  texts:  max |tmf - transformers| = {np.abs(ours_text - text).max():.3g}")

    log("")
    separation(model, log)
    with open(os.path.join(OUT, "check.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
