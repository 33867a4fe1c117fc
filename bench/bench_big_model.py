#!/usr/bin/env python3
"""bench_big_model: a ~1.1B-parameter Llama-shaped model (TinyLlama-1.1B's shapes: 22 layers, width
2048, 32 query heads sharing 4 key/value heads, MLP 5632, vocabulary 32000, untied unembedding)
with random weights, stored as BF16 shards with a model.safetensors.index.json, swept on 2 ranks
that share the node's weights, checked against the float64 PyTorch reference, with memory and time
measured in the same run. Too slow for CI (minutes, and ~9 GB for the float64 reference): run by
hand, numbers in docs/sizing.md.

  1. generates the folder (once: reused if DIR already holds it; ~2.2 GB on disk);
  2. `patchsweep plan` of the job (every head's z and every resid_pre at the last two positions of
     one 12-token prompt, pair corruption, logit_diff, AtP beside the exact effects);
  3. `mpiexec -n 2 patchsweep run`, sampling every rank's /proc/<pid>/status and smaps_rollup:
     peak RSS (VmHWM), resident shared memory (RssShmem: the node's weight window, mapped by
     both), PSS; wall time and the file's own seconds;
  4. the reference (tests/reference/gen_effects.py's JobReference: float64, one full forward
     pass per patch on the widened BF16 weights) for a few cells, the baseline and the source
     metric, against the file.

usage: OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/bench_big_model.py [BINARY=build/patchsweep] [DIR=/tmp/patchsweep-llama-1b]"""
import json
import os
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import safetensors_io as st  # noqa: E402

binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "build", "patchsweep"))
folder = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "/tmp/patchsweep-llama-1b")
CFG = {"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 22, "num_attention_heads": 32,
       "num_key_value_heads": 4, "intermediate_size": 5632, "vocab_size": 32000, "max_position_embeddings": 2048,
       "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False, "bos_token_id": 1}
SHARD_BYTES = 600 * 2**20


def tensor_shapes(c):
    d, dm, V, L = c["hidden_size"], c["intermediate_size"], c["vocab_size"], c["num_hidden_layers"]
    kv = c["num_key_value_heads"] * d // c["num_attention_heads"]
    yield "model.embed_tokens.weight", (V, d)
    for l in range(L):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", (d,)
        yield p + "self_attn.q_proj.weight", (d, d)
        yield p + "self_attn.k_proj.weight", (kv, d)
        yield p + "self_attn.v_proj.weight", (kv, d)
        yield p + "self_attn.o_proj.weight", (d, d)
        yield p + "post_attention_layernorm.weight", (d,)
        yield p + "mlp.gate_proj.weight", (dm, d)
        yield p + "mlp.up_proj.weight", (dm, d)
        yield p + "mlp.down_proj.weight", (d, dm)
    yield "model.norm.weight", (d,)
    yield "lm_head.weight", (V, d)


def generate():
    """Normal(0, 0.02) matrices and embeddings, norm gains around 1, all BF16, in shards of ~600 MB."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(2026)
    shards, shard, size, params = [], {}, 0, 0
    for name, shape in tensor_shapes(CFG):
        scale = 1.0 if name == "model.embed_tokens.weight" else 0.02
        a = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)
        if len(shape) == 1:
            a = 1.0 + a
        shard[name] = ("BF16", a)
        size += a.size * 2
        params += a.size
        if size >= SHARD_BYTES:
            shards.append(shard)
            shard, size = {}, 0
    shards.append(shard)
    weight_map = {}
    for i, s in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        st.write(os.path.join(folder, file), s)
        weight_map.update({name: file for name in s})
    json.dump({"metadata": {"total_size": 2 * params}, "weight_map": weight_map},
              open(os.path.join(folder, "model.safetensors.index.json"), "w"), indent=1)
    json.dump(CFG, open(os.path.join(folder, "config.json"), "w"), indent=1)
    return params


def status(pid):
    """Peak RSS; resident anonymous, file-backed (the checkpoint, mapped while rank 0 reads it) and
    shared (the weight window) memory; PSS; in MB."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(rest.split()[0]) / 1024.0
    for line in open(f"/proc/{pid}/smaps_rollup"):
        key, _, rest = line.partition(":")
        if key == "Pss":
            out[key] = int(rest.split()[0]) / 1024.0
    return out


if not os.path.exists(os.path.join(folder, "config.json")):
    t0 = time.time()
    n = generate()
    print(f"generated {n:,} parameters as BF16 shards in {folder} ({time.time() - t0:.0f} s)")
params = sum(int(np.prod(s)) for _, s in tensor_shapes(CFG))

rng = np.random.default_rng(7)
T = 12
clean = [1] + [int(x) for x in rng.integers(2, CFG["vocab_size"], T - 1)]
corrupt = list(clean)
corrupt[4] = int(rng.integers(2, CFG["vocab_size"]))
answer, wrong = (int(x) for x in rng.integers(2, CFG["vocab_size"], 2))
job = {"model": folder, "prompts": [{"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong}],
       "nodes": ["z", "resid_pre"], "positions": [-2, -1], "estimates": ["atp"], "output": os.path.join(folder, "out.h5")}
job_path = os.path.join(folder, "job.json")
json.dump(job, open(job_path, "w"))
for stale in (job["output"], job["output"] + ".creating"):
    if os.path.exists(stale):
        os.remove(stale)

plan = subprocess.run([binary, "plan", job_path, "--ranks-per-node", "2"], capture_output=True, text=True)
print(f"{params:,} parameters ({2 * params / 1e9:.2f} GB in BF16)")
print("plan: " + "\n      ".join(line for line in plan.stdout.splitlines() if line.split()[0] in ("patches", "FLOPs", "memory")))

env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
start = time.time()
proc = subprocess.Popen(["mpiexec", "-n", "2", "--oversubscribe", binary, "run", job_path, "--quiet"], env=env)
peak = {}  # per rank, the largest value each figure reached over the samples
while proc.poll() is None:
    time.sleep(0.5)
    pids = subprocess.run(["pgrep", "-f", f"{binary} run {job_path}"], capture_output=True, text=True).stdout.split()
    for p in pids:
        if int(p) == proc.pid:
            continue
        try:
            now = status(p)
        except OSError:
            continue
        peak[p] = {k: max(v, peak.get(p, {}).get(k, 0.0)) for k, v in now.items()}
wall = time.time() - start
if proc.returncode != 0:
    sys.exit(f"bench_big_model: the run failed (exit {proc.returncode})")
ranks = [m for m in peak.values() if m.get("VmHWM", 0) > 100]
with h5py.File(job["output"], "r") as f:
    names = [n.decode() for n in f["nodes/name"][()]]
    positions = f["prompts/position"][0]
    exact, atp = f["effects/exact"][0, :, :, 0], f["effects/atp"][0, :, :, 0]
    base, source = f["baseline/base"][0, 0], f["baseline/source"][0, 0]
    seconds = {k: float(f.attrs[k]) for k in ("seconds_runs", "seconds_exact", "seconds_atp") if k in f.attrs}
print(f"run on 2 ranks: {wall:.1f} s wall (MPI start, loading, sweep, file); the file's seconds: "
      + ", ".join(f"{k[8:]} {v:.1f}" for k, v in sorted(seconds.items())))
print("  per rank, the largest value each figure reached in 0.5 s samples (MB):")
for i, m in enumerate(sorted(ranks, key=lambda m: -m["VmHWM"])):
    print(f"  rank {i}: peak RSS {m['VmHWM']:.0f}; shared (the weight window) {m.get('RssShmem', 0):.0f}, anonymous "
          f"{m.get('RssAnon', 0):.0f}, file-backed (the checkpoint, mapped while read) {m.get('RssFile', 0):.0f}; "
          f"PSS {m.get('Pss', 0):.0f}")
print(f"  {len(names)} nodes x {len(positions)} positions; largest |exact effect| {np.nanmax(np.abs(exact)):.4g}")

# The reference: float64, one full forward pass per patch, on the BF16 values widened.
import torch  # noqa: E402

torch.set_num_threads(1)
import gen_effects  # noqa: E402

t0 = time.time()
ref = gen_effects.JobReference(job_path)
runs = ref.prompt(0)
order = np.argsort(-np.abs(np.nan_to_num(exact)), axis=None)
cells = [np.unravel_index(order[0], exact.shape), np.unravel_index(order[1], exact.shape),
         (names.index("L21.H31.z"), 1), (names.index("L11.H7.z"), 0), (names.index("L5.H0.z"), 1),
         (names.index("L0.resid_pre"), 0)]  # the last is exactly 0: position 10 is the same token in both prompts
worst, scale = 0.0, max(1.0, abs(base))
print(f"reference (float64, {time.time() - t0:.0f} s to load and run the prompt): base {runs['base']:.6f} (file "
      f"{base:.6f}), source {runs['source']:.6f} (file {source:.6f})")
worst = max(abs(runs["base"] - base), abs(runs["source"] - source))
for n, s in cells:
    node = names[n]
    layer = int(node.split(".")[0][1:])
    site = node.split(".")[-1]
    index = int(node.split(".")[1][1:]) if site == "z" else -1
    want = ref.effect(runs, [(site, layer, index, int(positions[s]))])
    worst = max(worst, abs(want - exact[n, s]))
    print(f"  {node} at position {positions[s]}: file {exact[n, s]:.6g}, reference {want:.6g}, |diff| "
          f"{abs(want - exact[n, s]):.2g}; AtP {atp[n, s]:.6g}")
# float32 through 22 layers of width 2048-5632 against float64: relative errors of ~1e-5 of the
# logit scale; 1e-3 x max(1, |base|) leaves two orders of margin and still catches a wrong cell
tolerance = 1e-3 * scale
print(f"largest |file - reference| {worst:.2g} (tolerance {tolerance:.2g}): {'ok' if worst <= tolerance else 'FAILED'}")
sys.exit(0 if worst <= tolerance else 1)
