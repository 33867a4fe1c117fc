#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz harnesses into tests/fuzz/corpus/<harness>/ (committed).

Seeds come from tests/fixtures (models, jobs, bad_jobs, malformed) and from hand-made edge cases:
tiny checkpoints of each architecture (one layer, width 4) in F32, F16 and BF16, and inputs one
step away from valid. Each file's format is the one its harness reads (tests/fuzz/fuzz_*.c): a
NUL byte separates the two files of fuzz_config (config.json, model.safetensors), fuzz_job
(the job, prompts.jsonl) and the index mode of fuzz_safetensors; fuzz_results reads a recipe.

Usage: tests/fuzz/gen_corpus.py   (stdlib only; rewrites the corpus folders)
"""
import glob
import hashlib
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(HERE, "corpus")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def put(harness, name, data):
    if isinstance(data, str):
        data = data.encode()
    os.makedirs(os.path.join(OUT, harness), exist_ok=True)
    with open(os.path.join(OUT, harness, name), "wb") as f:
        f.write(data)


# ---- safetensors --------------------------------------------------------------------------------

def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    return struct.pack("<f", x)[2:]  # truncation is enough for seeds


def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, raw bytes or None for filled values)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    size = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "U8": 1, "F64": 8, "I64": 8, "BOOL": 1, "F8_E4M3": 1}
    for name, dtype, shape, raw in tensors:
        n = 1
        for s in shape:
            n *= s
        if raw is None:
            enc = {"F32": lambda v: struct.pack("<f", v), "F16": f16, "BF16": bf16}.get(dtype, lambda v: bytes(size[dtype]))
            raw = b"".join(enc(0.01 * ((i * 7) % 13 - 6)) for i in range(n))
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


D, H, DM, V, CTX = 4, 2, 8, 8, 4


def gpt2_tensors(dtype):
    t = [("wte.weight", [V, D]), ("wpe.weight", [CTX, D])]
    for a, s in [("ln_1.weight", [D]), ("ln_1.bias", [D]), ("attn.c_attn.weight", [D, 3 * D]),
                 ("attn.c_attn.bias", [3 * D]), ("attn.c_proj.weight", [D, D]), ("attn.c_proj.bias", [D]),
                 ("ln_2.weight", [D]), ("ln_2.bias", [D]), ("mlp.c_fc.weight", [D, DM]), ("mlp.c_fc.bias", [DM]),
                 ("mlp.c_proj.weight", [DM, D]), ("mlp.c_proj.bias", [D])]:
        t.append(("h.0." + a, s))
    t += [("ln_f.weight", [D]), ("ln_f.bias", [D])]
    return [(n, dtype, s, None) for n, s in t]


def llama_tensors(dtype, kv=1):
    dh = D // H
    t = [("model.embed_tokens.weight", [V, D])]
    for a, s in [("input_layernorm.weight", [D]), ("self_attn.q_proj.weight", [D, D]),
                 ("self_attn.k_proj.weight", [kv * dh, D]), ("self_attn.v_proj.weight", [kv * dh, D]),
                 ("self_attn.o_proj.weight", [D, D]), ("post_attention_layernorm.weight", [D]),
                 ("mlp.gate_proj.weight", [DM, D]), ("mlp.up_proj.weight", [DM, D]), ("mlp.down_proj.weight", [D, DM])]:
        t.append(("model.layers.0." + a, s))
    t += [("model.norm.weight", [D]), ("lm_head.weight", [V, D])]
    return [(n, dtype, s, None) for n, s in t]


def neox_tensors(dtype):
    t = [("gpt_neox.embed_in.weight", [V, D])]
    for a, s in [("input_layernorm.weight", [D]), ("input_layernorm.bias", [D]),
                 ("attention.query_key_value.weight", [3 * D, D]), ("attention.query_key_value.bias", [3 * D]),
                 ("attention.dense.weight", [D, D]), ("attention.dense.bias", [D]),
                 ("post_attention_layernorm.weight", [D]), ("post_attention_layernorm.bias", [D]),
                 ("mlp.dense_h_to_4h.weight", [DM, D]), ("mlp.dense_h_to_4h.bias", [DM]),
                 ("mlp.dense_4h_to_h.weight", [D, DM]), ("mlp.dense_4h_to_h.bias", [D])]:
        t.append(("gpt_neox.layers.0." + a, s))
    t += [("gpt_neox.final_layer_norm.weight", [D]), ("gpt_neox.final_layer_norm.bias", [D]),
          ("embed_out.weight", [V, D])]
    return [(n, dtype, s, None) for n, s in t]


CONFIGS = {
    "gpt2": {"model_type": "gpt2", "n_embd": D, "n_layer": 1, "n_head": H, "n_positions": CTX, "vocab_size": V,
             "n_inner": DM, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"},
    "llama": {"model_type": "llama", "hidden_size": D, "intermediate_size": DM, "num_hidden_layers": 1,
              "num_attention_heads": H, "num_key_value_heads": 1, "vocab_size": V, "max_position_embeddings": CTX,
              "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False},
    "neox": {"model_type": "gpt_neox", "hidden_size": D, "intermediate_size": DM, "num_hidden_layers": 1,
             "num_attention_heads": H, "vocab_size": V, "max_position_embeddings": CTX, "rotary_pct": 1.0,
             "layer_norm_eps": 1e-5, "hidden_act": "gelu", "use_parallel_residual": True},
}
TINY = {
    "gpt2": safetensors(gpt2_tensors("F32"), {"format": "pt"}),
    "llama": safetensors(llama_tensors("BF16")),
    "neox": safetensors(neox_tensors("F16")),
}


def gen_safetensors():
    h = "fuzz_safetensors"
    for name, data in TINY.items():
        put(h, "tiny-" + name, data)
    for case in sorted(glob.glob(os.path.join(FIX, "malformed", "*", "model.safetensors"))):
        put(h, "malformed-" + os.path.basename(os.path.dirname(case)), read(case))
    put(h, "edge-empty-header", safetensors([]))
    put(h, "edge-metadata-only", safetensors([], {"a": "b"}))
    put(h, "edge-zero-dim", safetensors([("a", "F32", [0, 3], b""), ("b", "F32", [], struct.pack("<f", 1.5))]))
    put(h, "edge-dtypes", safetensors([("a", "F64", [2], None), ("b", "I64", [1], None), ("c", "BOOL", [3], None),
                                        ("d", "F8_E4M3", [2], None), ("e", "U8", [1], None)]))
    put(h, "edge-f16-specials", safetensors([("x", "F16", [4], b"\x00\x7c\x00\xfc\x01\x00\xff\x7b")]))
    put(h, "edge-bf16-nan", safetensors([("x", "BF16", [2], b"\xc0\x7f\x80\x3f")]))
    put(h, "edge-unpadded", safetensors([("x", "F32", [1, 1, 1, 1, 1, 1, 1, 1], None)], pad=False))
    put(h, "edge-gap", struct.pack("<Q", 60) + json.dumps(
        {"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}).encode().ljust(60) + bytes(8))
    # index mode: the fixture's index as is, and one that points part of the model at fuzz.safetensors
    index = read(os.path.join(FIX, "models", "llama-tiny-sharded", "model.safetensors.index.json"))
    put(h, "index-fixture", index)
    weight_map = json.loads(index)["weight_map"]
    names = sorted(weight_map)[:2]
    for n in names:
        weight_map[n] = "fuzz.safetensors"
    shard = safetensors([(n, "F32", [2], None) for n in names])
    put(h, "index-own-shard", json.dumps({"metadata": {}, "weight_map": weight_map}).encode() + b"\0" + shard)
    put(h, "index-empty", b'{"weight_map": {}}')


def gen_config():
    h = "fuzz_config"
    for arch, cfg in CONFIGS.items():
        put(h, "tiny-" + arch, json.dumps(cfg, indent=1).encode() + b"\0" + TINY[arch])
    tied = dict(CONFIGS["llama"], tie_word_embeddings=True, head_dim=2)
    put(h, "tiny-llama-tied", json.dumps(tied).encode() + b"\0" + safetensors(llama_tensors("F32")[:-1]))
    for cfg in sorted(glob.glob(os.path.join(FIX, "models", "*", "config.json"))):
        put(h, "fixture-config-" + os.path.basename(os.path.dirname(cfg)), read(cfg))
    for case in sorted(glob.glob(os.path.join(FIX, "malformed", "*"))):
        if not os.path.isdir(case):
            continue
        data = read(os.path.join(case, "config.json"))
        weights = os.path.join(case, "model.safetensors")
        if os.path.exists(weights):
            data += b"\0" + read(weights)
        put(h, "malformed-" + os.path.basename(case), data)


WORDS = " ".join("w%d" % i for i in range(6))


def gen_job():
    h = "fuzz_job"

    def job_text(path):
        job = json.loads(read(path))
        if "prompts_file" in job:
            job["prompts_file"] = "prompts.jsonl"
        return json.dumps(job, indent=1).encode()

    for path in sorted(glob.glob(os.path.join(FIX, "jobs", "*.json"))):
        put(h, "fixture-" + os.path.basename(path)[:-5], job_text(path))
    prompts = read(os.path.join(FIX, "bad_jobs", "p.jsonl"))
    for path in sorted(glob.glob(os.path.join(FIX, "bad_jobs", "*.json"))):
        name = os.path.basename(path)[:-5]
        if name == "cases":
            continue
        data = read(path)
        try:
            data = job_text(path)
            if b"prompts_file" in data:
                data += b"\0" + (read(os.path.join(FIX, "bad_jobs", "bad_line.jsonl")) if "bad_line" in name else prompts)
        except ValueError:
            pass  # a syntax error is the case itself
        put(h, "bad-" + name, data)
    base = {"model": "../models/gpt2-tiny", "nodes": ["resid_pre", "z", "k", "mlp_post"]}
    pair = {"clean": [1, 2, 3, 4], "corrupt": [1, 2, 5, 4], "answer": 6, "wrong": 7}
    put(h, "text-prompts", json.dumps(dict(base, prompts=[
        {"clean_text": WORDS, "corrupt_text": "w0 w1 w2 w9 w4 w5", "answer_text": "w3", "wrong_text": "<bos>"}],
        positions=[0, 5], estimates=["atp", "atp_qk", "atp_star"], window=2)))
    put(h, "resample", json.dumps(dict(base, prompts=[{"clean": [1, 2, 3], "answer": 4, "wrong": 5}] * 3,
                                       corruption={"resample": {"seed": 3}}, direction="noise", metric="kl")))
    put(h, "gaussian", json.dumps(dict(base, prompts=[{"clean": [1, 2, 3], "answer": 4}],
                                       corruption={"gaussian": {"scale": 2.5, "positions": [0, 2], "samples": 3, "seed": 1}},
                                       metric="logprob", positions="all", exact=False, estimates=["atp"])))
    put(h, "zero-prob", json.dumps(dict(base, prompts=[{"clean": [0, 63], "answer": 63}], corruption="zero",
                                        metric="prob", output="x/../out.h5", description="d")))
    put(h, "prompts-file", json.dumps(dict(base, prompts_file="prompts.jsonl")).encode() + b"\0" +
        b"\n".join(json.dumps(p).encode() for p in [pair, dict(pair, clean=[9, 9, 9, 9])]) + b"\n\n")
    put(h, "prompts-file-many", json.dumps(dict(base, prompts_file="prompts.jsonl", corruption="resample",
                                                metric="kl")).encode() + b"\0" +
        b"\n".join(json.dumps({"clean": [i % 60, 1, 2]}).encode() for i in range(20)))
    put(h, "named-positions", json.dumps(dict(base, positions=["IO", -1, 0, "END"], prompts=[
        dict(pair, positions={"IO": 1, "END": -1}), dict(pair, clean=[1, 2, 3], corrupt=[1, 5, 3], positions={"IO": 2, "END": -2})])))
    put(h, "prompts-file-text", json.dumps(dict(base, prompts_file="prompts.jsonl", corruption="mean")).encode() +
        b"\0" + json.dumps({"clean_text": "w1 w2", "answer_text": "w3", "wrong": 4}).encode())


def gen_tokenizer():
    h = "fuzz_tokenizer"
    put(h, "fixture-gpt2-tiny", read(os.path.join(FIX, "models", "gpt2-tiny", "tokenizer.json")))
    for m in ("induction-2l", "ioi-small", "facts-6l"):
        put(h, "model-" + m, read(os.path.join(HERE, "..", "..", "models", m, "tokenizer.json")))
    vocab = {"w%d" % i: i for i in range(10)}
    put(h, "wordlevel", json.dumps({"model": {"type": "WordLevel", "vocab": vocab}}))
    byte_level = {"\u0120the": 0, "\u010a": 1, "\u0109x": 2, "\u0100": 3, "\u0143": 4, "a\u00adb": 5, "\u00e9": 6,
                  "\u20ac": 7, "\U0001f600": 8, "ctl\u007f": 9}
    put(h, "bytelevel", json.dumps({"model": {"type": "BPE", "vocab": byte_level}, "decoder": {"type": "ByteLevel"},
                                    "added_tokens": [{"id": 10, "content": "<|endoftext|>"}, {"id": 99, "content": "far"},
                                                     {"id": "1", "content": "x"}, {"content": "y"}]}))
    put(h, "ids-edge", json.dumps({"model": {"vocab": {"a": 63, "b": 64, "c": 1e3, "d": 0, "d2": 0}}}))
    put(h, "id-negative", json.dumps({"model": {"vocab": {"a": -1}}}))
    put(h, "id-fraction", json.dumps({"model": {"vocab": {"a": 1.5}}}))
    put(h, "id-string", json.dumps({"model": {"vocab": {"a": "1"}}}))
    put(h, "no-vocab", json.dumps({"model": {"type": "WordLevel"}}))
    put(h, "not-object", "[1, 2]")
    # The tokenizer fixtures (every model, normalizer, pre-tokenizer, post-processor and decoder
    # supported); one also with a text of its own after a NUL byte.
    for path in sorted(glob.glob(os.path.join(FIX, "tokenizers", "*", "tokenizer.json"))):
        put(h, "fixture-" + os.path.basename(os.path.dirname(path)), read(path))
    text = " Hello\u00a0world!\n\t<s>2024 caf\u00e9 \u65e5\u672c \U0001f600  ".encode()
    put(h, "fixture-byte_level-with-text", read(os.path.join(FIX, "tokenizers", "byte_level", "tokenizer.json")) + b"\0" + text)


def gen_results():
    """Recipes (fuzz_results.c): 5 size bytes (P, T, N, S, M), a kind byte per attribute (8) and per
    dataset (12), then the details and values in order; zero bytes keep everything valid."""
    h = "fuzz_results"
    put(h, "valid-empty", b"")
    put(h, "valid-sizes", bytes([3, 5, 4, 3, 2]) + bytes(20) + bytes(range(1, 200)))
    put(h, "valid-nan", bytes(25) + b"\x80\x01\xff" * 40)
    put(h, "valid-metric-prob", bytes([0, 0, 0, 0, 6]) + bytes(20))  # 3 metrics; asks for "prob"
    for a in range(8):  # each attribute absent, variable-length, the other class, an array, another width, null, UTF-8
        for kind in range(1, 8):
            put(h, "attr%d-kind%d" % (a, kind), bytes(5) + bytes(a) + bytes([kind]) + bytes(19 - a) + b"\x04abcd" * 4)
    for d in range(12):  # each dataset absent, retyped, reranked, resized, both, a group, a dangling link
        for kind in range(1, 8):
            put(h, "ds%d-kind%d" % (d, kind), bytes(13 + d) + bytes([kind]) + bytes(11 - d) + b"\x05\x03\x02\x01\x06\x06")


def main():
    for h in ("fuzz_safetensors", "fuzz_config", "fuzz_job", "fuzz_tokenizer", "fuzz_results"):
        shutil.rmtree(os.path.join(OUT, h), ignore_errors=True)
    gen_safetensors()
    gen_config()
    gen_job()
    gen_tokenizer()
    gen_results()


if __name__ == "__main__":
    main()
