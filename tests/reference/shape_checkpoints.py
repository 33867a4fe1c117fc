#!/usr/bin/env python3
"""Model folders of real models' shapes with no weights in them: config.json and a
model.safetensors whose header lists every tensor (BF16, as the published checkpoints store
them) and whose data region is a hole (a sparse file: the full size on paper, nothing on disk).
`patchsweep plan` reads headers only, so it plans for these as for the real models.

    /usr/bin/python3 tests/reference/shape_checkpoints.py OUT_DIR [gpt2-small pythia-1.4b llama-2-7b]

The tensor names and shapes are gen_models.py's, called with a stand-in for the random arrays."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_models  # noqa: E402

CONFIGS = {
    "gpt2-small": ("gpt2", {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024,
                            "vocab_size": 50257, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}),
    "pythia-1.4b": ("neox", {"model_type": "gpt_neox", "hidden_size": 2048, "num_hidden_layers": 24,
                             "num_attention_heads": 16, "intermediate_size": 8192, "vocab_size": 50304,
                             "max_position_embeddings": 2048, "rotary_pct": 0.25, "rotary_emb_base": 10000,
                             "layer_norm_eps": 1e-5, "use_parallel_residual": True, "hidden_act": "gelu",
                             "tie_word_embeddings": False}),
    "llama-2-7b": ("llama", {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32,
                             "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008,
                             "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                             "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": False,
                             "bos_token_id": 1}),
}


class Shape:
    """What gen_models' weight functions build, without the numbers: a shape that survives
    `1.0 + x`."""

    def __init__(self, shape):
        self.shape = tuple(int(n) for n in shape)

    def __radd__(self, other):
        return self


def tensor_shapes(kind, cfg):
    gen_models.gaussian = lambda rng, shape, std: Shape(shape)
    return {name: t.shape for name, t in getattr(gen_models, f"{kind}_weights")(cfg, 0).items()}


def write_folder(folder, kind, cfg):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    header, offset = {}, 0
    for name, shape in sorted(tensor_shapes(kind, cfg).items()):
        size = 2
        for n in shape:
            size *= n
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = os.path.join(folder, "model.safetensors")
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text)
        f.truncate(8 + len(text) + offset)  # the data: a hole of the right size
    return offset // 2  # parameters


if __name__ == "__main__":
    out = sys.argv[1]
    for name in sys.argv[2:] or list(CONFIGS):
        kind, cfg = CONFIGS[name]
        print(f"{name}: {write_folder(os.path.join(out, name), kind, cfg):,} parameters")
