"""patchsweep plan for models too big for this machine: GPT-2 small, Pythia-1.4B and Llama-2-7B
shapes, as config.json and safetensors headers over sparse data (shape_checkpoints.py; 13 GB on
paper for Llama-2-7B, nothing on disk). plan reads no weight: it succeeds with its address space
capped at the checkpoint's size + 2 GB (it maps the file to read the headers; the weights in
float32 would need 4 to 8 times that), reports the weights per node as one copy of
the parameters in the checkpoint's BF16 (2 bytes each: the projections held only packed, the input
embeddings as rows, a tied embedding both ways; within 1% for the panels' padding and the float32
norm gains), memory per rank and per node, and a time on --cores; a bad option is one line, exit 2. Usage: test_plan_shapes.py BINARY FIXTURES SHARED"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shape_checkpoints  # noqa: E402
from mpi_util import user_error  # noqa: E402

binary = sys.argv[1]
failures = []
sanitized = b"__asan_init" in open(binary, "rb").read()  # the sanitizer runtime is linked in
if sanitized:
    print("an AddressSanitizer build: the address-space cap is left out (ASan's shadow needs terabytes of it)")
UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def size(text):
    number, unit = re.fullmatch(r"([\d.]+)([kMGT]?)B", text).groups()
    return float(number) * UNITS[unit]


with tempfile.TemporaryDirectory() as tmp:
    for name, (kind, cfg) in shape_checkpoints.CONFIGS.items():
        folder = os.path.join(tmp, name)
        params = shape_checkpoints.write_folder(folder, kind, cfg)
        job = {"model": folder, "nodes": ["z", "mlp_post"], "positions": [-1, -2], "output": os.path.join(tmp, "x.h5"),
               "prompts": [{"clean": list(range(1, 101)), "corrupt": list(range(1, 100)) + [200], "answer": 5, "wrong": 6}]}
        path = os.path.join(tmp, name + ".json")
        json.dump(job, open(path, "w"))
        cap_kb = (os.path.getsize(os.path.join(folder, "model.safetensors")) + 2 ** 31) // 1024
        # AddressSanitizer reserves terabytes of address space for its shadow: no cap there
        cap = "" if sanitized else f"ulimit -v {cap_kb} && "
        p = subprocess.run(["sh", "-c", cap + 'exec "$0" plan "$1" --cores 512 --ranks-per-node 64', binary, path],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            failures.append(f"{name}: plan: exit {p.returncode}: {p.stderr}")
            continue
        memory = re.search(r"memory +(\S+) per rank .* \+ (\S+) of weights per node .*: (\S+) for a node of 64 ranks",
                           p.stdout)
        if not memory or "time       at least" not in p.stdout or "matrices in bfloat16" not in p.stdout:
            failures.append(f"{name}: plan's memory or time line: {p.stdout}")
            continue
        per_rank, weights, node = (size(g) for g in memory.groups())
        d = cfg.get("n_embd", cfg.get("hidden_size"))
        # one copy of every parameter; a tied embedding twice (its rows, and packed as the unembedding)
        tied = cfg["vocab_size"] * d if cfg.get("tie_word_embeddings", True) is not False else 0
        expected = 2.0 * (params + tied)
        if abs(weights / expected - 1) > 0.01:
            failures.append(f"{name}: weights per node {weights:.4g} B, expected about {expected:.4g} ({params} parameters)")
        if abs(node - (weights + 64 * per_rank)) > 0.01 * node:
            failures.append(f"{name}: a node of 64 ranks {node:.4g} B is not weights + 64 x per rank")
        print(f"{name}: {params:,} parameters; plan: weights {weights / 1e9:.3g} GB per node, {per_rank / 1e6:.3g} MB per rank")
    for bad in (["--cores", "0"], ["--cores", "many"], ["--ranks-per-node"], ["--bogus", "2"]):
        problem, _ = user_error([binary, "plan", os.path.join(tmp, "gpt2-small.json")] + bad, "plan: ")
        if problem:
            failures.append(f"plan {' '.join(bad)}: {problem}")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
