#!/usr/bin/env python3
"""Writes jobs/ioi.json, an indirect-object job on models/ioi-small (any python3, no packages).

Prompts use only what the model never trained on: its two held-out templates and held-out name
pairs. Clean: "when A and B ran to the beach , B showed a shell to" (answer A, the name said
once). Corrupt: the repeated name swapped, "..., A showed a shell to" (answer B). Metric:
logit(A) - logit(B); denoising restores the clean answer."""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
vocab = json.load(open(os.path.join(HERE, "..", "models", "ioi-small", "tokenizer.json")))["model"]["vocab"]
templates = [
    "when {A} and {B} ran to the beach , {S} showed a shell to",
    "while {A} and {B} stayed at the hotel , {S} lent a pen to",
]
names = [w for w, i in sorted(vocab.items(), key=lambda kv: kv[1]) if 1 <= i <= 30]
rng = random.Random(0)
prompts = []
while len(prompts) < 24:
    a, b = rng.sample(names, 2)
    if (vocab[a] + 2 * vocab[b]) % 5 != 0:  # held-out name pairs only
        continue
    text = templates[len(prompts) % 2]
    clean = [0] + [vocab[w] for w in text.format(A=a, B=b, S=b).split()]
    corrupt = [0] + [vocab[w] for w in text.format(A=a, B=b, S=a).split()]
    prompts.append({"clean": clean, "corrupt": corrupt, "answer": vocab[a], "wrong": vocab[b]})
job = {
    "description": "Indirect object identification on the embedded 3-layer model, held-out templates and names",
    "model": "../models/ioi-small",
    "prompts": prompts,
    "corruption": "pair",
    "direction": "denoise",
    "metric": "logit_diff",
    "nodes": ["resid_pre", "attn_out", "mlp_out", "z", "q", "k", "v"],
    "positions": "each",
    "estimates": ["atp", "atp_qk", "atp_star"],
    "output": "../results/ioi.h5",
}
with open(os.path.join(HERE, "..", "jobs", "ioi.json"), "w") as f:
    json.dump(job, f, indent=1)
