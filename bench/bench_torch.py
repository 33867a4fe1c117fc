#!/usr/bin/env python3
"""bench_torch: patchsweep's fast path against a TransformerLens-style PyTorch loop, in one run,
one core each.

The loop is how activation patching is usually written: for every (layer, head, position), one
full forward pass of the base prompts with a hook that overwrites that head's z at that position
with the source run's, batched over 8 prompts (8 patches per forward), float32, one thread. The
model is GPT-2-small-shaped (12 layers, 12 heads, d_model 768, d_mlp 3072, vocabulary 50257,
random weights), prompts of 24 tokens, logit difference — the shape bench_engine sweeps. Two
variants: as TransformerLens's HookedTransformer runs it (logits at every position, then the
last one read), and a leaner loop that unembeds the last position only. Each is timed on a
sample of (layer, head, position) triples; the cost per patch does not depend on which.

Reports the rates and the ratios. Skipped, saying so, where PyTorch is absent.
usage: /usr/bin/python3 bench/bench_torch.py [BENCH_ENGINE=build/bench/bench_engine] [forwards=24]"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
engine = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "bench", "bench_engine")
forwards = int(sys.argv[2]) if len(sys.argv) > 2 else 24
try:
    from torch_gpt2 import H, L, V, random_model, torch
except ImportError:
    print("bench_torch: skipped, PyTorch is not installed (Debian: python3-torch)")
    sys.exit(0)

T, B = 24, 8


with torch.no_grad():
    model = random_model()
    base = torch.randint(0, V, (B, T))
    source = base.clone()
    source[:, 3] = torch.randint(0, V, (B,))
    answer, wrong = base[:, -1], source[:, -1]
    cache = {}
    model(source, {l: (lambda z, l=l: cache.setdefault(l, z)) for l in range(L)}, False)

    def patched_metric(layer, head, pos, every_position):
        def hook(z):
            z = z.clone()
            z[:, pos, head] = cache[layer][:, pos, head]
            return z
        logits = model(base, {layer: hook}, every_position)
        return logits.gather(1, answer[:, None]) - logits.gather(1, wrong[:, None])

    rates = {}
    for every_position in (True, False):
        patched_metric(0, 0, 0, every_position)  # warm up
        t0 = time.perf_counter()
        for i in range(forwards):
            patched_metric(i % L, (i * 5) % H, (i * 7) % T, every_position)
        rates[every_position] = forwards * B / (time.perf_counter() - t0)

p = subprocess.run([engine, "36", "0"], capture_output=True, text=True, check=True)
fields = p.stdout.strip().splitlines()[-1].split()
ours, no_skip = float(fields[1]), float(fields[3])
print(f"bench_torch: GPT-2-small shape, z x position patches, T = {T}, one core each")
print(f"  PyTorch {torch.__version__} loops, one forward of {B} prompts per (layer, head, position), {forwards} forwards:")
print(f"    TransformerLens-style (logits at every position): {rates[True]:6.1f} patches/s")
print(f"    lean (logits at the last position only)         : {rates[False]:6.1f} patches/s")
print(f"  patchsweep fast path                              : {ours:6.1f} patches/s")
print(f"    (it skips the patches before the first corrupted token, whose effect is exactly 0; had it")
print(f"    computed them at its measured GFLOP/s: {no_skip:.1f} patches/s)")
print(f"  ratio: {ours / rates[True]:.1f}x the TransformerLens-style loop, {ours / rates[False]:.1f}x the lean loop")
print(f"  without the skip: {no_skip / rates[True]:.1f}x and {no_skip / rates[False]:.1f}x")
