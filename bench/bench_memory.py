#!/usr/bin/env python3
"""bench_memory: what the ranks of one node hold in memory during a sweep, measured in one run.

Generates a GPT-2-shaped model with random weights (d_model 512, 8 layers, vocabulary 8000:
~115 MB of float32) in a temporary folder, runs a job on it with N ranks (mpiexec), samples every
rank's /proc/<pid>/smaps_rollup mid-run, and reports per rank the resident set (RSS) and the
proportional set (PSS: shared pages divided among the processes sharing them), and the ratio of
the node's total PSS to what N private copies of the weights would need on top of it.

usage: /usr/bin/python3 bench/bench_memory.py [BINARY=build/patchsweep] [RANKS=4]"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import safetensors_io as st  # noqa: E402

binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "patchsweep"))
ranks = int(sys.argv[2]) if len(sys.argv) > 2 else 4


def memory(pid):
    out = {}
    for line in open(f"/proc/{pid}/smaps_rollup"):
        key, _, rest = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key] = int(rest.split()[0]) / 1024.0  # MB
    return out


with tempfile.TemporaryDirectory() as tmp:
    d, L, V, n = 512, 8, 8000, 64
    rng = np.random.default_rng(0)
    W = {"wte.weight": rng.standard_normal((V, d)) * 0.1, "wpe.weight": rng.standard_normal((n, d)) * 0.1,
         "ln_f.weight": np.ones(d), "ln_f.bias": np.zeros(d)}
    shapes = {"ln_1.weight": (d,), "ln_1.bias": (d,), "attn.c_attn.weight": (d, 3 * d), "attn.c_attn.bias": (3 * d,),
              "attn.c_proj.weight": (d, d), "attn.c_proj.bias": (d,), "ln_2.weight": (d,), "ln_2.bias": (d,),
              "mlp.c_fc.weight": (d, 4 * d), "mlp.c_fc.bias": (4 * d,), "mlp.c_proj.weight": (4 * d, d),
              "mlp.c_proj.bias": (d,)}
    for l in range(L):
        for k, shape in shapes.items():
            W[f"h.{l}.{k}"] = np.ones(shape) if k.endswith("weight") and len(shape) == 1 else rng.standard_normal(shape) * 0.02
    os.makedirs(os.path.join(tmp, "model"))
    st.write(os.path.join(tmp, "model", "model.safetensors"), {k: ("F32", v.astype(np.float32)) for k, v in W.items()})
    weights_mb = sum(v.size for v in W.values()) * 4 / 2**20
    json.dump({"model_type": "gpt2", "n_embd": d, "n_layer": L, "n_head": 8, "n_positions": n, "vocab_size": V},
              open(os.path.join(tmp, "model", "config.json"), "w"))
    prompts = [{"clean": [int(x) for x in rng.integers(0, V, 24)], "corrupt": [int(x) for x in rng.integers(0, V, 24)],
                "answer": 1, "wrong": 2} for _ in range(8)]
    json.dump({"model": "model", "prompts": prompts, "nodes": ["z", "mlp_out"], "output": "out.h5"},
              open(os.path.join(tmp, "job.json"), "w"))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.Popen(["mpiexec", "-n", str(ranks), "--oversubscribe", binary, "run", "job.json", "--quiet"],
                            cwd=tmp, env=env)
    samples = []
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
        pids = subprocess.run(["pgrep", "-f", f"{binary} run job.json"], capture_output=True, text=True).stdout.split()
        try:
            now = [memory(int(p)) for p in pids if int(p) != proc.pid]
        except OSError:
            continue
        now = [m for m in now if m.get("Rss", 0) > weights_mb]  # the ranks, once they hold the model
        if len(now) == ranks:
            samples.append(now)
    proc.wait()
    if not samples:
        sys.exit("bench_memory: the run ended before every rank could be sampled")
    peak = max(samples, key=lambda s: sum(m["Pss"] for m in s))
    rss = [m["Rss"] for m in peak]
    pss = [m["Pss"] for m in peak]
    total_pss = sum(pss)
    private_copies = total_pss + (ranks - 1) * weights_mb  # every rank with its own copy instead
    print(f"bench_memory: {ranks} ranks on one node, model weights {weights_mb:.0f} MB (float32)")
    print(f"  per rank: RSS {min(rss):.0f}-{max(rss):.0f} MB, PSS {min(pss):.0f}-{max(pss):.0f} MB")
    print(f"  node total (sum of PSS): {total_pss:.0f} MB; with a private copy of the weights per rank it would be "
          f"~{private_copies:.0f} MB: {private_copies / total_pss:.2f}x more")
