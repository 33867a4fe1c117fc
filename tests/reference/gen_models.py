#!/usr/bin/env python3
"""Generates the test models and their golden activations (run with Debian's /usr/bin/python3).

    /usr/bin/python3 tests/reference/gen_models.py

Writes tests/fixtures/models/<name>/ (config.json, model.safetensors, maybe tokenizer.json) and
tests/fixtures/golden/<name>.safetensors holding the token sequence ("tokens", stored as F32),
the logits and every cached activation from the independent float64 reference in
transformer_ref.py. Also golden logits for ../shared/models/stories260K when it is present.
The outputs are committed; CI does not rerun this script.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import transformer_ref as ref  # noqa: E402

FIX = os.path.join(HERE, "..", "fixtures")
MODELS = os.path.join(FIX, "models")
GOLDEN = os.path.join(FIX, "golden")


def gaussian(rng, shape, std):
    return (rng.standard_normal(shape) * std).astype(np.float32)


def gpt2_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    d, V, L, n_ctx = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"], cfg["n_positions"]
    dm = 4 * d
    W = {"wte.weight": gaussian(rng, (V, d), 1.0), "wpe.weight": gaussian(rng, (n_ctx, d), 0.5)}
    for l in range(L):
        p = f"h.{l}."
        W[p + "ln_1.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "ln_1.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "attn.c_attn.weight"] = gaussian(rng, (d, 3 * d), 2.0 / np.sqrt(d))  # Conv1D [in, out]
        W[p + "attn.c_attn.bias"] = gaussian(rng, (3 * d,), 0.2)
        W[p + "attn.c_proj.weight"] = gaussian(rng, (d, d), 1.0 / np.sqrt(d))
        W[p + "attn.c_proj.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "ln_2.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "ln_2.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "mlp.c_fc.weight"] = gaussian(rng, (d, dm), 1.0 / np.sqrt(d))
        W[p + "mlp.c_fc.bias"] = gaussian(rng, (dm,), 0.2)
        W[p + "mlp.c_proj.weight"] = gaussian(rng, (dm, d), 1.0 / np.sqrt(dm))
        W[p + "mlp.c_proj.bias"] = gaussian(rng, (d,), 0.2)
    W["ln_f.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
    W["ln_f.bias"] = gaussian(rng, (d,), 0.2)
    return W


def llama_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    d, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, Hkv, dm = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"]
    dh = d // H
    W = {"model.embed_tokens.weight": gaussian(rng, (V, d), 1.0)}
    for l in range(L):
        p = f"model.layers.{l}."
        W[p + "input_layernorm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "self_attn.q_proj.weight"] = gaussian(rng, (H * dh, d), 2.0 / np.sqrt(d))
        W[p + "self_attn.k_proj.weight"] = gaussian(rng, (Hkv * dh, d), 2.0 / np.sqrt(d))
        W[p + "self_attn.v_proj.weight"] = gaussian(rng, (Hkv * dh, d), 1.0 / np.sqrt(d))
        W[p + "self_attn.o_proj.weight"] = gaussian(rng, (d, H * dh), 1.0 / np.sqrt(d))
        W[p + "post_attention_layernorm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "mlp.gate_proj.weight"] = gaussian(rng, (dm, d), 1.0 / np.sqrt(d))
        W[p + "mlp.up_proj.weight"] = gaussian(rng, (dm, d), 1.0 / np.sqrt(d))
        W[p + "mlp.down_proj.weight"] = gaussian(rng, (d, dm), 1.0 / np.sqrt(dm))
    W["model.norm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
    if not cfg.get("tie_word_embeddings", False):
        W["lm_head.weight"] = gaussian(rng, (V, d), 1.0 / np.sqrt(d) * 3.0)
    return W


def neox_weights(cfg, seed):
    rng = np.random.default_rng(seed)
    d, V, L, dm = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    W = {"gpt_neox.embed_in.weight": gaussian(rng, (V, d), 1.0)}
    for l in range(L):
        p = f"gpt_neox.layers.{l}."
        W[p + "input_layernorm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "input_layernorm.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "attention.query_key_value.weight"] = gaussian(rng, (3 * d, d), 2.0 / np.sqrt(d))
        W[p + "attention.query_key_value.bias"] = gaussian(rng, (3 * d,), 0.2)
        W[p + "attention.dense.weight"] = gaussian(rng, (d, d), 1.0 / np.sqrt(d))
        W[p + "attention.dense.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "post_attention_layernorm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
        W[p + "post_attention_layernorm.bias"] = gaussian(rng, (d,), 0.2)
        W[p + "mlp.dense_h_to_4h.weight"] = gaussian(rng, (dm, d), 1.0 / np.sqrt(d))
        W[p + "mlp.dense_h_to_4h.bias"] = gaussian(rng, (dm,), 0.2)
        W[p + "mlp.dense_4h_to_h.weight"] = gaussian(rng, (d, dm), 1.0 / np.sqrt(dm))
        W[p + "mlp.dense_4h_to_h.bias"] = gaussian(rng, (d,), 0.2)
    W["gpt_neox.final_layer_norm.weight"] = 1.0 + gaussian(rng, (d,), 0.2)
    W["gpt_neox.final_layer_norm.bias"] = gaussian(rng, (d,), 0.2)
    W["embed_out.weight"] = gaussian(rng, (V, d), 1.0 / np.sqrt(d) * 3.0)
    return W


def write_model(name, cfg, W, dtype="F32", shards=0, extra=None):
    folder = os.path.join(MODELS, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    tensors = {k: (dtype, v) for k, v in W.items()}
    tensors.update(extra or {})
    if shards:
        names = sorted(tensors)
        weight_map = {}
        for s in range(shards):
            part = names[s::shards]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            st.write(os.path.join(folder, fname), {k: tensors[k] for k in part}, {"format": "pt"})
            weight_map.update({k: fname for k in part})
        with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=2)
    else:
        st.write(os.path.join(folder, "model.safetensors"), tensors, {"format": "pt"})
    return folder


def stored_values(W, dtype):
    """What a loader reads back for each weight after the dtype conversion."""
    if dtype == "F16":
        return {k: v.astype(np.float16).astype(np.float32) for k, v in W.items()}
    if dtype == "BF16":
        return {k: st.bf16_round(v) for k, v in W.items()}
    return W


def write_golden(name, cfg, W, tokens, with_acts=True):
    Wt = {k: torch.from_numpy(v.astype(np.float64)) for k, v in W.items()}
    logits, acts = ref.forward(Wt, cfg, tokens)
    out = {"tokens": ("F32", np.array(tokens, dtype=np.float32)), "logits": ("F32", logits.numpy())}
    if with_acts:
        out.update({k: ("F32", v.numpy()) for k, v in acts.items()})
    os.makedirs(GOLDEN, exist_ok=True)
    st.write(os.path.join(GOLDEN, name + ".safetensors"), out)


def byte_level_tokenizer(V):
    """A byte-level BPE-style vocabulary: 'Ġ' marks a leading space, 'Ċ' a newline."""
    vocab = {"Ċ": 0, "<|endoftext|>": V - 1}
    for i in range(1, V - 1):
        vocab[f"Ġw{i}" if i % 2 else f"w{i}"] = i
    return {"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []},
            "decoder": {"type": "ByteLevel"}, "added_tokens": []}


def main():
    gpt2_cfg = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 32,
                "vocab_size": 64, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}
    W = gpt2_weights(gpt2_cfg, seed=1)
    # Old checkpoints carry a causal-mask buffer per layer; the loader must ignore it.
    masks = {f"h.{l}.attn.bias": ("U8", np.tril(np.ones((1, 1, 32, 32), dtype=np.uint8))) for l in range(2)}
    folder = write_model("gpt2-tiny", gpt2_cfg, W, extra=masks)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        json.dump(byte_level_tokenizer(64), f)
    tokens = [5, 17, 3, 9, 60, 2, 17, 3, 33, 41, 0, 5, 17, 3, 9, 12]
    write_golden("gpt2-tiny", gpt2_cfg, W, tokens)
    for dtype in ("F16", "BF16"):
        name = "gpt2-tiny-" + dtype.lower()
        write_model(name, gpt2_cfg, W, dtype=dtype)
        write_golden(name, gpt2_cfg, stored_values(W, dtype), tokens, with_acts=False)

    llama_cfg = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64,
                 "max_position_embeddings": 32, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                 "hidden_act": "silu", "tie_word_embeddings": False}
    W = llama_weights(llama_cfg, seed=2)
    write_model("llama-tiny", llama_cfg, W)
    write_model("llama-tiny-sharded", llama_cfg, W, shards=3)
    tokens = [1, 7, 33, 2, 9, 40, 7, 33, 2, 63, 11, 7, 33, 20]
    write_golden("llama-tiny", llama_cfg, W, tokens)

    # Pythia's layout: parallel residual, rotary on half of each head here (Pythia: a quarter),
    # exact GELU; old checkpoints also carry mask and inv_freq buffers, which loaders ignore.
    neox_cfg = {"model_type": "gpt_neox", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                "num_attention_heads": 4, "vocab_size": 64, "max_position_embeddings": 32, "layer_norm_eps": 1e-5,
                "rotary_pct": 0.5, "rotary_emb_base": 10000, "hidden_act": "gelu", "use_parallel_residual": True,
                "tie_word_embeddings": False}
    W = neox_weights(neox_cfg, seed=3)
    buffers = {}
    for l in range(2):
        buffers[f"gpt_neox.layers.{l}.attention.bias"] = ("U8", np.tril(np.ones((1, 1, 32, 32), dtype=np.uint8)))
        buffers[f"gpt_neox.layers.{l}.attention.rotary_emb.inv_freq"] = ("F32", np.ones(2, dtype=np.float32))
    write_model("neox-tiny", neox_cfg, W, extra=buffers)
    tokens = [3, 17, 41, 2, 9, 60, 17, 41, 2, 5, 11, 17, 41, 30]
    write_golden("neox-tiny", neox_cfg, W, tokens)

    stories = os.path.join(HERE, "..", "..", "..", "shared", "models", "stories260K")
    if os.path.isdir(stories):
        Wt, cfg = ref.load_model(stories)
        rng = np.random.default_rng(3)
        out = {}
        for i, T in enumerate((8, 24, 64)):
            tokens = [1] + list(rng.integers(3, 512, size=T - 1))
            logits, _ = ref.forward(Wt, cfg, tokens)
            out[f"tokens{i}"] = ("F32", np.array(tokens, dtype=np.float32))
            out[f"logits{i}"] = ("F32", logits.numpy())
        st.write(os.path.join(GOLDEN, "stories260K.safetensors"), out)
    else:
        print("note: ../shared/models/stories260K not found; its golden file was not regenerated")


if __name__ == "__main__":
    main()
