#!/usr/bin/env python3
"""Generates the corpus of malformed model folders (run with /usr/bin/python3).

Each case is tests/fixtures/malformed/<case>/ holding config.json and model files that break
exactly one rule; tests/fixtures/malformed/cases.json maps the case to a fragment the error
line must contain. Loading any of them must fail with exit status 2 and one line, never crash.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402

OUT = os.path.join(HERE, "..", "fixtures", "malformed")

CONFIG = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16, "max_position_embeddings": 16,
          "rms_norm_eps": 1e-5, "tie_word_embeddings": True}


def weights():
    rng = np.random.default_rng(0)
    d, dm, V, kvd = 8, 8, 16, 4
    p = "model.layers.0."
    shapes = {"model.embed_tokens.weight": (V, d), p + "input_layernorm.weight": (d,),
              p + "self_attn.q_proj.weight": (d, d), p + "self_attn.k_proj.weight": (kvd, d),
              p + "self_attn.v_proj.weight": (kvd, d), p + "self_attn.o_proj.weight": (d, d),
              p + "post_attention_layernorm.weight": (d,), p + "mlp.gate_proj.weight": (dm, d),
              p + "mlp.up_proj.weight": (dm, d), p + "mlp.down_proj.weight": (d, dm), "model.norm.weight": (d,)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def raw_file(header, data):
    """A safetensors file from a header given as text or dict and raw data bytes."""
    text = header if isinstance(header, (bytes, str)) else json.dumps(header)
    text = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(text)) + text + data


def good_header_and_data(W):
    header, data = {}, b""
    for name in sorted(W):
        blob = W[name].tobytes()
        header[name] = {"dtype": "F32", "shape": list(W[name].shape), "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    return header, data


def case(name, expect, model_bytes=None, config=CONFIG, files=None):
    folder = os.path.join(OUT, name)
    os.makedirs(folder)
    if config is not None:
        with open(os.path.join(folder, "config.json"), "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
    if model_bytes is not None:
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(model_bytes)
    for fname, content in (files or {}).items():
        with open(os.path.join(folder, fname), "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    return name, expect


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    W = weights()
    header, data = good_header_and_data(W)
    q = "model.layers.0.self_attn.q_proj.weight"
    cases = []

    cases.append(case("empty_file", "empty file", b""))
    cases.append(case("truncated_header", "too short", b"\x10\x00\x00"))
    cases.append(case("header_past_eof", "past the end of the file", struct.pack("<Q", 10_000) + b"{}"))
    cases.append(case("json_syntax", "not valid JSON", raw_file('{"a": [1, 2', data)))
    cases.append(case("non_object_header", "not a JSON object", raw_file("[1, 2, 3]", data)))

    h = json.loads(json.dumps(header))
    k = "model.layers.0.self_attn.k_proj.weight"
    h[k]["data_offsets"] = [h[q]["data_offsets"][0] + 16, h[q]["data_offsets"][0] + 16 + 128]
    cases.append(case("overlapping_offsets", "overlap", raw_file(h, data)))

    h = json.loads(json.dumps(header))
    h[q]["dtype"] = "I32"
    cases.append(case("wrong_dtype", "expected F32, F16 or BF16", raw_file(h, data)))

    h = json.loads(json.dumps(header))
    h[q]["dtype"] = "F99"
    cases.append(case("unknown_dtype", "unknown dtype", raw_file(h, data)))

    h = json.loads(json.dumps(header))
    h[q]["shape"] = [16, 4]  # same byte count, wrong shape
    cases.append(case("wrong_shape", "expected [8, 8]", raw_file(h, data)))

    h = json.loads(json.dumps(header))
    h[q]["shape"] = [8, 9]  # bytes no longer match the shape
    cases.append(case("offsets_not_matching_shape", "need", raw_file(h, data)))

    h = json.loads(json.dumps(header))
    end = h[q]["data_offsets"][1]
    h[q]["data_offsets"] = [len(data) - 100, len(data) + 156]
    cases.append(case("offsets_past_data", "run past the data area", raw_file(h, data)))

    W2 = dict(W)
    del W2["model.norm.weight"]
    h2, d2 = good_header_and_data(W2)
    cases.append(case("missing_tensor", "missing tensor \"model.norm.weight\"", raw_file(h2, d2)))

    text = json.dumps(header)
    dup = text[:-1] + ', "' + q + '": ' + json.dumps(header[q]) + "}"
    cases.append(case("duplicate_tensor", "appears twice", raw_file(dup, data)))

    h = json.loads(json.dumps(header))
    h[q]["shape"] = "8x8"
    cases.append(case("shape_not_array", "missing array \"shape\"", raw_file(h, data)))

    bad = dict(W)
    bad[q] = W[q].copy()
    bad[q][3, 3] = np.nan
    h3, d3 = good_header_and_data(bad)
    cases.append(case("nan_weight", "non-finite", raw_file(h3, d3)))

    cases.append(case("truncated_data", "run past the data area", raw_file(header, data[:-64])))
    cases.append(case("no_weights_file", "no model.safetensors", None))
    cases.append(case("config_syntax", "JSON syntax error", raw_file(header, data), config='{"model_type": "llama",'))
    cfg = dict(CONFIG)
    del cfg["hidden_size"]
    cases.append(case("config_missing_key", "missing key \"hidden_size\"", raw_file(header, data), config=cfg))
    cases.append(case("config_bad_type", "\"num_hidden_layers\" must be a number", raw_file(header, data),
                      config=dict(CONFIG, num_hidden_layers="one")))
    cases.append(case("unsupported_model_type", "not supported", raw_file(header, data),
                      config=dict(CONFIG, model_type="mamba")))
    cases.append(case("heads_not_dividing", "cannot share", raw_file(header, data),
                      config=dict(CONFIG, num_key_value_heads=3)))
    # GPT-NeoX: rotary_pct that leaves an odd number of rotary dims; a fused qkv of the wrong shape
    neox = {"model_type": "gpt_neox", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 16, "max_position_embeddings": 16, "rotary_pct": 0.25}
    cases.append(case("neox_odd_rotary", "rotary dimensions 1 must be even", raw_file(header, data), config=neox))
    rng = np.random.default_rng(1)
    p = "gpt_neox.layers.0."
    shapes = {"gpt_neox.embed_in.weight": (16, 8), p + "input_layernorm.weight": (8,), p + "input_layernorm.bias": (8,),
              p + "attention.query_key_value.weight": (8, 8), p + "attention.query_key_value.bias": (24,)}
    neox_header, neox_data = good_header_and_data({k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()})
    cases.append(case("neox_qkv_shape", "expected [24, 8]", raw_file(neox_header, neox_data), config=dict(neox, rotary_pct=0.5)))
    index = {"weight_map": {name: "model-00001-of-00002.safetensors" for name in W}}
    index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors"
    cases.append(case("shard_missing", "cannot open", None,
                      files={"model.safetensors.index.json": json.dumps(index),
                             "model-00001-of-00002.safetensors": raw_file(header, data)}))
    cases.append(case("shard_lacks_tensor", "listed in the index but missing", None,
                      files={"model.safetensors.index.json": json.dumps(
                          {"weight_map": dict({n: "a.safetensors" for n in W}, extra="a.safetensors")}),
                          "a.safetensors": raw_file(header, data)}))

    # Numbers that would wrap, and config keys whose absence explains a shape
    cases.append(case("config_vocab_wraps", '"vocab_size" must be an integer from 1 to 1073741824', raw_file(header, data),
                      config=dict(CONFIG, vocab_size=2**32 + 16)))
    cases.append(case("config_huge_vocab", "from config.json", raw_file(header, data), config=dict(CONFIG, vocab_size=30_000_000)))
    cfg = dict(CONFIG)
    del cfg["num_key_value_heads"]
    cases.append(case("config_missing_kv_heads", "assumed: num_key_value_heads = num_attention_heads = 2", raw_file(header, data),
                      config=cfg))
    cfg = dict(CONFIG)
    del cfg["tie_word_embeddings"]
    cases.append(case("config_missing_tie", "tie_word_embeddings", raw_file(header, data), config=cfg))
    cases.append(case("config_duplicate_key", 'duplicate key "num_hidden_layers"', raw_file(header, data),
                      config=json.dumps(CONFIG)[:-1] + ', "num_hidden_layers": 2}'))
    h = json.loads(json.dumps(header))
    h[q]["shape"] = [9.3e18, 1]
    cases.append(case("shape_entry_huge", "below 2^53", raw_file(h, data)))
    # Found by fuzzing (tests/fuzz/crashes/fuzz_safetensors/shape-not-representable): a shape entry
    # that JSON reads as infinity has no integer value at all.
    text = json.dumps(header).replace('"shape": [8, 8]', '"shape": [1e400, 8]', 1)
    cases.append(case("shape_entry_infinite", "below 2^53", raw_file(text, data)))
    # Found by fuzzing (tests/fuzz/crashes/fuzz_config/): sizes each within bounds whose product
    # is not: GPT-2's 4 n_embd, and heads x head size.
    gpt2 = {"model_type": "gpt2", "n_embd": 536870912, "n_layer": 1, "n_head": 1, "vocab_size": 1}
    cases.append(case("config_mlp_too_wide", "an MLP of 2147483648 is more than any model has", raw_file(header, data),
                      config=gpt2))
    cases.append(case("config_heads_too_large", "65536 heads of size 65536 are more than any model has",
                      raw_file(header, data), config=dict(CONFIG, num_attention_heads=65536, head_dim=65536)))

    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(dict(cases), f, indent=2)
    print(f"{len(cases)} malformed models in {OUT}")


if __name__ == "__main__":
    main()
