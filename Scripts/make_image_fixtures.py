#!/usr/bin/env python3
"""Writes Fixtures/images/: PNG test images and what Pillow and transformers make of them.

Run from the repository root with a Python that has Pillow, numpy and transformers:

    /work/venv/bin/python Scripts/make_image_fixtures.py

Deterministic: the same versions give the same bytes. Fixtures/images/README.md describes
every file. PNGs are written by a small encoder below (Pillow cannot write 16-bit colour,
low bit depths with tRNS, or interlaced PNGs); expected outputs are written by Pillow.
"""
import io
import json
import os
import struct
import sys
import warnings
import zlib

import numpy as np
import PIL
import transformers
from PIL import Image
from transformers.image_transforms import convert_to_rgb
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "images")

# ---------------------------------------------------------------------------------------------
# A minimal PNG encoder: any colour type / bit depth, Adam7, per-row adaptive filters.

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pack_row(samples, depth):
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    buf = bytearray((len(samples) + per - 1) // per)
    for i, v in enumerate(samples):
        buf[i // per] |= int(v) << (8 - depth * (i % per + 1))
    return bytes(buf)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """Chooses per row the filter with the smallest sum of absolute (signed) residuals."""
    out = []
    prev = bytes(len(rows[0])) if rows else b""
    for row in rows:
        candidates = []
        for ftype in range(5):
            res = bytearray(len(row))
            for i, x in enumerate(row):
                a = row[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ftype]
                res[i] = (x - pred) & 0xFF
            cost = sum(v if v < 128 else 256 - v for v in res)
            candidates.append((cost, ftype, bytes(res)))
        _, ftype, res = min(candidates)
        out.append(bytes([ftype]) + res)
        prev = row
    return b"".join(out)


def encode_png(a, color, depth, palette=None, trns=None, interlace=False):
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    assert c == CHANNELS[color]
    bpp = max(1, c * depth // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 1 if interlace else 0)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += filter_rows([pack_row(r.reshape(-1), depth) for r in sub], bpp)
    else:
        raw = filter_rows([pack_row(r.reshape(-1), depth) for r in a], bpp)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if palette is not None:
        data += chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        data += chunk(b"tRNS", trns)
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return data


# ---------------------------------------------------------------------------------------------
# Test images: simple patterns so files stay small.


def pattern(h, w, seed, levels=256):
    """Gradients, a disc and a checkerboard: structure for the resampler to work on."""
    y, x = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(seed)
    cx, cy, r = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, 0.3 * min(h, w) + 0.5
    disc = ((x - cx) ** 2 + (y - cy) ** 2) < r * r
    checker = ((x // 4 + y // 4) % 2).astype(np.int64)
    ch0 = (x * (levels - 1)) // max(w - 1, 1)
    ch1 = (y * (levels - 1)) // max(h - 1, 1)
    ch2 = np.where(disc, levels - 1, checker * (levels // 3))
    return np.stack([ch0, ch1, ch2], axis=-1).astype(np.int64)


def images():
    """(name, png bytes, description)"""
    out = []

    def add(name, data, desc):
        out.append((name, data, desc))

    add("rgb8_300x200", encode_png(pattern(200, 300, 1), 2, 8), "8-bit RGB, 300x200, gradients + disc + checker")
    add("rgb8_portrait_61x97", encode_png(pattern(97, 61, 2), 2, 8), "8-bit RGB, 61x97 (portrait, odd sizes)")
    noise = np.random.default_rng(12).integers(0, 256, size=(30, 40, 3))
    add("rgb8_noise_40x30", encode_png(noise, 2, 8), "8-bit RGB uniform noise (stresses rounding and clipping)")
    add("rgb8_1x1", encode_png(np.array([[[200, 100, 50]]]), 2, 8), "8-bit RGB, 1x1")
    add("rgb8_3x7", encode_png(pattern(7, 3, 3), 2, 8), "8-bit RGB, 3 wide x 7 high")
    add("gray8_40x30", encode_png(pattern(30, 40, 4)[:, :, 0] ^ pattern(30, 40, 4)[:, :, 2], 0, 8), "8-bit gray")
    p = pattern(30, 40, 5)
    ga = np.stack([p[:, :, 0], p[:, :, 1]], -1)
    add("gray_alpha8_40x30", encode_png(ga, 4, 8), "8-bit gray+alpha, alpha = vertical ramp 0..255")
    rgba = np.concatenate([pattern(30, 40, 6), ((np.arange(40)[None, :] * 7 + np.arange(30)[:, None] * 13) % 256)[:, :, None]], -1)
    add("rgba8_40x30", encode_png(rgba, 6, 8), "8-bit RGBA, alpha varies over 0..255")
    rng = np.random.default_rng(7)
    pal200 = rng.integers(0, 256, size=(200, 3))
    idx = (np.arange(30)[:, None] * 3 + np.arange(40)[None, :] * 5) % 200
    add("palette8_40x30", encode_png(idx, 3, 8, palette=pal200), "8-bit palette, 200 entries")
    pal16 = rng.integers(0, 256, size=(16, 3))
    idx4 = (np.arange(17)[:, None] + np.arange(33)[None, :] * 3) % 16
    trns = bytes([0, 64, 128, 200, 255, 10])
    add("palette4_trns_33x17", encode_png(idx4, 3, 4, palette=pal16, trns=trns),
        "4-bit palette, tRNS alpha for the first 6 of 16 entries")
    add("palette8_trns_single_20x10",
        encode_png((np.arange(10)[:, None] + np.arange(20)[None, :]) % 4, 3, 8,
                   palette=pal16[:4], trns=bytes([255, 255, 0])),
        "8-bit palette with one fully transparent entry (PIL: transparency = 2)")
    idx_oob = (np.arange(9)[:, None] + np.arange(11)[None, :]) % 8
    add("palette2_oob_11x9", encode_png(idx_oob % 4, 3, 2, palette=pal16[:3]),
        "2-bit palette with 3 entries; index 3 is past the palette (PIL gives black)")
    add("palette1_13x5", encode_png((np.arange(5)[:, None] + np.arange(13)[None, :]) % 2, 3, 1, palette=[[255, 0, 0], [0, 0, 255]]),
        "1-bit palette, odd width")
    p16 = pattern(23, 37, 8, levels=65536)
    p16[:, :, 2] = (np.arange(37)[None, :] * 1777 + np.arange(23)[:, None] * 311) % 65536
    add("rgb16_37x23", encode_png(p16, 2, 16), "16-bit RGB (PIL keeps the high byte)")
    a16 = (np.arange(37)[None, :] * 1800 + np.arange(23)[:, None] * 97) % 65536
    add("rgba16_37x23", encode_png(np.concatenate([p16, a16[:, :, None]], -1), 6, 16), "16-bit RGBA")
    g16 = np.concatenate([np.arange(0, 300).reshape(15, 20), (np.arange(300).reshape(15, 20) * 219) % 65536], 0)
    add("gray16_20x30", encode_png(g16, 0, 16), "16-bit gray: top half 0..299 (clamped to 255 by PIL), bottom half spread over 0..65535")
    ga16 = np.stack([g16, (g16 * 7 + 3) % 65536], -1)
    add("gray_alpha16_20x30", encode_png(ga16, 4, 16), "16-bit gray+alpha (PIL keeps high bytes)")
    for d in (1, 2, 4):
        g = (np.arange(9)[:, None] + np.arange(13)[None, :]) % (1 << d)
        add(f"gray{d}_13x9", encode_png(g, 0, d), f"{d}-bit gray, odd width")
    add("gray8_trns_16x8", encode_png((np.arange(8)[:, None] * 16 + np.arange(16)[None, :]) % 256, 0, 8, trns=struct.pack(">H", 21)),
        "8-bit gray, tRNS gray 21")
    add("gray2_trns_13x9", encode_png((np.arange(9)[:, None] + np.arange(13)[None, :]) % 4, 0, 2, trns=struct.pack(">H", 0)),
        "2-bit gray, tRNS gray 0 (PIL matches the unscaled value against 8-bit gray)")
    add("gray1_trns_13x9", encode_png((np.arange(9)[:, None] + np.arange(13)[None, :]) % 2, 0, 1, trns=struct.pack(">H", 1)),
        "1-bit gray, tRNS gray 1")
    g16t = np.array([[0, 7, 263, 2000, 7, 65535]] * 3)
    add("gray16_trns_6x3", encode_png(g16t, 0, 16, trns=struct.pack(">H", 7)), "16-bit gray, tRNS gray 7")
    rt = pattern(8, 16, 9)
    rt[0, :4] = [10, 20, 30]
    add("rgb8_trns_16x8", encode_png(rt, 2, 8, trns=struct.pack(">HHH", 10, 20, 30)), "8-bit RGB, tRNS (10, 20, 30)")
    rt16 = np.array([[[256, 512, 768], [1, 2, 3], [0x0A00, 0x1400, 0x1E00], [0x0A0A, 0x1414, 0x1E1E]]] * 2)
    add("rgb16_trns_4x2", encode_png(rt16, 2, 16, trns=struct.pack(">HHH", 0x0A0A, 0x1414, 0x1E1E)),
        "16-bit RGB, tRNS (0x0A0A, 0x1414, 0x1E1E): PIL compares its low bytes with the 8-bit pixels")
    add("rgb8_interlaced_45x31", encode_png(pattern(31, 45, 10), 2, 8, interlace=True), "8-bit RGB, Adam7 interlaced")
    add("rgba16_interlaced_19x11", encode_png(np.concatenate([p16[:11, :19], a16[:11, :19, None]], -1), 6, 16, interlace=True),
        "16-bit RGBA, Adam7 interlaced")
    add("gray2_interlaced_13x9", encode_png((np.arange(9)[:, None] * 2 + np.arange(13)[None, :]) % 4, 0, 2, interlace=True),
        "2-bit gray, Adam7 interlaced")
    add("palette4_interlaced_33x17", encode_png(idx4, 3, 4, palette=pal16, trns=trns, interlace=True),
        "4-bit palette with tRNS, Adam7 interlaced")
    add("rgb8_interlaced_3x7", encode_png(pattern(7, 3, 11), 2, 8, interlace=True), "8-bit RGB 3x7, Adam7 (some passes empty)")
    add("rgb8_interlaced_1x1", encode_png(np.array([[[1, 2, 3]]]), 2, 8, interlace=True), "8-bit RGB 1x1, Adam7")
    # Every (value, alpha) pair once: x = value, y = alpha.
    v = np.broadcast_to(np.arange(256)[None, :], (256, 256))
    a = np.broadcast_to(np.arange(256)[:, None], (256, 256))
    add("rgba8_all_alpha_256x256", encode_png(np.stack([v, 255 - v, (v * 7) % 256, a], -1), 6, 8),
        "8-bit RGBA: every value at every alpha (checks compositing on white)")
    return out


# Resize checks: (source image, width, height, Pillow filter code)
RESIZES = [
    ("rgb8_300x200", 48, 32, 3), ("rgb8_300x200", 7, 3, 3), ("rgb8_300x200", 301, 17, 3),
    ("rgb8_300x200", 640, 401, 3), ("rgb8_300x200", 300, 57, 3), ("rgb8_300x200", 61, 200, 3),
    ("rgb8_portrait_61x97", 32, 50, 3), ("rgb8_1x1", 5, 9, 3), ("rgb8_3x7", 100, 50, 3),
    ("rgb8_3x7", 2, 2, 3), ("rgba8_40x30", 23, 19, 3),
    ("rgb8_300x200", 48, 32, 1), ("rgb8_300x200", 48, 32, 2), ("rgb8_300x200", 48, 32, 4),
    ("rgb8_300x200", 48, 32, 5), ("rgb8_3x7", 11, 13, 1), ("rgb8_3x7", 11, 13, 2),
    ("rgb8_3x7", 11, 13, 4), ("rgb8_3x7", 11, 13, 5),
    # Pillow 13 runs the vertical pass first iff the height shrinks by more than 2x the
    # width's shrink: both sides of that boundary, and width upscaling.
    ("rgb8_noise_40x30", 30, 9, 3), ("rgb8_noise_40x30", 30, 10, 3), ("rgb8_noise_40x30", 30, 11, 3),
    ("rgb8_noise_40x30", 57, 29, 3), ("rgb8_noise_40x30", 57, 31, 3), ("rgb8_noise_40x30", 13, 7, 1),
    ("rgb8_noise_40x30", 40, 7, 3), ("rgb8_noise_40x30", 9, 30, 3), ("rgb8_noise_40x30", 17, 13, 5),
]

# CLIP preprocessing configurations and the images each is checked on.
CLIP_CONFIGS = {
    "s32_c32": dict(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
    "s40_c24x36": dict(size={"shortest_edge": 40}, crop_size={"height": 24, "width": 36}),
    "s20_c33x27": dict(size={"shortest_edge": 20}, crop_size={"height": 33, "width": 27}),
    "s24_c24_bilinear": dict(size={"shortest_edge": 24}, crop_size={"height": 24, "width": 24}, resample=2),
}
CLIP_CASES = {
    "s32_c32": ["rgb8_300x200", "rgb8_noise_40x30", "rgb8_portrait_61x97", "rgb8_1x1", "rgb8_3x7", "rgba8_40x30",
                "palette4_trns_33x17", "rgb16_37x23", "gray16_20x30", "rgb8_interlaced_45x31"],
    "s40_c24x36": ["rgb8_300x200", "rgb8_portrait_61x97", "gray_alpha8_40x30"],
    "s20_c33x27": ["rgb8_300x200", "rgb8_3x7"],
    "s24_c24_bilinear": ["rgb8_300x200"],
}


def save_rgb_png(arr, path):
    """Expected 8-bit RGB pixels, written losslessly by Pillow."""
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    Image.fromarray(arr, "RGB").save(path, optimize=True)


def main():
    os.makedirs(ROOT, exist_ok=True)
    for sub in ("decode", "expected", "resize", "clip", "errors", "clip_config"):
        os.makedirs(os.path.join(ROOT, sub), exist_ok=True)
    manifest = {"pillow": PIL.__version__, "transformers": transformers.__version__,
                "images": [], "resizes": [], "clip": [], "errors": []}

    for name, data, desc in images():
        path = os.path.join(ROOT, "decode", name + ".png")
        with open(path, "wb") as f:
            f.write(data)
        im = Image.open(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Palette images with Transparency expressed in bytes..."
            rgb = np.array(im.convert("RGB"))
        white = convert_to_rgb(Image.open(path), return_numpy=True)
        save_rgb_png(rgb, os.path.join(ROOT, "expected", name + ".rgb.png"))
        save_rgb_png(white, os.path.join(ROOT, "expected", name + ".white.png"))
        manifest["images"].append({"name": name, "width": im.width, "height": im.height,
                                   "pil_mode": im.mode, "description": desc})

    for src, w, h, flt in RESIZES:
        im = Image.open(os.path.join(ROOT, "decode", src + ".png")).convert("RGB")
        out = np.array(im.resize((w, h), resample=flt))
        name = f"{src}_to_{w}x{h}_f{flt}"
        save_rgb_png(out, os.path.join(ROOT, "resize", name + ".png"))
        manifest["resizes"].append({"name": name, "source": src, "width": w, "height": h, "filter": flt})

    for cfg_name, cfg in CLIP_CONFIGS.items():
        proc = CLIPImageProcessorPil(**cfg)
        for src in CLIP_CASES[cfg_name]:
            pv = proc(images=Image.open(os.path.join(ROOT, "decode", src + ".png")), return_tensors="np")["pixel_values"]
            pv = np.asarray(pv, dtype=np.float32)[0]
            name = f"{src}__{cfg_name}"
            with open(os.path.join(ROOT, "clip", name + ".f32"), "wb") as f:
                f.write(pv.astype("<f4").tobytes())
            manifest["clip"].append({"name": name, "source": src, "config": cfg_name,
                                     "shape": list(pv.shape)})
    manifest["clip_configs"] = CLIP_CONFIGS
    # A checkpoint-style preprocessor_config.json (as save_pretrained writes it).
    CLIPImageProcessorPil(**CLIP_CONFIGS["s40_c24x36"]).save_pretrained(os.path.join(ROOT, "clip_config"))

    # Broken files.
    good = open(os.path.join(ROOT, "decode", "rgb8_3x7.png"), "rb").read()
    idat = good.index(b"IDAT")
    flip = bytearray(good)
    flip[idat + 4 + 5] ^= 0x10  # a bit inside the compressed data; CRC left stale
    errors = {}
    errors["corrupt_crc.png"] = (bytes(flip), "IDAT bit flip, stale CRC", "corrupt")
    n = struct.unpack(">I", good[idat - 4:idat])[0]
    body = bytearray(good[idat + 4:idat + 4 + n])
    body[2] ^= 0xFF  # first byte of deflate data after the zlib header
    body[-1] ^= 0x01  # and the Adler-32 checksum
    fixed = good[:idat - 4] + chunk(b"IDAT", bytes(body)) + good[idat + 8 + n:]
    errors["corrupt_zlib.png"] = (fixed, "IDAT bit flips with a recomputed CRC: bad deflate data", "corrupt")
    errors["truncated.png"] = (good[:idat + 10], "cut inside IDAT", "truncated")
    errors["truncated_signature.png"] = (good[:5], "only the first 5 bytes of the signature", "truncated")
    errors["empty.png"] = (b"", "zero bytes", "emptyFile")
    jpg = io.BytesIO()
    Image.new("RGB", (4, 4), (9, 9, 9)).save(jpg, "JPEG")
    errors["not_png.jpg"] = (jpg.getvalue(), "a 4x4 JPEG", "notPNG")
    errors["text.png"] = (b"this is a text file, not a PNG\n", "text with a .png name", "notPNG")
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    errors["huge_header.png"] = (huge, "valid header claiming 100000x100000 RGB, tiny IDAT", "tooLarge")
    bad_ihdr = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 5, 8, 2, 0, 0, 0)) + chunk(b"IEND", b"")
    errors["zero_width.png"] = (bad_ihdr, "IHDR with width 0", "corrupt")
    for fname, (data, desc, kind) in errors.items():
        with open(os.path.join(ROOT, "errors", fname), "wb") as f:
            f.write(data)
        manifest["errors"].append({"file": fname, "description": desc, "error": kind})

    with open(os.path.join(ROOT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(ROOT) for f in fs)
    print(f"wrote {ROOT}: {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
