#!/usr/bin/env python3
"""Writes the small safetensors fixtures in Fixtures/safetensors/ used by TMFCheckpointTests.

Run from the repository root with a Python that has torch, safetensors and numpy:

    /work/venv/bin/python Scripts/make_safetensors_fixtures.py

Every `NAME.safetensors` is written by `safetensors.torch.save_file`; next to it, `NAME.json`
records, per tensor, the dtype and shape, the float32 bit patterns handed to torch before the
dtype conversion (`source_bits`, absent for F64/I64 sources) and the float32 bit patterns that
`load_file(...)[name].float()` reports (`expected_bits`). Bit patterns (not decimal floats)
keep NaN payloads, signed zeros and infinities exact. `metadata` is a list of [key, value]
pairs in the order Python iterated them (the safetensors Rust code writes a metadata map in
hash order, so fixtures compared byte for byte carry at most one metadata key).
"""
import json
import os
import struct

import numpy as np
import torch
from safetensors.torch import save_file, load_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "safetensors")


def f32(bits):
    """A float32 from its bit pattern."""
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def bits_of(t):
    """float32 bit patterns of a tensor as a flat list of ints."""
    return [int(b) & 0xFFFFFFFF for b in t.detach().contiguous().float().reshape(-1).view(torch.int32).tolist()]


def from_bits(bits, shape):
    arr = np.array(bits, dtype=np.uint32).view(np.float32).reshape(shape)
    return torch.from_numpy(arr.copy())


# float32 values that exercise conversions: signed zeros, f32 subnormals, infinities, NaNs with
# payloads and sign, the extremes, and values just either side of f16/bf16 rounding ties.
AWKWARD_F32 = [
    0x00000000, 0x80000000,             # +0, -0
    0x00000001, 0x807FFFFF,             # smallest / largest-magnitude negative f32 subnormal
    0x7F800000, 0xFF800000,             # +inf, -inf
    0x7FC00000, 0xFFC00000,             # quiet NaN, negative quiet NaN
    0x7F800001, 0x7FC02000,             # signalling NaN, NaN with payload in f16's mantissa
    0x7F7FFFFF, 0xFF7FFFFF,             # ±max float32
    0x00800000, 0x3F800000,             # min normal, 1
    0x3F808000, 0x3F818000,             # 1 + 2^-8 (bf16 tie, to even: down), 1 + 3*2^-8 (tie, up)
    0x3F808001, 0x3F807FFF,             # just above / below the bf16 tie
    0x3F801000, 0x3F803000,             # 1 + 2^-11 (f16 tie, down), 1 + 3*2^-11 (f16 tie, up)
    0x3F801001, 0x477FF000,             # just above the f16 tie, 65520 (f16 overflows to inf)
    0x477FEFFF, 0x477FE000,             # just below 65520 (-> 65504), 65504 (f16 max)
    0x33800000, 0x33000000,             # 2^-24 (smallest f16 subnormal), 2^-25 (tie with 0 -> 0)
    0x33400000, 0x33C00000,             # 1.5*2^-25 (-> 2^-24), 1.5*2^-24 (tie -> 2^-23)
    0x387FC000, 0x38800000,             # f16 largest subnormal neighbourhood, f16 min normal
    0x7F7F8000, 0x7F7FFFFF,             # bf16 rounding at the top (tie -> inf? no: to even)
    0xC2F6E979, 0x3DCCCCCD,             # -123.456, 0.1
    0x501502F9, 0x2EDBE6FF,             # 1e10, 1e-10
]


def write(name, tensors, metadata, sources):
    """Saves `tensors` and the expected JSON. `sources[name]` is the float32 tensor converted."""
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path, metadata=metadata)
    loaded = load_file(path)
    entries = {}
    for key, t in tensors.items():
        dtype = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
                 torch.float64: "F64", torch.int64: "I64"}[t.dtype]
        entry = {"dtype": dtype, "shape": list(t.shape)}
        if key in sources:
            entry["source_bits"] = bits_of(sources[key])
        if t.dtype != torch.int64:
            entry["expected_bits"] = bits_of(loaded[key].float())
        else:
            entry["int_values"] = loaded[key].reshape(-1).tolist()
        entries[key] = entry
    doc = {"file": name + ".safetensors",
           "metadata": [[k, v] for k, v in (metadata or {}).items()] if metadata is not None else None,
           "tensors": entries}
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def converted(dtype, bits, shape):
    src = from_bits(bits, shape)
    return src, src.to(dtype)


def main():
    os.makedirs(OUT, exist_ok=True)
    awkward = AWKWARD_F32  # 36 values

    # F32: awkward values, several shapes (scalar, empty, 1-D, 3-D), names whose byte order
    # matters (upper case first, '.' < '_'), a non-ASCII name, metadata needing JSON escapes.
    src = {
        "a": from_bits(awkward, [4, 9]),
        "B.weight": from_bits(awkward[:6], [6]),
        "a.b": from_bits(awkward[6:12], [1, 2, 3]),
        "a_b": from_bits([0x40490FDB], []),
        "z.empty": torch.zeros((0, 3), dtype=torch.float32),
        "\u00e9t\u00e9": from_bits(awkward[12:16], [2, 2]),
    }
    meta = {"note": "quote\" back\\slash /slash\nnewline\ttab \u0001ctrl \u007f del \u00e9 \u2713 \U0001F600"}
    write("f32", dict(src), meta, src)

    # F16 and BF16: float32 sources converted by torch (round to nearest even, overflow to inf,
    # NaN kept), so the Swift writer can be checked byte for byte against torch's rounding.
    for dtype, name in [(torch.float16, "f16"), (torch.bfloat16, "bf16")]:
        s1, t1 = converted(dtype, awkward, [36])
        s2, t2 = converted(dtype, awkward[::-1][:12], [3, 4])
        write(name, {"w": t1, "layer.0.w": t2}, {"format": "pt"}, {"w": s1, "layer.0.w": s2})

    # F64: load only (the writer emits F32/F16/BF16); values beyond float32's range and precision.
    f64 = torch.tensor([0.0, -0.0, 1e300, -1e300, 1e-300, 1.0 + 2.0**-30, 0.1, float("nan"),
                        float("inf"), -float("inf"), 3.4028235677973366e38, 1.401298464324817e-45,
                        7.006492321624085e-46, 123456789.123], dtype=torch.float64)
    write("f64", {"d": f64.reshape(2, 7)}, None, {})

    # Mixed dtypes in one file (header order: F64, F32, BF16, F16, I64 by descending dtype, then
    # name) with two metadata keys; used for the read-then-write round trip, which keeps the
    # file's own metadata order.
    m_src = from_bits(awkward[:8], [2, 4])
    mixed = {
        "f32": m_src.clone(),
        "f16": m_src.to(torch.float16),
        "bf16": m_src.to(torch.bfloat16),
        "f64": m_src.to(torch.float64),
        "ids": torch.tensor([1, -2, 3], dtype=torch.int64),
    }
    write("mixed", mixed, {"format": "pt", "origin": "tmf fixtures"},
          {"f32": m_src, "f16": m_src, "bf16": m_src})

    # A Hugging Face folder with a single file, and a sharded one (index + 2 shards).
    g = torch.Generator().manual_seed(0)
    params = {
        "model.embed_tokens.weight": torch.randn(5, 4, generator=g),
        "model.layers.0.self_attn.q_proj.weight": torch.randn(4, 4, generator=g),
        "model.layers.0.mlp.up_proj.weight": torch.randn(6, 4, generator=g).to(torch.bfloat16),
        "model.norm.weight": torch.randn(4, generator=g).to(torch.float16),
        "lm_head.weight": torch.randn(5, 4, generator=g),
    }
    single = os.path.join(OUT, "single")
    os.makedirs(single, exist_ok=True)
    save_file(params, os.path.join(single, "model.safetensors"), metadata={"format": "pt"})

    sharded = os.path.join(OUT, "sharded")
    os.makedirs(sharded, exist_ok=True)
    names = list(params)
    shards = {"model-00001-of-00002.safetensors": names[:3],
              "model-00002-of-00002.safetensors": names[3:]}
    weight_map = {}
    total = 0
    for shard, keys in shards.items():
        save_file({k: params[k] for k in keys}, os.path.join(sharded, shard), metadata={"format": "pt"})
        for k in keys:
            weight_map[k] = shard
            total += params[k].numel() * params[k].element_size()
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    with open(os.path.join(OUT, "folder_expected.json"), "w") as f:
        json.dump({k: {"shape": list(v.shape), "expected_bits": bits_of(v.float())}
                   for k, v in params.items()}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
