#!/usr/bin/env python3
"""bench_sched_mpi: the coordinator and the results file with many ranks, measured: a job of
tiny units (the tiny GPT-2 fixture, 100 prompts of 16 tokens, five sites at every position:
1,200 units of a few milliseconds each) on 64 MPI ranks, oversubscribed on this machine's cores,
so that rank 0 serves requests as fast as 64 ranks can make them. `patchsweep run` prints, at
the end, rank 0's messages and the CPU seconds it spent serving them (src/sweep/sched.c), and
every rank's unit writes into the one HDF5 file (count, mean, slowest, share of the ranks' time).

The CPU time per message it measures is then the message cost of bench_sched, which simulates
the real queue on 64 to 4,000 ranks of a GPT-2-small sweep; both are printed.
usage: /usr/bin/python3 bench/bench_sched_mpi.py [PATCHSWEEP=build/patchsweep] [ranks=64]"""
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build", "patchsweep")
ranks = int(sys.argv[2]) if len(sys.argv) > 2 else 64
env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")


def prompts(n, T):
    """n prompts of T tokens of the tiny model's 64-token vocabulary, one token changed."""
    out = []
    for p in range(n):
        clean = [(7 * p + 13 * t) % 64 for t in range(T)]
        corrupt = list(clean)
        corrupt[T // 2] = (clean[T // 2] + 1) % 64
        out.append({"clean": clean, "corrupt": corrupt, "answer": clean[-1], "wrong": corrupt[-1]})
    return out


with tempfile.TemporaryDirectory() as tmp:
    job = {"model": os.path.normpath(os.path.join(ROOT, "tests", "fixtures", "models", "gpt2-tiny")),
           "prompts": prompts(100, 16), "nodes": ["z", "mlp_post", "resid_pre", "attn_out", "mlp_out"],
           "output": os.path.join(tmp, "many-ranks.h5")}
    path = os.path.join(tmp, "many-ranks.json")
    json.dump(job, open(path, "w"))
    p = subprocess.run(["mpiexec", "-n", str(ranks), "--oversubscribe", binary, "run", path], capture_output=True,
                       text=True, env=env, timeout=1200)
    if p.returncode:
        sys.exit(f"bench_sched_mpi: run failed: {p.stderr[-2000:]}")
    lines = [x for x in p.stderr.splitlines() if x.startswith(("coordinator", "writes", "patchsweep:", "progress"))]
    coordinator = next(x for x in lines if x.startswith("coordinator"))
    per_message = float(re.search(r"\(([\d.]+) us each\)", coordinator).group(1)) * 1e-6

print(f"bench_sched_mpi: {ranks} ranks on {os.cpu_count()} cores, 1,200 tiny units")
for line in lines[-4:]:
    print("  " + line)
sim = os.path.join(os.path.dirname(binary), "bench", "bench_sched")
print(f"then bench_sched with the measured {per_message * 1e6:.1f} us per message:")
print(subprocess.run([sim, str(per_message)], capture_output=True, text=True, check=True).stdout.rstrip())
