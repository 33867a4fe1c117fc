#!/usr/bin/env python3
"""bench_edges_torch: patchsweep's exact edge sweep against a PyTorch loop that patches one edge
per forward pass, in one run, one core each.

The loop: for each edge u -> v and position t, one forward pass of the base prompts (8 of them,
so 8 patches per forward, as bench_torch.py batches nodes) in which v's input row t is rebuilt
from x_v + (u^S - u^B) (docs/edges.md; u^S and u^B from one cached run of each), v's projection
alone reading it: a head's query, key or value slice, the MLP, or the final row for the logits.
The model is torch_gpt2's GPT-2-small shape, float32, one thread, prompts of 24 tokens, logit
difference read at the last position (the lean loop of bench_torch.py: the unembedding of the
last row alone). The edges are a sample spread over the layers, the kinds of input and the
positions; a forward pass costs the same whichever edge it patches.

patchsweep's side is bench_edges (a sample of the sweep's own work units, same shape): its
measured patches/s, and the whole sweep's rate predicted from the planner's FLOPs at that speed.
Reports the rates and the ratios, and the FLOPs ratio bench_edges counts. Skipped, saying so,
where PyTorch is absent.
usage: /usr/bin/python3 bench/bench_edges_torch.py [BENCH_EDGES=build/bench/bench_edges] [forwards=24] [stride=50]"""
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "bench", "bench_edges")
forwards = int(sys.argv[2]) if len(sys.argv) > 2 else 24
stride = sys.argv[3] if len(sys.argv) > 3 else "50"
try:
    from torch_gpt2 import D, H, L, V, random_model, torch
except ImportError:
    print("bench_edges_torch: skipped, PyTorch is not installed (Debian: python3-torch)")
    sys.exit(0)

T, B, DH = 24, 8, D // H
F = torch.nn.functional


def run(model, tokens, patch=None, record=None):
    """Logits at the last position. patch = (v, delta): v = (layer, "q"/"k"/"v", head),
    (layer, "mlp_in", -1) or (L, "logits", -1), delta [B, T, D] (zero off the patched rows).
    record: filled with every upstream node's output ("embed", (l, h), (l, "mlp"))."""
    v, delta = patch if patch else ((None, None, None), None)
    x = model.wte(tokens) + model.wpe(torch.arange(tokens.shape[1]))
    if record is not None:
        record["embed"] = x
    for l, blk in enumerate(model.blocks):
        qkv = blk.qkv(blk.ln1(x))
        if v[0] == l and v[1] in ("q", "k", "v"):  # v's slice alone reads the patched stream
            at = "qkv".index(v[1]) * D + v[2] * DH
            patched = blk.qkv(blk.ln1(x + delta))
            qkv = torch.cat([qkv[..., :at], patched[..., at:at + DH], qkv[..., at + DH:]], dim=-1)
        q, k, val = (y.view(B, T, H, DH).transpose(1, 2) for y in qkv.split(D, dim=-1))
        scores = q @ k.transpose(-1, -2) / math.sqrt(DH)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        z = (scores.softmax(-1) @ val).transpose(1, 2)  # [B, T, H, DH]
        if record is not None:  # head h's output: its slice of the output projection, no bias
            per_head = torch.einsum("bthe,dhe->bthd", z, blk.out.weight.view(D, H, DH))
            record.update({(l, h): per_head[:, :, h] for h in range(H)})
        x = x + blk.out(z.reshape(B, T, D))
        mlp_in = blk.ln2(x + delta) if v[0] == l and v[1] == "mlp_in" else blk.ln2(x)
        mlp = blk.down(F.gelu(blk.up(mlp_in), approximate="tanh"))
        if record is not None:
            record[(l, "mlp")] = mlp
        x = x + mlp
    last = x[:, -1] + delta[:, -1] if v[1] == "logits" else x[:, -1]
    return model.lnf(last) @ model.wte.weight.T


def sample_edges(n):
    """n edges (u, v) spread over the graph: v cycles through the kinds and layers, u through
    the upstream nodes written before v reads."""
    out = []
    for i in range(n):
        kind = ("q", "k", "v", "mlp_in", "logits")[i % 5]
        layer = L if kind == "logits" else (i * 7) % L
        ups = ["embed"] + [(l, h) for l in range(layer) for h in range(H)] + [(l, "mlp") for l in range(layer)]
        if kind == "mlp_in" and layer < L:
            ups += [(layer, h) for h in range(H)]
        out.append((ups[(i * 13) % len(ups)], (layer, kind, (i * 5) % H if kind in ("q", "k", "v") else -1), (i * 11) % T))
    return out


with torch.no_grad():
    model = random_model()
    base = torch.randint(0, V, (B, T))
    source = base.clone()
    source[:, 3] = torch.randint(0, V, (B,))
    answer, wrong = base[:, -1], source[:, -1]
    outs_base, outs_source = {}, {}
    run(model, base, record=outs_base)
    run(model, source, record=outs_source)

    def patched_metric(u, v, pos):
        delta = torch.zeros(B, T, D)
        delta[:, pos] = outs_source[u][:, pos] - outs_base[u][:, pos]
        logits = run(model, base, (v, delta))
        return logits.gather(1, answer[:, None]) - logits.gather(1, wrong[:, None])

    edges = sample_edges(forwards)
    patched_metric(*edges[0])  # warm up
    t0 = time.perf_counter()
    for edge in edges:
        patched_metric(*edge)
    torch_rate = forwards * B / (time.perf_counter() - t0)

p = subprocess.run([binary, stride], capture_output=True, text=True, check=True)
print(p.stdout.rstrip().rsplit("\n", 1)[0])
fields = p.stdout.strip().splitlines()[-1].split()
sample, whole, flops_ratio = float(fields[1]), float(fields[3]), float(fields[5])
print(f"bench_edges_torch: GPT-2-small shape, edge x position patches, T = {T}, one core each")
print(f"  PyTorch {torch.__version__} loop, one forward of {B} prompts per (edge, position), {forwards} forwards: "
      f"{torch_rate:6.1f} patches/s")
print(f"  patchsweep exact edge sweep: {sample:6.1f} patches/s on its sample of units; the whole sweep "
      f"predicted at {whole:.1f}")
print(f"  ratio: {sample / torch_rate:.1f}x the loop (whole sweep predicted: {whole / torch_rate:.1f}x); "
      f"FLOPs: the loop's one forward per patch is {flops_ratio:.1f}x the sweep's")
