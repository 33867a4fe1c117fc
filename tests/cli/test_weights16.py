"""Weights in their stored precision, end to end: a BF16 or F16 copy of a fixture model is held in
16 bits (plan says so, and its weights per node are about a quarter of the float32 model's), and
a job gives the results file of the F32 model whose weights are the widened 16-bit values, bit for
bit: exact effects, estimates (AtP, AtP*, EAP, EAP-IG) and edges, on 1 rank and on 2 ranks sharing
the node's weights; GPT-2, Llama (GQA) and GPT-NeoX. A checkpoint that mixes 16-bit and F32
matrices is widened at load (plan says float32), and a non-finite 16-bit weight is one line, exit
2. Each run costs up to ~2.7 s of MPI start-up here, so the cases are few; the sanitizer build leaves
this test out (test_weights16, the unit test, runs the same code paths under it).
Usage: test_weights16.py BINARY FIXTURES SHARED"""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402
from mpi_util import ENV, command, compare, user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []
# (model, dtype, job, ranks of the 16-bit run): every architecture, both types, nodes with
# estimates, edges with EAP / EAP-IG, and the node's shared window on 2 ranks
CASES = [("gpt2-tiny", "F16", "gpt2-pair-metrics.json", 1), ("llama-tiny", "BF16", "llama-window-estimates.json", 2),
         ("llama-tiny", "BF16", "edges-llama-resample-estimates.json", 1), ("neox-tiny", "BF16", "edges-neox-pair.json", 1)]
# where each run read its model: the only attributes that differ
PATHS = ("attribute job differs", "attribute model_dir differs", "attribute model_dir_relative differs")


def f16_round(a):
    return np.asarray(a, dtype=np.float32).astype("<f2").astype(np.float32)


def write_copy(src, dst, dtype, mixed=False):
    """dst: src's config and tokenizer, its tensors in dtype (F32: the widened values of the 16-bit
    copy, rounded as dtype_of says); mixed leaves one matrix in F32."""
    os.makedirs(dst)
    for name in os.listdir(src):
        if not name.endswith(".safetensors"):
            with open(os.path.join(src, name), "rb") as f, open(os.path.join(dst, name), "wb") as g:
                g.write(f.read())
    tensors = st.read(os.path.join(src, "model.safetensors"))
    out = {}
    for i, (name, a) in enumerate(sorted(tensors.items())):
        rounded = st.bf16_round(a) if dtype[1] == "BF16" else f16_round(a)
        keep_f32 = mixed and i == 0
        out[name] = ("F32", rounded) if dtype[0] == "F32" or keep_f32 else (dtype[1], a if dtype[1] == "BF16" else rounded)
    st.write(os.path.join(dst, "model.safetensors"), out)


def run_job(job_file, model, out, ranks):
    job = json.load(open(os.path.join(fixtures, "jobs", job_file)))
    job["model"], job["output"] = model, out
    path = out + ".json"
    json.dump(job, open(path, "w"))
    p = subprocess.run(command(binary, ranks, path), capture_output=True, text=True, timeout=300, env=ENV)
    if p.returncode != 0:
        failures.append(f"{job_file} on {model}: exit {p.returncode}: {p.stderr.strip()}")
    return path


def weights_line(job_path):
    p = subprocess.run([binary, "plan", job_path], capture_output=True, text=True, timeout=60)
    m = re.search(r"\+ ([\d.]+)([kMG]?)B of weights per node \(matrices in (\w+)", p.stdout)
    if not m:
        failures.append(f"plan {job_path}: no weights line: {p.stdout} {p.stderr}")
        return 0.0, "?"
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)], m.group(3)


with tempfile.TemporaryDirectory() as tmp:
    for model, kind, job_file, ranks in CASES:
        held, widened = os.path.join(tmp, f"{model}-{kind}"), os.path.join(tmp, f"{model}-{kind}-as-f32")
        if not os.path.exists(held):
            write_copy(os.path.join(fixtures, "models", model), held, (kind, kind))
            write_copy(os.path.join(fixtures, "models", model), widened, ("F32", kind))
        base = os.path.join(tmp, f"{model}-{kind}-{job_file[:-5]}")
        got, want = f"{base}-{ranks}.h5", base + "-f32.h5"
        bytes_f32, type_f32 = weights_line(run_job(job_file, widened, want, 1))
        bytes_16, type_16 = weights_line(run_job(job_file, held, got, ranks))
        if os.path.exists(got) and os.path.exists(want):
            diffs = [d for d in compare(got, want) if d not in PATHS]
            if diffs:
                failures.append(f"{job_file}, {kind} on {ranks} rank(s) against the widened F32 model: {diffs}")
        print(f"{model} {kind} {job_file} on {ranks} rank(s): the results file of the widened F32 model bit for bit; "
              f"plan: {bytes_16:.4g} B in {type_16} against {bytes_f32:.4g} B in {type_f32}")
        if type_16 != {"BF16": "bfloat16", "F16": "float16"}[kind] or type_f32 != "float32":
            failures.append(f"{model} {kind}: plan says {type_16} and {type_f32}")
        if not bytes_16 < 0.36 * bytes_f32:
            failures.append(f"{model} {kind}: weights {bytes_16} B against {bytes_f32} B in float32")
    # a checkpoint mixing BF16 and F32 matrices is widened at load
    mixed = os.path.join(tmp, "mixed")
    write_copy(os.path.join(fixtures, "models", "llama-tiny"), mixed, ("BF16", "BF16"), mixed=True)
    job = json.load(open(os.path.join(fixtures, "jobs", "llama-resample.json")))
    job["model"] = mixed
    json.dump(job, open(os.path.join(tmp, "mixed.json"), "w"))
    _, held_as = weights_line(os.path.join(tmp, "mixed.json"))
    if held_as != "float32":
        failures.append(f"a mixed BF16/F32 checkpoint is held in {held_as}, expected float32")
    # a non-finite weight in a 16-bit matrix: one line, exit 2
    bad = os.path.join(tmp, "bad")
    write_copy(os.path.join(fixtures, "models", "llama-tiny"), bad, ("BF16", "BF16"))
    tensors = st.read(os.path.join(bad, "model.safetensors"))
    up = tensors["model.layers.1.mlp.up_proj.weight"]
    up[2, 3] = np.inf
    st.write(os.path.join(bad, "model.safetensors"), {k: ("BF16", v) for k, v in tensors.items()})
    job = json.load(open(os.path.join(fixtures, "jobs", "llama-resample.json")))
    job["model"], job["output"] = bad, os.path.join(tmp, "bad.h5")
    json.dump(job, open(os.path.join(tmp, "bad.json"), "w"))
    problem, line = user_error([binary, "run", os.path.join(tmp, "bad.json")],
                               f'tensor "model.layers.1.mlp.up_proj.weight" holds a non-finite value at element {2 * up.shape[1] + 3}')
    if problem:
        failures.append(f"non-finite BF16 weight: {problem}")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
