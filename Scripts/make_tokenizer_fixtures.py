#!/usr/bin/env python3
"""Writes the tokenizer fixtures in Fixtures/tokenizer/ (see Fixtures/tokenizer/README.md).

Everything is made locally, no downloads: a seeded shop-like corpus, a tiny Llama-like
SentencePiece model trained on it with Python sentencepiece, a tiny CLIP-format BPE vocabulary
learned from it by hand, and the ids the reference implementations (sentencepiece, transformers)
produce for a set of test strings. Deterministic: running it twice gives the same files.

Needs: sentencepiece, transformers, tokenizers, regex, and protobuf (transformers' LlamaTokenizer
converts tokenizer.model through protobuf; `pip install --target DIR protobuf` and put DIR on
PYTHONPATH if the venv lacks it).

Usage: python Scripts/make_tokenizer_fixtures.py [OUT_DIR]   (default Fixtures/tokenizer)
"""
import io
import json
import os
import random
import sys
import unicodedata

import regex
import sentencepiece as spm
import tokenizers
import transformers
from transformers import CLIPTokenizer, LlamaTokenizer
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "Fixtures", "tokenizer")
SPECIALS = ["[MT_i]", "[MT_b]", "[PAD]"]


# ---------------------------------------------------------------------------------------------
# Corpus
def make_corpus(seed=0, n=1000):
    rng = random.Random(seed)
    adjs = ["red", "blue", "green", "black", "white", "wooden", "leather", "cotton", "vintage", "modern",
            "small", "large", "soft", "waterproof", "wireless", "organic", "stainless", "handmade",
            "lightweight", "classic"]
    nouns = ["shoes", "jacket", "backpack", "lamp", "mug", "headphones", "keyboard", "watch", "scarf",
             "teapot", "chair", "blanket", "notebook", "umbrella", "camera", "bottle", "sweater", "wallet",
             "speaker", "candle"]
    brands = ["Acme", "Nordwind", "Café Lumière", "Zürich Goods", "Señor Sol", "北京工坊", "東京ストア",
              "서울마켓", "Björk & Co", "Crème"]
    verbs = ["viewed", "added to cart", "purchased", "bought", "liked", "returned", "reviewed"]
    extras = ["Great value!", "Ships in 2-3 days.", "Only 5 left in stock.", "Rated 4.5 out of 5 stars.",
              "Price: $19.99", "Save 20% today", "Free shipping over €50", "限定版", "おすすめ商品",
              "최고의 선택", "Perfect gift 🎁", "Loved it ❤️", "Fast delivery 🚚", "naïve café crêpe résumé",
              "Ελληνικά προϊόντα", "Новинка сезона", "Don't miss it, it's the best!"]
    out = []
    for _ in range(n):
        k = rng.randrange(5)
        a, b, br = rng.choice(adjs), rng.choice(nouns), rng.choice(brands)
        if k == 0:
            s = f"The user {rng.choice(verbs)} the {a} {b} by {br}."
        elif k == 1:
            s = f"{br} {a} {b}, size {rng.randrange(1, 48)}, {rng.choice(extras)}"
        elif k == 2:
            s = (f"Customer {rng.randrange(1000, 99999)} {rng.choice(verbs)} {rng.randrange(1, 12)} items: "
                 f"{a} {b} and {rng.choice(adjs)} {rng.choice(nouns)}.")
        elif k == 3:
            s = (f"{rng.choice(extras)} {a.capitalize()} {b} from {br} costs "
                 f"${rng.randrange(3, 500)}.{rng.randrange(10, 99)}")
        else:
            s = f"Which item will the user purchase next? {a} {b} or {rng.choice(adjs)} {rng.choice(nouns)}"
        out.append(s)
    return out


# Llama-2's trainer_spec / normalizer_spec, as far as they matter for a tiny model.
LLAMA_OPTIONS = dict(
    model_type="bpe", vocab_size=640, byte_fallback=True, split_digits=True,
    unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.99995,
    normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
    allow_whitespace_only_pieces=True, split_by_unicode_script=True, split_by_whitespace=True,
    split_by_number=True, max_sentencepiece_length=16, num_threads=1, shuffle_input_sentence=False,
)

SP_SENTENCES = [
    "", "Hello world", "The user viewed the red shoes by Acme.", "  leading spaces", "trailing spaces   ",
    "multiple    inner   spaces", " ", "   ", "Price: $1234.56 for 7 items", "2024-01-31", "Café Lumière crème brûlée",
    "北京工坊 東京ストア 서울마켓", "Perfect gift 🎁 and a unicorn 🦄", "Ελληνικά Новинка", "line one\nline two\n",
    "tab\tseparated\tvalues", "carriage\r\nreturn", "Don't miss it, it's the best!", "▁already▁has▁metaspace",
    "unknown symbols ℵ ∰ ☃", "<s> and </s> are plain text here", "[MT_i] is plain text without added tokens",
    "a", "A B C 1 2 3", "Zürich naïve Señor Björk",
]

SPECIAL_SENTENCES = [
    "[MT_i]", "[MT_i][MT_b]", "a [MT_i] b", "a[MT_i]b", "[MT_i] start", "end [MT_i]", "end [MT_i] ",
    " leading [MT_b]", "two  [MT_b]  spaces", "The user viewed [MT_b] the red shoes [MT_i].",
    "x\n[MT_i]\ny", "café [MT_i] 北京 🎁", "[PAD][PAD]", "History: wireless mouse [MT_i], purchases [MT_b] lamp [MT_i]",
    "Price 12 [MT_i] 34", "[MT_i]start", "[MT_b] [MT_i]  x", "no special tokens here", "", "[MT_i ] is not a token, [MT_x] neither",
]


def write_json(path, obj):
    """JSON with one line per top-level entry and per case, so diffs stay readable."""
    def dumps(o):
        return json.dumps(o, ensure_ascii=False)
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(obj, dict) and "cases" in obj:
            lines = [f" {dumps(k)}: {dumps(v)}" for k, v in obj.items() if k != "cases"]
            cases = ",\n".join("  " + dumps(c) for c in obj["cases"])
            lines.append(f' "cases": [\n{cases}\n ]')
            f.write("{\n" + ",\n".join(lines) + "\n}\n")
        else:
            f.write(dumps(obj) + "\n")


def make_sentencepiece(corpus):
    d = os.path.join(OUT, "sp")
    os.makedirs(d, exist_ok=True)
    writer = io.BytesIO()  # no model_prefix: nothing machine-specific is stored in the model
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=writer, minloglevel=2,
                                   **LLAMA_OPTIONS)
    model = writer.getvalue()
    path = os.path.join(d, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(model)

    sp = spm.SentencePieceProcessor(model_file=path)
    cases = []
    for s in SP_SENTENCES:
        ids = sp.encode(s)
        cases.append({"text": s, "ids": ids, "pieces": sp.id_to_piece(ids), "decoded": sp.decode(ids)})
    write_json(os.path.join(OUT, "sp_cases.json"), {
        "vocab_size": sp.get_piece_size(), "bos_id": sp.bos_id(), "eos_id": sp.eos_id(),
        "unk_id": sp.unk_id(), "pad_id": sp.pad_id(), "cases": cases})

    # transformers: the sentencepiece-based ("slow") tokenizer, legacy=True by default in this
    # version, and LlamaTokenizer (tokenizers-based, legacy=False by default in this version).
    slow = SentencePieceBackend(vocab_file=path, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast = LlamaTokenizer.from_pretrained(d)
    assert slow.legacy is True and fast.legacy is False
    slow.add_special_tokens({"additional_special_tokens": SPECIALS})
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    added = {t: slow.convert_tokens_to_ids(t) for t in SPECIALS}
    assert added == {t: fast.convert_tokens_to_ids(t) for t in SPECIALS}
    cases = []
    for s in SPECIAL_SENTENCES:
        legacy = slow.encode(s, add_special_tokens=False)
        nonlegacy = fast.encode(s, add_special_tokens=False)
        cases.append({"text": s, "legacy": legacy, "legacy_tokens": slow.convert_ids_to_tokens(legacy),
                      "non_legacy": nonlegacy, "non_legacy_tokens": fast.convert_ids_to_tokens(nonlegacy)})
    write_json(os.path.join(OUT, "sp_special_cases.json"), {
        "transformers": transformers.__version__, "sentencepiece": spm.__version__,
        "special_tokens": SPECIALS, "added_ids": added, "cases": cases})


# ---------------------------------------------------------------------------------------------
# CLIP
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


CLIP_PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""")


def learn_clip_bpe(corpus, n_merges=400):
    """Plain BPE over CLIP's pre-tokenised, byte-encoded words with '</w>' on the last symbol."""
    b2u = bytes_to_unicode()
    words = {}
    for line in corpus:
        text = regex.sub(r"\s+", " ", unicodedata.normalize("NFC", line)).strip().lower()
        for tok in CLIP_PAT.findall(text):
            w = "".join(b2u[b] for b in tok.encode("utf-8"))
            key = tuple(w[:-1]) + (w[-1] + "</w>",)
            words[key] = words.get(key, 0) + 1
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] = pairs.get(p, 0) + c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new = {}
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new[tuple(out)] = new.get(tuple(out), 0) + c
        words = new
    vocab = list(b2u.values())
    vocab += [v + "</w>" for v in vocab]
    seen = set(vocab)
    for a, b in merges:
        if a + b not in seen:
            vocab.append(a + b)
            seen.add(a + b)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


CLIP_STRINGS = [
    "", "a red shoe", "Hello, world!!!", "don't stop, it's fine; we're here, they've gone, I'm ok, you'll see, he'd go",
    "DON'T SHOUT", "I'M HERE", "Price: $19.99 for 3 items (save 20%)", "2024-01-31 12:30",
    "Café Zürich naïve crème brûlée", "Cafe\u0301 combining accent", "北京工坊 東京ストア 서울마켓", "Perfect gift 🎁 ❤️ 🦄",
    "  multiple   spaces\tand\nnewlines  ", "ΕΛΛΗΝΙΚΆ Новинка", "a photo of a <|endoftext|> cat", "<|startoftext|>hi",
    "email@example.com http://shop.example/item?id=42", "x" * 5, "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    " ".join(["wireless headphones with noise cancelling"] * 12),
    "!!!???...,,,", "it''s o'clock 'quoted' words",
]


def make_clip(corpus):
    d = os.path.join(OUT, "clip")
    os.makedirs(d, exist_ok=True)
    vocab, merges = learn_clip_bpe(corpus)
    write_json(os.path.join(d, "vocab.json"), vocab)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    tok = CLIPTokenizer.from_pretrained(d)
    cases = []
    for s in CLIP_STRINGS:
        enc = tok(s, padding="max_length", truncation=True, max_length=77)
        short = tok(s, truncation=True, max_length=77)["input_ids"]
        cases.append({"text": s, "ids": short, "tokens": tok.convert_ids_to_tokens(short),
                      "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    write_json(os.path.join(OUT, "clip_cases.json"), {
        "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
        "bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id, "pad_id": tok.pad_token_id,
        "pad_token": tok.pad_token, "vocab_size": len(tok), "cases": cases})


def main():
    os.makedirs(OUT, exist_ok=True)
    corpus = make_corpus()
    with open(os.path.join(OUT, "corpus.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(corpus) + "\n")
    make_sentencepiece(corpus)
    make_clip(corpus)


if __name__ == "__main__":
    main()
