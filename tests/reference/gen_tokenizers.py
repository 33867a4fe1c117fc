#!/usr/bin/env python3
"""Writes the small synthetic tokenizer.json fixtures of tests/unit/test_tokenizer.c and
tests/cli/test_tokenize.py into tests/fixtures/tokenizers/<name>/tokenizer.json (run with
/usr/bin/python3; the output is committed). Each exercises one family's layout with a vocabulary
small enough to reason about by hand:

  byte_level      GPT-2: ByteLevel pre-tokenizer and decoder, merges as "a b" strings
  sentencepiece   Llama-1/2 legacy: Prepend + Replace, byte fallback, fused unk, <s> template,
                  merges as ["a", "b"]
  bpe_unk         the same without byte fallback: unknown characters become <unk>, fused
  llama3_style    Llama-3: Split with its pattern + ByteLevel, ignore_merges, BOS in a
                  Sequence post-processor
  added_tokens    NFC and added tokens with every option (lstrip, rstrip, single_word,
                  normalized, special)
  metaspace       Metaspace (prepend "first", split) with a WordLevel model and decoder
  split           a Split on "-" (the unit test switches its behaviour)
"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "tokenizers")


def bytes_to_unicode():
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


BYTE_CHARS = bytes_to_unicode()


def added(id_, content, special=True, normalized=None, lstrip=False, rstrip=False, single_word=False):
    return {"id": id_, "content": content, "single_word": single_word, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def bpe(vocab, merges, **options):
    model = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab, "merges": merges}
    model.update(options)
    return model


def with_merges(vocab, pairs, as_lists=False):
    """Adds each merge's result to the vocabulary, in order; returns the merges list."""
    merges = []
    for a, b in pairs:
        vocab.setdefault(a + b, len(vocab))
        merges.append([a, b] if as_lists else f"{a} {b}")
    return merges


def byte_vocab():
    return {BYTE_CHARS[b]: b for b in range(256)}


def tokenizer(model, added_tokens=(), normalizer=None, pre=None, post=None, decoder=None):
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": list(added_tokens),
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post, "decoder": decoder, "model": model}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
LLAMA3_PATTERN = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def template(name, id_):
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": name, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": name, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {name: {"id": name, "ids": [id_], "tokens": [name]}}}


def byte_level():
    vocab = byte_vocab()
    merges = with_merges(vocab, [("Ġ", "t"), ("h", "e"), ("l", "l"), ("Ġt", "he"), ("he", "ll"), ("hell", "o"),
                                 ("a", "a"), ("Ġ", "Ġ"), ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"),
                                 ("Ġwor", "ld")])
    merges.insert(0, "#version: 0.2")
    return tokenizer(bpe(vocab, merges), [added(len(vocab), "<|endoftext|>")], pre=BYTE_LEVEL,
                     post={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                     decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})


def sentencepiece(byte_fallback=True):
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = 3 + b
    for c in ["▁", "a", "b", "c", "d", "e"]:
        vocab[c] = len(vocab)
    merges = with_merges(vocab, [("▁", "a"), ("a", "b"), ("▁a", "b"), ("▁", "▁"), ("c", "d"), ("▁", "c")],
                         as_lists=True)
    specials = [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")]
    return tokenizer(bpe(vocab, merges, unk_token="<unk>", fuse_unk=True, byte_fallback=byte_fallback), specials,
                     normalizer={"type": "Sequence", "normalizers": [
                         {"type": "Prepend", "prepend": "▁"},
                         {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
                     post=template("<s>", 1),
                     decoder={"type": "Sequence", "decoders": [
                         {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                         {"type": "ByteFallback"}, {"type": "Fuse"},
                         {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})


def llama3_style():
    vocab = byte_vocab()
    merges = with_merges(vocab, [("1", "2"), ("12", "3"), ("4", "5"), ("'", "T"), ("Ġ", "h")])
    vocab["Ġhello"] = len(vocab)  # reachable only as a whole word: ignore_merges
    specials = [added(len(vocab), "<|begin_of_text|>"), added(len(vocab) + 1, "<|eot_id|>")]
    return tokenizer(bpe(vocab, merges, ignore_merges=True), specials,
                     pre={"type": "Sequence", "pretokenizers": [
                         {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated", "invert": False},
                         {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
                     post={"type": "Sequence", "processors": [
                         {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
                         template("<|begin_of_text|>", len(vocab))]},
                     decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})


def added_tokens():
    vocab = byte_vocab()
    n = len(vocab)
    tokens = [added(n, "<mask>", special=False, normalized=False, lstrip=True, rstrip=True),
              added(n + 1, "[SEP]"),
              added(n + 2, "  ", special=False),                    # normalized: matched after NFC
              added(n + 3, "\u01ce", special=False),                # "ǎ": a + U+030C composes into it
              added(n + 4, "<w>", special=False, normalized=False, single_word=True),
              added(n + 5, "[SEP]x", special=False, normalized=False)]  # longest match wins
    return tokenizer(bpe(vocab, []), tokens, normalizer={"type": "NFC"}, pre=BYTE_LEVEL,
                     decoder={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True})


def metaspace():
    vocab = {"<unk>": 0, "<s>": 1, "▁hello": 2, "▁world": 3, "▁": 4, "hello": 5}
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    return tokenizer(model, [added(1, "<s>")],
                     pre={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True},
                     decoder={"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True})


def split():
    vocab = {"<unk>": 0}
    model = {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    return tokenizer(model, pre={"type": "Split", "pattern": {"String": "-"}, "behavior": "Isolated", "invert": False})


FIXTURES = {"byte_level": byte_level(), "sentencepiece": sentencepiece(), "bpe_unk": sentencepiece(False),
            "llama3_style": llama3_style(), "added_tokens": added_tokens(), "metaspace": metaspace(), "split": split()}

if __name__ == "__main__":
    for name, value in FIXTURES.items():
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        with open(os.path.join(OUT, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(value, f, ensure_ascii=False, indent=1)
            f.write("\n")
    print(f"wrote {len(FIXTURES)} tokenizers into {os.path.normpath(OUT)}")
