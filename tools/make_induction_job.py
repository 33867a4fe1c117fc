#!/usr/bin/env python3
"""Writes jobs/induction.json, the demo job on models/induction-2l (any python3, no packages).

Each prompt is <bos> A A[:7], A ten distinct random words: the model must complete the second
copy with A[7], which only induction can find. The corrupt prompt replaces the first occurrence
of A by ten other words, B: answer A[7], wrong B[7] (what the same position held there).
Denoising patches clean activations into the corrupt run; at the last position it restores the
induction head, at position 8 (right after the first occurrence of the last word, A[6]) the
previous-token head whose output the induction head's key reads."""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(0)
prompts = []
for _ in range(32):
    a = rng.sample(range(1, 64), 10)
    b = rng.sample([w for w in range(1, 64) if w not in a], 10)
    prompts.append({"clean": [0] + a + a[:7], "corrupt": [0] + b + a[:7], "answer": a[7], "wrong": b[7]})
job = {
    "description": "Induction on the embedded 2-layer model: which components complete <bos> A A[:7] with A[7]?",
    "model": "../models/induction-2l",
    "prompts": prompts,
    "corruption": "pair",
    "direction": "denoise",
    "metric": "logit_diff",
    "nodes": ["resid_pre", "attn_out", "mlp_out", "z", "q", "k", "v", "mlp_post"],
    "positions": "each",
    "estimates": ["atp", "atp_qk", "atp_star"],
    "output": "../results/induction.h5",
}
with open(os.path.join(HERE, "..", "jobs", "induction.json"), "w") as f:
    json.dump(job, f, indent=1)
