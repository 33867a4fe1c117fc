"""Same bits everywhere: each job run under every kernel family this CPU has (PATCHSWEEP_ISA),
under several engine batch sizes (PATCHSWEEP_BATCH) and thread counts (PATCHSWEEP_THREADS)
writes the same results file, bit for bit
(every dataset but /progress/seconds, every attribute but timings); and where a pair corruption
leaves a prompt's start unchanged, every exact effect at those positions is exactly 0 (the
patched value equals the base value to the bit, so nothing downstream can move).

The jobs cover GPT-2, Llama (GQA) and GPT-NeoX fixtures, every site, both directions, the
gaussian, resample and window variants, and a job on the real pretrained stories260K model when
../shared is present.
Usage: test_same_bits.py BINARY FIXTURES SHARED"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import compare  # noqa: E402

binary, fixtures, shared = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
FAMILIES = ["generic", "avx2", "avx512", "neon"]
VARIANTS = ([{}] + [{"PATCHSWEEP_ISA": isa} for isa in FAMILIES] + [{"PATCHSWEEP_BATCH": b} for b in ("1", "3")]
            + [{"--threads": "2"}, {"PATCHSWEEP_THREADS": "3", "PATCHSWEEP_BATCH": "5"}])


def run(job_path, variant):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHSWEEP_")}
    env.update({k: v for k, v in variant.items() if k.startswith("PATCHSWEEP_")})
    options = [part for k, v in variant.items() if k.startswith("--") for part in (k, v)]  # e.g. --threads 2
    return subprocess.run([binary, "run", job_path, "--quiet"] + options, capture_output=True, text=True, env=env,
                          timeout=600)


def runnable_families(job_path):
    """The families this CPU runs: the others fail with one line and exit status 2."""
    out = []
    for isa in FAMILIES:
        p = subprocess.run([binary, "plan", job_path], capture_output=True, text=True,
                           env=dict(os.environ, PATCHSWEEP_ISA=isa))
        if p.returncode == 0:
            assert f"kernels    {isa} " in p.stdout, p.stdout
            out.append(isa)
        else:
            lines = p.stderr.strip().splitlines()
            assert p.returncode == 2 and len(lines) == 1 and "PATCHSWEEP_ISA" in lines[0], (p.returncode, p.stderr)
    return out


def jobs(tmp):
    names = ["gpt2-pair-denoise", "llama-pair-noise-kl", "neox-pair-noise", "gpt2-gaussian", "llama-resample",
             "llama-window-estimates"]
    for name in names:
        job = json.load(open(os.path.join(fixtures, "jobs", name + ".json")))
        job["model"] = os.path.normpath(os.path.join(fixtures, "jobs", job["model"]))
        yield name, job
    stories = os.path.join(shared, "models", "stories260K")
    if os.path.isdir(stories):
        # token ids only (see its README); the corrupt prompts differ from position 5 on
        clean = [1, 365, 185, 372, 169, 260, 436, 292, 260, 436, 289, 450]
        prompts = []
        for k in range(3):
            corrupt = clean[:5 + k] + [t + 7 for t in clean[5 + k:]]
            prompts.append({"clean": clean, "corrupt": corrupt, "answer": 292, "wrong": 260})
        yield "stories260K", {"model": stories, "prompts": prompts, "nodes": ["resid_pre", "z", "k", "mlp_out"],
                              "estimates": ["atp", "atp_qk", "atp_star"]}
    else:
        print(f"skipped the stories260K job: {stories} is absent")


def first_difference(f, p):
    base, source = f["prompts/base_tokens"][p], f["prompts/source_tokens"][p]
    n = int(f["prompts/length"][p])
    for t in range(n):
        if base[t] != source[t]:
            return t
    return n


failures = []
with tempfile.TemporaryDirectory() as tmp:
    families = None
    for name, job in jobs(tmp):
        outputs = {}
        for variant in VARIANTS:
            label = " ".join(f"{k}={v}" for k, v in variant.items()) or "defaults"
            isa = variant.get("PATCHSWEEP_ISA")
            tag = f"{name}-" + "-".join(variant.values()) if variant else f"{name}-default"
            job["output"] = os.path.join(tmp, tag + ".h5")
            path = os.path.join(tmp, tag + ".json")
            json.dump(job, open(path, "w"))
            if families is None:
                families = runnable_families(path)
                print("kernel families this CPU runs:", ", ".join(families))
            if isa and isa not in families:
                continue
            p = run(path, variant)
            if p.returncode != 0:
                failures.append(f"{tag}: exit {p.returncode}: {p.stderr[-600:]}")
                continue
            outputs[label] = job["output"]
        reference = outputs.get("defaults")
        for label, out in outputs.items():
            if label != "defaults" and reference:
                failures += [f"{name} with {label}: {d}" for d in compare(reference, out)]
        if reference and job.get("corruption", "pair") == "pair" and job.get("exact", True):
            with h5py.File(reference, "r") as f:
                exact, positions = f["effects/exact"][:], f["positions"][:]
                zeros = nonzero = 0
                for p in range(exact.shape[0]):
                    first = first_difference(f, p)
                    cols = [j for j, t in enumerate(positions) if 0 <= t < first]
                    cells = exact[p][:, cols]
                    zeros += int(np.sum(cells == 0))
                    nonzero += int(np.sum(cells != 0))
                if nonzero:
                    failures.append(f"{name}: {nonzero} cells before the first corrupted token are not exactly 0")
                print(f"{name}: {len(outputs)} runs bit-identical; {zeros} cells before the first corrupted token, "
                      f"every one exactly 0")
        else:
            print(f"{name}: {len(outputs)} runs bit-identical")
print(f"{len(failures)} failures")
for f in failures[:40]:
    print("FAIL", f)
sys.exit(1 if failures else 0)
