"""patchsweep run on every edge job (tests/fixtures/jobs/edges-*.json): /edges/exact, /edges/eap,
/edges/eap_ig and /edges/eap_ig_act match the independent float64 PyTorch reference (tests/reference/edges_ref.py, fixtures written by
gen_edges.py) edge by edge, by name; the file has the edge names, ends and shapes; the fast path
(batched suffix) and the naive one (--naive), small batches, 1 and 3 ranks, a resumed run and an
edited job write the same bits; two metrics give each metric's bits; the induction known answer, and
`patchsweep top --edges` lists its top cells.

Tolerance: 5e-5 + 1e-4 |value|, as tests/cli/test_results_file.py justifies for node effects (float32
against float64; an effect is a difference of two metrics read off logits of magnitude ~10). The
results have a metric axis ([P, E, S, M]); the fixtures are single-metric, so [..., 0] is compared.
An estimator missing from SUPPORTED would be left out of each job before it runs, saying so.
Usage: test_edges.py BINARY FIXTURES SHARED"""
import glob
import json
import os
import struct
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import ENV, command, compare, run, user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
sys.path.insert(0, os.path.join(fixtures, "..", "reference"))
import safetensors_io as st  # noqa: E402

SUPPORTED = ("exact", "eap", "eap_ig", "eap_ig_act")
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def local_job(path, tmp, suffix=""):
    """The fixture job with its model path absolute, its output in tmp, and only the supported estimates."""
    job = json.load(open(path))
    name = os.path.basename(path)[:-5]
    job["model"] = os.path.normpath(os.path.join(os.path.dirname(path), job["model"]))
    left_out = [e for e in job.get("estimates", []) if e not in SUPPORTED]
    job["estimates"] = [e for e in job.get("estimates", []) if e in SUPPORTED]
    job["output"] = os.path.join(tmp, f"{name}{suffix}.h5")
    local = os.path.join(tmp, f"{name}{suffix}.json")
    json.dump(job, open(local, "w"))
    return job, local, left_out


def compare_golden(name, out):
    golden = os.path.join(fixtures, "golden", name + ".safetensors")
    tensors = st.read(golden)
    with open(golden, "rb") as f:  # the edge names are in the header's __metadata__ (tests/reference/EDGES.md)
        (n,) = struct.unpack("<Q", f.read(8))
        names = json.loads(json.loads(f.read(n))["__metadata__"]["edges"])
    with h5py.File(out, "r") as f:
        got = [x.decode() for x in f["edges/name"][:]]
        check(got == names, f"{name}: /edges/name differs from the reference's edges (order or set)")
        ups, downs = [x.decode() for x in f["edges/upstream"][:]], [x.decode() for x in f["edges/downstream"][:]]
        check([f"{u}->{v}" for u, v in zip(ups, downs)] == got, f"{name}: upstream/downstream do not make the names")
        check("effects" not in f, f"{name}: an edge job without nodes has /effects")
        check(f["progress/done"][:].all(), f"{name}: not every unit is flagged done")
        base = f["baseline/base"][:, 0]
        check(np.allclose(base, tensors["base"], atol=5e-5, rtol=1e-4), f"{name}: /baseline/base differs from the reference")
        index = {n: i for i, n in enumerate(got)}
        order = [index[n] for n in names if n in index]
        line = []
        for key in SUPPORTED:
            if key not in tensors:
                check(f"edges/{key}" not in f, f"{name}: /edges/{key} written but not asked for")
                continue
            arr = f[f"edges/{key}"][()]
            P, E, S = tensors[key].shape
            check(arr.shape == (P, E, S, 1), f"{name}: /edges/{key} has shape {arr.shape}, want {(P, E, S, 1)}")
            if arr.shape != (P, E, S, 1) or len(order) != E:
                continue
            have, want = arr[..., 0][:, order, :], tensors[key]
            check(np.array_equal(np.isnan(have), np.isnan(want)), f"{name}: /edges/{key}: NaN where the reference has none, or back")
            ok = ~np.isnan(want)
            diff = np.abs(have[ok] - want[ok])
            tol = 5e-5 + 1e-4 * np.abs(want[ok])
            worst = int(np.argmax(diff - tol)) if diff.size else 0
            check(bool(np.all(diff <= tol)), f"{name}: /edges/{key}: |diff| {diff[worst]:.3g} > {tol[worst]:.3g}")
            line.append(f"{key} max|diff| {diff.max():.2e} (values up to {np.abs(want[ok]).max():.3g})")
    print(f"{name}: {len(got)} edges; " + "; ".join(line))


def resume_after_losing_units(name, out, tmp, path):
    """Clear the done flags (and values) of every other unit, rerun: the same bits as the whole run."""
    job, local, _ = local_job(path, tmp, "-resumed")
    with open(out, "rb") as a, open(job["output"], "wb") as b:
        b.write(a.read())
    with h5py.File(job["output"], "r+") as f:
        done = f["progress/done"][:]
        lost = np.arange(len(done)) % 2 == 1
        kinds, prompts, first, count = (f[f"progress/unit_{k}"][:] for k in ("kind", "prompt", "node0", "nodes"))
        for u in np.flatnonzero(lost):
            if kinds[u] == 2:  # an exact edge unit: its values gone too
                f["edges/exact"][prompts[u], first[u]:first[u] + count[u]] = np.nan
        done[lost] = 0
        f["progress/done"][:] = done
        f.attrs["complete"] = 0
    p = run(binary, 1, local)
    check(p.returncode == 0, f"{name} resumed: exit {p.returncode}: {p.stderr[-600:]}")
    if p.returncode == 0:
        diffs = compare(out, job["output"])
        failures.extend(f"{name}: resumed vs whole: {d}" for d in diffs)
        print(f"{name}: resumed after losing {int(lost.sum())} of {len(done)} units: {'same bits' if not diffs else diffs}")


with tempfile.TemporaryDirectory() as tmp:
    jobs = sorted(glob.glob(os.path.join(fixtures, "jobs", "edges-*.json")))
    check(len(jobs) >= 10, f"only {len(jobs)} edge jobs in fixtures/jobs")
    outputs = {}
    for path in jobs:
        name = os.path.basename(path)[:-5]
        job, local, left_out = local_job(path, tmp)
        if left_out:
            print(f"{name}: not implemented yet, left out: {', '.join(left_out)}")
        p = run(binary, 1, local)
        check(p.returncode == 0, f"{name}: exit {p.returncode}: {p.stderr[-600:]}")
        if p.returncode == 0:
            outputs[name] = job["output"]
            compare_golden(name, job["output"])

    # Fast == naive bit for bit: the batched suffix (the default) against one full-length pass per
    # patch (--naive), on every job; and batches cut small (PATCHSWEEP_BATCH=3) on two.
    for name in sorted(outputs):
        path = os.path.join(fixtures, "jobs", name + ".json")
        variants = [("naive", ["--naive"], {})]
        if name in ("edges-gpt2-gaussian", "edges-llama-pair-prob"):
            variants.append(("batch3", [], {"PATCHSWEEP_BATCH": "3"}))
        for label, extra, env in variants:
            job, local, _ = local_job(path, tmp, "-" + label)
            p = subprocess.run(command(binary, 1, local, *extra), capture_output=True, text=True, timeout=300,
                               env=dict(ENV, **env))
            check(p.returncode == 0, f"{name} {label}: exit {p.returncode}: {p.stderr[-600:]}")
            if p.returncode == 0:
                diffs = compare(outputs[name], job["output"])
                failures.extend(f"{name}: {label} vs fast: {d}" for d in diffs)
                print(f"{name}: {label} vs fast: {'same bits' if not diffs else diffs}")

    # Rank count: the same bits on 1 and 3 ranks (units spread over ranks like node units).
    for name in ("edges-gpt2-gaussian", "edges-llama-pair-kl"):
        if name not in outputs:
            continue
        job, local, _ = local_job(os.path.join(fixtures, "jobs", name + ".json"), tmp, "-3ranks")
        p = run(binary, 3, local, timeout=240)
        check(p.returncode == 0, f"{name} on 3 ranks: exit {p.returncode}: {p.stderr[-600:]}")
        if p.returncode == 0:
            diffs = compare(outputs[name], job["output"])
            failures.extend(f"{name}: 3 ranks vs 1: {d}" for d in diffs)
            print(f"{name}: 3 ranks vs 1: {'same bits' if not diffs else diffs}")

    # Several metrics: each metric's column holds the bits of that metric's run alone (the metric
    # axis is last, [P, E, S, M]).
    if "edges-gpt2-pair-noise-each" in outputs:
        job, local, _ = local_job(os.path.join(fixtures, "jobs", "edges-gpt2-pair-noise-each.json"), tmp, "-metrics")
        job["metric"] = ["kl", "logprob"]
        json.dump(job, open(local, "w"))
        p = run(binary, 1, local)
        check(p.returncode == 0, f"two metrics: exit {p.returncode}: {p.stderr[-600:]}")
        if p.returncode == 0:
            with h5py.File(job["output"], "r") as f, h5py.File(outputs["edges-gpt2-pair-noise-each"], "r") as g:
                same = all(f[f"edges/{k}"][..., 1].tobytes() == g[f"edges/{k}"][..., 0].tobytes()
                           for k in ("exact", "eap", "eap_ig", "eap_ig_act"))
                check(same and f["edges/exact"].shape[-1] == 2, "two metrics: the logprob column differs from the logprob job's bits")
                print(f"edges-gpt2-pair-noise-each with metrics [kl, logprob]: logprob column {'the same bits' if same else 'DIFFERS'}")

    # An edited edge job that only gained an estimator: the file is remade and its edge units
    # computed again (not carried yet, docs/edges.md), equal to a fresh run bit for bit.
    if "edges-neox-pair" in outputs:
        path = os.path.join(fixtures, "jobs", "edges-neox-pair.json")
        job, local, _ = local_job(path, tmp, "-edited")
        estimates = job["estimates"]
        job["estimates"] = []
        json.dump(job, open(local, "w"))
        p = run(binary, 1, local)
        job["estimates"] = estimates
        json.dump(job, open(local, "w"))
        q = run(binary, 1, local)
        check(p.returncode == 0 and q.returncode == 0, f"edited edge job: exit {p.returncode}, {q.returncode}: {q.stderr[-600:]}")
        if q.returncode == 0:
            diffs = compare(outputs["edges-neox-pair"], job["output"])
            failures.extend(f"edges-neox-pair edited (+estimates): {d}" for d in diffs)
            print(f"edges-neox-pair: edited to gain {estimates}: {'same bits as a fresh run' if not diffs else diffs}")

    if "edges-neox-pair" in outputs:
        resume_after_losing_units("edges-neox-pair", outputs["edges-neox-pair"], tmp,
                                  os.path.join(fixtures, "jobs", "edges-neox-pair.json"))


def induction_known_answer(tmp):
    """models/induction-2l completes <bos> A A[:7] with A[7]: an induction head of layer 1 at the last
    position attends to position 8 (where A[7] follows A[6]'s first occurrence), whose key a
    previous-token head of layer 0 wrote. That edge, L0.H{0 or 3} -> L1.KV*.k at position 8, must rank
    among the top 10 of all 110 edges x 18 positions by |exact effect| (mean over 4 prompts).
    Previous-token scores from the model's README (`patchsweep heads`): L0.H0 0.877, L0.H3 0.866."""
    root = os.path.join(fixtures, "..", "..")
    prompts = json.load(open(os.path.join(root, "jobs", "induction.json")))["prompts"][:4]
    job = {"model": os.path.normpath(os.path.join(root, "models", "induction-2l")), "prompts": prompts,
           "corruption": "pair", "direction": "denoise", "metric": "logit_diff", "positions": "each", "edges": "all",
           "output": os.path.join(tmp, "induction-edges.h5")}
    local = os.path.join(tmp, "induction-edges.json")
    json.dump(job, open(local, "w"))
    p = run(binary, 1, local)
    check(p.returncode == 0, f"induction edges: exit {p.returncode}: {p.stderr[-600:]}")
    if p.returncode != 0:
        return
    with h5py.File(job["output"], "r") as f:
        names = [x.decode() for x in f["edges/name"][:]]
        score = np.abs(f["edges/exact"][..., 0]).mean(axis=0)  # [E, S]
    top = [(names[i // score.shape[1]], i % score.shape[1]) for i in np.argsort(-score, axis=None)[:10]]
    hits = [(n, t) for n, t in top if t == 8 and n.split("->")[0] in ("L0.H0", "L0.H3") and n.endswith(".k") and "->L1." in n]
    rank = top.index(hits[0]) + 1 if hits else None
    check(bool(hits), f"induction: no previous-token head -> layer-1 key edge at position 8 in the top 10: {top}")
    print(f"induction-2l: previous-token -> induction key edge {hits[0] if hits else None} ranks {rank} of "
          f"{score.size} cells by |exact|")
    # patchsweep top --edges lists the same cells first; plain top says to use --edges
    p = subprocess.run([binary, "top", "--edges", "-k", "10", job["output"]], capture_output=True, text=True, timeout=60)
    rows = [line.split() for line in p.stdout.splitlines() if line[:4].strip().isdigit()]
    listed = [(row[1], int(row[2])) for row in rows]
    check(p.returncode == 0 and listed == top, f"top --edges: exit {p.returncode}, rows {listed} != {top}: {p.stderr}")
    problem, _ = user_error([binary, "top", job["output"]], "patchsweep top --edges")
    check(problem is None, f"top on an edge-only file: {problem}")
    problem, _ = user_error([binary, "top", "--edges", "--site", "z", job["output"]], "--site selects nodes")
    check(problem is None, f"top --edges --site: {problem}")


with tempfile.TemporaryDirectory() as tmp:
    induction_known_answer(tmp)

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
