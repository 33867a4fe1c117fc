#!/usr/bin/env python3
"""Golden gradients for the backward pass (run with /usr/bin/python3): dL/d(activation) for every
cached activation and the attention pattern, by PyTorch autograd through the float64 reference
model (transformer_ref.py), for one metric per file:

    tests/fixtures/golden/grads-<model>-<metric>.safetensors
      tokens [T], answer/wrong [1] (-1 when unused), clean [T] (the run KL compares with),
      and "L<l>.<site>" gradients, plus "L<l>.pattern" [H, T, T].
"""
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import transformer_ref as ref  # noqa: E402

CASES = [  # model, metric, tokens of the run, clean tokens (for kl), answer, wrong
    ("gpt2-tiny", "logit_diff", [5, 17, 3, 9, 60, 2, 17, 8, 33, 41, 7], None, 9, 12),
    ("gpt2-tiny", "prob", [5, 17, 3, 9, 60, 2, 17, 8, 33, 41, 7], None, "top", -1),
    ("llama-tiny", "kl", [1, 7, 12, 2, 9, 40, 7, 33, 2, 63], [1, 7, 33, 2, 9, 40, 7, 33, 2, 63], -1, -1),
    ("llama-tiny", "logprob", [1, 7, 12, 2, 9, 40, 7, 33, 2, 63], None, 33, -1),
    ("neox-tiny", "logit_diff", [3, 17, 41, 2, 9, 60, 17, 41, 2, 5, 11, 17], None, 41, 9),
]
SITES = ["resid_pre", "q", "k", "v", "pattern", "z", "attn_out", "resid_mid", "mlp_post", "mlp_out", "resid_post"]


def main():
    for model, metric, tokens, clean, answer, wrong in CASES:
        W, cfg = ref.load_model(os.path.join(HERE, "..", "fixtures", "models", model))
        clean_lp = None
        if clean is not None:
            clean_logits, _ = ref.forward(W, cfg, clean)
            clean_lp = torch.log_softmax(clean_logits[-1], dim=-1)
        if answer == "top":  # the model's own prediction, so that p(answer) is not vanishingly small
            answer = int(ref.forward(W, cfg, tokens)[0][-1].argmax())
        grads, _ = ref.activation_grads(W, cfg, tokens, metric, answer, wrong, clean_lp)
        out = {"tokens": ("F32", np.array(tokens, dtype=np.float32)),
               "clean": ("F32", np.array(clean or tokens, dtype=np.float32)),
               "answer": ("F32", np.array([answer], dtype=np.float32)),
               "wrong": ("F32", np.array([wrong], dtype=np.float32))}
        layers = cfg.get("n_layer", cfg.get("num_hidden_layers"))
        for l in range(layers):
            for site in SITES:
                g = grads[f"L{l}.{site}"]
                if site == "pattern":
                    # Masked entries (key after query) are not free variables of the model: their
                    # probability is 0 whatever the logits. Autograd still reports dz.v there;
                    # patchsweep defines G = 0 above the diagonal, so the reference does too.
                    g = torch.tril(g)
                out[f"L{l}.{site}"] = ("F32", g.numpy())
        st.write(os.path.join(HERE, "..", "fixtures", "golden", f"grads-{model}-{metric}.safetensors"), out)
        print(f"{model} {metric}: max |grad| {max(float(g.abs().max()) for g in grads.values()):.3g}")


if __name__ == "__main__":
    main()
