"""MPI: the same job on 1, 2, 3 and 4 ranks (oversubscribed) writes the same file, bit for bit
(every dataset but /progress/seconds, every attribute but timings and the rank count).
Usage: test_mpi_ranks.py BINARY FIXTURES SHARED"""
import json
import os
import sys
import tempfile

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import compare, run  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []
jobs = ["gpt2-pair-denoise", "llama-pair-noise-kl", "gpt2-gaussian", "llama-resample"]
with tempfile.TemporaryDirectory() as tmp:
    for name in jobs:
        job = json.load(open(os.path.join(fixtures, "jobs", name + ".json")))
        job["model"] = os.path.normpath(os.path.join(fixtures, "jobs", job["model"]))
        outputs, ranks_used = {}, {}
        for ranks in (1, 2, 3, 4):
            job["output"] = os.path.join(tmp, f"{name}-{ranks}.h5")
            path = os.path.join(tmp, f"{name}-{ranks}.json")
            json.dump(job, open(path, "w"))
            p = run(binary, ranks, path, timeout=240)
            if p.returncode != 0:
                failures.append(f"{name} on {ranks} ranks: exit {p.returncode}: {p.stderr[-600:]}")
                continue
            outputs[ranks] = job["output"]
            with h5py.File(job["output"], "r") as f:
                ranks_used[ranks] = sorted(set(f["progress/rank"][:].tolist()))
        for ranks, out in outputs.items():
            if ranks != 1 and 1 in outputs:
                diffs = compare(outputs[1], out)
                failures += [f"{name}: {ranks} ranks vs 1: {d}" for d in diffs]
        # A tiny job may finish on rank 0 before the others have loaded the model; the kill test
        # (a longer job) checks that every rank computes.
        print(f"{name}: ran on {sorted(outputs)} ranks; ranks that computed units: {ranks_used}")
print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
