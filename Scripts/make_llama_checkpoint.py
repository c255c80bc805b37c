#!/usr/bin/env python3
"""Writes a random-initialised Hugging Face Llama folder of a real shape, streaming, for speed runs.

    /work/venv/bin/python Scripts/make_llama_checkpoint.py --shape 7b --out /tmp/llama7b-bf16
    /work/venv/bin/python Scripts/make_llama_checkpoint.py --shape 110m --dtype f32 --out /tmp/llama110m-f32
    /work/venv/bin/python Scripts/make_llama_checkpoint.py --shape tiny --out /tmp/llama-tiny --check

Options: --shape 7b|110m|tiny, --dtype bf16|f16|f32 (default bf16), --seed N (default 0),
--shard-gb G (default 5: shards of at most G * 10^9 bytes, as transformers' "5GB"), --out DIR,
--no-tokenizer, --force (replace the model files of a folder that already has some), --check
(after writing: opens every shard with safetensors.safe_open, checks names, shapes and dtypes and
reads each shard's first tensor; under 1B parameters also loads the folder with transformers'
LlamaForCausalLM, compares every tensor, runs a forward pass and round-trips text through
tokenizer.model).

Shapes:
  7b    Llama-2-7B: hidden 4096, 32 layers, 32 heads, 32 KV heads, FFN 11008, vocab 32000,
        untied lm_head, rope_theta 10000, RMSNorm eps 1e-5, 4096 positions (6,738,415,616 params)
  110m  hidden 768, 12 layers, 12 heads, FFN 2048, vocab 32000, tied embeddings, 2048 positions
        (the shape of Scripts/bench_llama_torch.py and ../shared/BENCHMARKS.md; 109,529,856 params)
  tiny  hidden 64, 2 layers, 4 heads, FFN 172, vocab 1000, untied (for tests)

It writes into DIR:
  model.safetensors, or model-0000K-of-0000N.safetensors shards plus model.safetensors.index.json
      (weight_map, metadata.total_size) when the tensors do not fit one shard of --shard-gb;
  tokenizer.model  a SentencePiece BPE model with exactly vocab_size pieces (<unk> <s> </s>, the
      256 byte pieces <0x00>..<0xFF>, single characters, then made-up word pieces), serialised by
      hand (no protobuf needed). llama.cpp's convert_hf_to_gguf.py needs a tokenizer to convert a
      Llama folder (tokenizer.model, else tokenizer.json); llama-bench never tokenizes, so its
      pieces only have to load. sentencepiece, the converter and `tmf generate` load it;
      --no-tokenizer skips it;
  config.json  LlamaForCausalLM as transformers 4.x writes it (torch_dtype, rope_theta), written
      last, so a folder with config.json is complete.
Every file is written under a temporary name and renamed when complete.

Weights: every matrix ~ normal(0, 0.02) drawn in float32 from numpy's default_rng seeded by
(--seed, SHA-256 of the tensor name), so a tensor's values do not depend on the shard size or on
the other tensors; norm weights are 1. bf16 is float32 rounded to nearest even on its bits (what
torch's .to(torch.bfloat16) does), f16 numpy's astype. Tensors are generated and written in row
chunks of about 2^20 values, so memory stays small whatever the shape.

Cost, measured on a 2-core Xeon VM (family 6 model 207; AVX-512, no AVX512-BF16 exposed), one
core used while the other was busy with a build:
7b bf16 wrote 13.5 GB (3 shards of <= 5 GB) in 197 s wall (116 s user, 35 s system) at 47 MB
peak RSS (/usr/bin/time -v); the page cache fills with what was written, the process does not
grow. --check on 7b reads the shards' headers and one tensor each (about 1 GB resident, 7 s).
110m: 4-5 s. Disk: 7b bf16/f16 13.5 GB, 7b f32 27 GB; 110m bf16 219 MB, f32 438 MB.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import time

import numpy as np

SHAPES = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32, vocab_size=32000, max_position_embeddings=4096,
               tie_word_embeddings=False),
    "110m": dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, vocab_size=32000, max_position_embeddings=2048,
                 tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=1000, max_position_embeddings=512,
                 tie_word_embeddings=False),
}
DTYPES = {  # --dtype: (safetensors dtype, bytes per value, config torch_dtype)
    "bf16": ("BF16", 2, "bfloat16"),
    "f16": ("F16", 2, "float16"),
    "f32": ("F32", 4, "float32"),
}
STD = 0.02
CHUNK_VALUES = 1 << 20  # values generated and written at a time


def config_json(shape, dtype):
    s = SHAPES[shape]
    c = dict(
        architectures=["LlamaForCausalLM"], attention_bias=False, attention_dropout=0.0,
        bos_token_id=1, eos_token_id=2, head_dim=s["hidden_size"] // s["num_attention_heads"],
        hidden_act="silu", hidden_size=s["hidden_size"], initializer_range=STD,
        intermediate_size=s["intermediate_size"], max_position_embeddings=s["max_position_embeddings"],
        mlp_bias=False, model_type="llama", num_attention_heads=s["num_attention_heads"],
        num_hidden_layers=s["num_hidden_layers"], num_key_value_heads=s["num_key_value_heads"],
        pretraining_tp=1, rms_norm_eps=1e-5, rope_scaling=None, rope_theta=10000.0,
        tie_word_embeddings=s["tie_word_embeddings"], torch_dtype=DTYPES[dtype][2],
        transformers_version="4.46.0", use_cache=True, vocab_size=s["vocab_size"])
    return json.dumps(c, indent=2, sort_keys=True) + "\n"


def tensors(shape):
    """(name, shape, kind) in the order written; kind is "normal" or "ones"."""
    s = SHAPES[shape]
    h, f, v = s["hidden_size"], s["intermediate_size"], s["vocab_size"]
    kv = s["num_key_value_heads"] * (h // s["num_attention_heads"])
    out = [("model.embed_tokens.weight", (v, h), "normal")]
    for i in range(s["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (h,), "ones"),
                (p + "self_attn.q_proj.weight", (h, h), "normal"),
                (p + "self_attn.k_proj.weight", (kv, h), "normal"),
                (p + "self_attn.v_proj.weight", (kv, h), "normal"),
                (p + "self_attn.o_proj.weight", (h, h), "normal"),
                (p + "post_attention_layernorm.weight", (h,), "ones"),
                (p + "mlp.gate_proj.weight", (f, h), "normal"),
                (p + "mlp.up_proj.weight", (f, h), "normal"),
                (p + "mlp.down_proj.weight", (h, f), "normal")]
    out.append(("model.norm.weight", (h,), "ones"))
    if not s["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h), "normal"))
    return out


def count(shape_tuple):
    n = 1
    for d in shape_tuple:
        n *= d
    return n


def plan_shards(items, itemsize, shard_bytes):
    """Groups tensors into shards the way transformers does: a new shard when the next tensor would
    overflow the current one (a tensor larger than a shard gets a shard of its own)."""
    shards, current, size = [], [], 0
    for item in items:
        nbytes = count(item[1]) * itemsize
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(item)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def header_bytes(items, st_dtype, itemsize):
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shp, _ in items:
        nbytes = count(shp) * itemsize
        header[name] = {"dtype": st_dtype, "shape": list(shp), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def to_bf16(x):
    """float32 array -> uint16 bf16 bits, rounded to nearest even (finite inputs), in place on x."""
    u = x.view(np.uint32)
    t = u >> 16
    t &= 1
    t += 0x7FFF
    u += t
    return u.view(np.uint16)[1::2]  # little-endian: the high half of each uint32


def write_tensor(f, name, shp, kind, dtype, seed):
    rows = shp[0]
    cols = count(shp[1:])
    if kind == "ones":
        ones = np.ones(count(shp), dtype=np.float32)
        data = {"bf16": lambda: to_bf16(ones).copy(), "f16": lambda: ones.astype(np.float16),
                "f32": lambda: ones}[dtype]()
        f.write(np.ascontiguousarray(data).data)
        return
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    rng = np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])
    step = max(1, CHUNK_VALUES // cols)
    out16 = np.empty(step * cols, dtype=np.uint16) if dtype == "bf16" else None
    for r in range(0, rows, step):
        n = min(step, rows - r)
        x = rng.standard_normal((n, cols), dtype=np.float32)
        x *= np.float32(STD)
        if dtype == "bf16":
            o = out16[: n * cols]
            np.copyto(o, to_bf16(x.reshape(-1)))
            f.write(o.data)
        elif dtype == "f16":
            f.write(x.astype(np.float16).data)
        else:
            f.write(x.data)


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- tokenizer.model: a SentencePiece ModelProto serialised by hand ----

def _varint(n):
    out = bytearray()
    if n < 0:
        n += 1 << 64
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field_bytes(number, payload):  # wire type 2: length-delimited
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_varint(number, value):  # wire type 0
    return _varint(number << 3) + _varint(value)


def _field_float(number, value):  # wire type 5: fixed32
    return _varint(number << 3 | 5) + struct.pack("<f", value)


NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6  # SentencePiece.Type


def tokenizer_pieces(vocab_size):
    """(piece, score, type): <unk> <s> </s>, 256 bytes, single characters, then word pieces made by
    appending a letter to an earlier piece (so each is one BPE merge away from a shorter one)."""
    pieces = [("<unk>", 0.0, UNKNOWN), ("<s>", 0.0, CONTROL), ("</s>", 0.0, CONTROL)]
    pieces += [(f"<0x{b:02X}>", 0.0, BYTE) for b in range(256)]
    chars = list("\u2581etaoinshrdlcumwfgypbvkjxqz") + list("ETAOINSHRDLCUMWFGYPBVKJXQZ")
    chars += list("0123456789.,;:!?'\"-()[]{}/\\@#$%&*+=<>_~`^|")
    letters = chars[1:27]
    need = vocab_size - len(pieces)
    if need < len(chars):
        raise SystemExit(f"make_llama_checkpoint: vocab_size {vocab_size} is too small for a tokenizer")
    rng = np.random.default_rng(20240229)
    words, seen = [], set(chars)
    stems = ["\u2581" + c for c in letters] + letters
    for s in stems:
        if len(words) + len(chars) < need and s not in seen:
            seen.add(s)
            words.append(s)
    grow = list(words)
    while len(words) + len(chars) < need:
        base = grow[int(rng.integers(len(grow)))]
        w = base + letters[min(25, int(rng.exponential(6.0)))]
        if w in seen:
            continue
        seen.add(w)
        words.append(w)
        if len(w) < 10:
            grow.append(w)
    # BPE scores: earlier merges rank higher; single characters last, as in Llama's tokenizer.
    normal = words + chars
    pieces += [(p, -float(i), NORMAL) for i, p in enumerate(normal)]
    assert len(pieces) == vocab_size and len({p for p, _, _ in pieces}) == vocab_size
    return pieces


def tokenizer_model_bytes(vocab_size):
    out = bytearray()
    for piece, score, kind in tokenizer_pieces(vocab_size):
        sp = _field_bytes(1, piece.encode("utf-8")) + _field_float(2, score) + _field_varint(3, kind)
        out += _field_bytes(1, sp)
    trainer = (_field_bytes(2, b"tokenizer") + _field_varint(3, 2)  # model_type BPE
               + _field_varint(4, vocab_size) + _field_varint(25, 1)  # split_digits
               + _field_varint(35, 1)  # byte_fallback
               + _field_varint(40, 0) + _field_varint(41, 1) + _field_varint(42, 2)  # unk, bos, eos ids
               + _field_varint(43, -1))  # pad_id: none
    normalizer = (_field_bytes(1, b"identity") + _field_varint(3, 1)  # add_dummy_prefix
                  + _field_varint(4, 0) + _field_varint(5, 1))  # remove_extra_whitespaces off, escape_whitespaces on
    out += _field_bytes(2, trainer) + _field_bytes(3, normalizer)
    return bytes(out)


# ---- main ----

def existing_outputs(out):
    """Files of an earlier run (or of another checkpoint) that loaders would mix with ours."""
    return sorted(n for n in os.listdir(out)
                  if n in ("config.json", "tokenizer.model", "model.safetensors.index.json")
                  or (n.startswith("model") and n.endswith(".safetensors")) or n.endswith(".tmp"))


def check(out, shape, dtype, expected):
    from safetensors import safe_open
    files = sorted(n for n in os.listdir(out) if n.endswith(".safetensors"))
    seen = {}
    for n in files:
        with safe_open(os.path.join(out, n), framework="pt") as f:
            for k in f.keys():
                sl = f.get_slice(k)
                seen[k] = tuple(sl.get_shape())
                assert sl.get_dtype() == DTYPES[dtype][0], (k, sl.get_dtype())
            first = next(iter(f.keys()))
            t = f.get_tensor(first)
            print(f"check: {n}: {len(list(f.keys()))} tensors; {first} {tuple(t.shape)} std {t.float().std().item():.5f}")
    assert seen == {name: shp for name, shp, _ in expected}, "tensor names or shapes differ"
    params = sum(count(s) for s in seen.values())
    if params > 10**9:
        print(f"check: {params:,} parameters read back with safetensors.safe_open (too large to load in transformers here)")
        return
    import torch
    from transformers import LlamaForCausalLM
    model = LlamaForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        sd = model.state_dict()
        for n in files:
            with safe_open(os.path.join(out, n), framework="pt") as f:
                for k in f.keys():
                    assert torch.equal(sd[k], f.get_tensor(k).float()), f"{k} differs after loading"
        ids = torch.arange(3, 3 + 16).unsqueeze(0) % SHAPES[shape]["vocab_size"]
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 16, SHAPES[shape]["vocab_size"]) and torch.isfinite(logits).all()
    print(f"check: transformers LlamaForCausalLM loaded {params:,} parameters; logits {tuple(logits.shape)}, "
          f"std {logits.std().item():.4f}")
    if os.path.exists(os.path.join(out, "tokenizer.model")):
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=os.path.join(out, "tokenizer.model"))
        assert sp.vocab_size() == SHAPES[shape]["vocab_size"] and (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
        text = "Hello world, 42 \u00e9t\u00e9s"
        assert sp.decode(sp.encode(text)) == text
        print(f"check: tokenizer.model: {sp.vocab_size()} pieces; {text!r} -> {sp.encode(text, out_type=str)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), default="7b")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard-gb", type=float, default=5.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--no-tokenizer", action="store_true")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    if a.shard_gb <= 0:
        ap.error("--shard-gb must be positive")
    if a.seed < 0:
        ap.error("--seed must be non-negative")
    os.makedirs(a.out, exist_ok=True)
    old = existing_outputs(a.out)
    if old and not a.force:
        sys.exit(f"make_llama_checkpoint: {a.out} already holds {', '.join(old)}; give --force to replace them")
    for n in ["config.json"] + old:  # config.json first: the folder is incomplete from here on
        if os.path.exists(os.path.join(a.out, n)):
            os.remove(os.path.join(a.out, n))

    st_dtype, itemsize, _ = DTYPES[a.dtype]
    items = tensors(a.shape)
    shards = plan_shards(items, itemsize, int(a.shard_gb * 1e9))
    total = sum(count(s) for _, s, _ in items) * itemsize
    print(f"make_llama_checkpoint: {a.shape} {a.dtype}, {sum(count(s) for _, s, _ in items):,} parameters, "
          f"{total / 1e9:.2f} GB in {len(shards)} file(s) -> {a.out}", flush=True)
    start = time.time()
    weight_map = {}
    for k, shard in enumerate(shards, 1):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        path = os.path.join(a.out, fname)
        header, nbytes = header_bytes(shard, st_dtype, itemsize)
        with open(path + ".tmp", "wb") as f:
            f.write(header)
            for name, shp, kind in shard:
                write_tensor(f, name, shp, kind, a.dtype, a.seed)
                weight_map[name] = fname
            assert f.tell() == len(header) + nbytes
            f.flush()
            os.fsync(f.fileno())
        os.replace(path + ".tmp", path)
        print(f"  {fname}: {len(shard)} tensors, {nbytes / 1e9:.2f} GB, {time.time() - start:.0f} s", flush=True)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        write_atomic(os.path.join(a.out, "model.safetensors.index.json"),
                     (json.dumps(index, indent=2) + "\n").encode("utf-8"))
    if not a.no_tokenizer:
        write_atomic(os.path.join(a.out, "tokenizer.model"), tokenizer_model_bytes(SHAPES[a.shape]["vocab_size"]))
    write_atomic(os.path.join(a.out, "config.json"), config_json(a.shape, a.dtype).encode("utf-8"))
    print(f"make_llama_checkpoint: done in {time.time() - start:.0f} s", flush=True)
    if a.check:
        check(a.out, a.shape, a.dtype, items)


if __name__ == "__main__":
    main()
