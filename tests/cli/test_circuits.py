"""patchsweep circuit (docs/circuits.md):

- every circuit test job (tests/fixtures/circuits/circuits-*.json: GPT-2, Llama with GQA, NeoX;
  pair, mean over the job's prompts and over a separate prompts file, resample with several seeds,
  zero; edges and nodes; position-specific and position-independent; two metrics) against the
  independent float64 reference (tests/reference/circuits_ref.py, fixtures by gen_circuits.py):
  full, empty and every circuit's metric within 5e-5 + 1e-4 |value| (the edge tests' tolerance: the
  evaluator computes in float32 what the reference computes in float64, metrics of size ~10);
- the file's /circuits layout: names, shapes and dtypes of the contract, faithfulness, the
  summaries and the curves (area, k80/k90/k100) recomputed from the stored metrics;
- known answers on models/ioi-small (jobs/ioi.json prompts, an edge job): the full circuit's
  faithfulness is exactly 1 and the empty one's exactly 0 under every choice; the top k edges by
  exact effect beat a random ranking at every k; edge and node ablation of the same circuit differ;
  the exact ranking's members are the top k of /edges/exact recomputed here;
- every kind of ranked set (effects/ nodes, a threshold, a signed score, position-specific cells,
  random cells): its members recomputed from the file's arrays;
- 1 and 3 ranks, and 2 threads, write the same bits; a run killed mid-way (SIGKILL once a prompt's units are
  flagged done) and rerun gives the same bits (the sanitizer build: one resume of cleared units on
  one rank instead); a changed "circuits" key replaces the group; a ranking by
  an array that is not complete is refused in one line; plan counts the circuit passes.
Usage: test_circuits.py BINARY FIXTURES SHARED"""
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import ENV, kill_session, user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
repo = os.path.normpath(os.path.join(fixtures, "..", ".."))
sys.path.insert(0, os.path.join(fixtures, "..", "reference"))
import safetensors_io as st  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def command(verb, job, ranks=1):
    base = [binary, verb, job, "--quiet"]
    return base if ranks == 1 else ["mpiexec", "-n", str(ranks), "--oversubscribe", *base]


def run(verb, job, ranks=1, env=None):
    p = subprocess.run(command(verb, job, ranks), capture_output=True, text=True, timeout=300, env=dict(ENV, **(env or {})))
    check(p.returncode == 0, f"{verb} {job} ({ranks} ranks): exit {p.returncode}: {p.stderr.strip()}")
    return p.returncode == 0


def local_job(job, folder, tmp, name):
    """The job with its model path absolute and its output in tmp; its prompts files copied beside it."""
    job = json.loads(json.dumps(job))
    job["model"] = os.path.normpath(os.path.join(folder, job["model"]))
    job["output"] = os.path.join(tmp, name + ".h5")
    for a in job.get("circuits", {}).get("ablation", []):
        if isinstance(a, dict) and "mean" in a:
            shutil.copy(os.path.join(folder, a["mean"]["prompts_file"]), tmp)
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    return job, path


def circuit_datasets(path):
    """Every dataset of /circuits and its attributes but seconds, as bytes."""
    out = {}
    with h5py.File(path, "r") as f:
        g = f["circuits"]
        g.visititems(lambda n, o: out.__setitem__(n, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None)
        out.update({f"@{k}": str(v) for k, v in g.attrs.items() if k != "seconds"})
    return out


def same_bits(a, b, label):
    da, db = circuit_datasets(a), circuit_datasets(b)
    bad = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
    check(not bad, f"{label}: /circuits differs in {bad}")


# ---- the layout of the contract ------------------------------------------------------------------
def check_layout(path, job, label):
    P, spec = len(job["prompts"]), job["circuits"]
    metrics = job.get("metric", "logit_diff")
    M = 1 if isinstance(metrics, str) else len(metrics)
    G = len(spec.get("granularity", ["edges"]))
    A = G * len(spec.get("ablation", ["pair"]))
    C = sum(len(s["k"]) if "k" in s else 1 for s in spec["sets"])
    K = sum("k" in s for s in spec["sets"])
    with h5py.File(path, "r") as f:
        g = f["circuits"]
        E = len(g["edge_name"])
        S = len(f["position_names"])
        if "edges" in f:
            check([x.decode() for x in g["edge_name"][:]] == [x.decode() for x in f["edges/name"][:]],
                  f"{label}: /circuits/edge_name is not /edges/name")
        want = {"set": ("S", (C,)), "k": ("<i4", (C,)), "size": ("<i4", (C,)), "members": ("|u1", (C, E, S)),
                "all_positions": ("|u1", (C,)), "choice": ("S", (A,)), "full": ("<f8", (P, M)),
                "empty": ("<f8", (A, P, M)), "metric": ("<f8", (C, A, P, M)), "faithfulness": ("<f8", (C, A, P, M)),
                "ratio_of_means": ("<f8", (C, A, M)), "mean_of_ratios": ("<f8", (C, A, M)), "median": ("<f8", (C, A, M)),
                "q1": ("<f8", (C, A, M)), "q3": ("<f8", (C, A, M)), "done": ("|u1", (C, A, P))}
        if K:
            want.update({"sets/name": ("S", (K,)), "sets/auc": ("<f8", (K, A, M)), "sets/k80": ("<i4", (K, A, M)),
                         "sets/k90": ("<i4", (K, A, M)), "sets/k100": ("<i4", (K, A, M))})
        for name, (dtype, shape) in want.items():
            if name not in g:
                check(False, f"{label}: /circuits/{name} missing")
                continue
            d = g[name]
            kind_ok = d.dtype.kind == "S" if dtype == "S" else d.dtype.str == dtype
            check(kind_ok and d.shape == shape, f"{label}: /circuits/{name} is {d.dtype.str} {d.shape}, want {dtype} {shape}")
        for a in ("job", "fingerprint", "seconds"):
            check(a in g.attrs, f"{label}: /circuits has no attribute {a}")
        check(json.loads(g.attrs["job"])["sets"][0]["name"] == spec["sets"][0]["name"], f"{label}: job attribute")
        check(bool(np.all(g["done"][()] == 1)), f"{label}: not every unit is done")
        full, empty, metric, faith = g["full"][()], g["empty"][()], g["metric"][()], g["faithfulness"][()]
        # faithfulness and the summaries, recomputed from the stored metrics
        with np.errstate(divide="ignore", invalid="ignore"):
            want_faith = (metric - empty[None]) / (full[None, None] - empty[None])
            want_faith[np.broadcast_to(full[None, None] == empty[None], want_faith.shape)] = np.nan
            rom = (metric.mean(2) - empty.mean(1)[None]) / (full.mean(0)[None, None] - empty.mean(1)[None])
        check(np.array_equal(faith, want_faith, equal_nan=True), f"{label}: faithfulness is not (C - empty) / (full - empty)")
        check(np.allclose(g["ratio_of_means"][()], rom, rtol=1e-12, atol=1e-12, equal_nan=True), f"{label}: ratio_of_means")
        for name, fn in (("mean_of_ratios", np.nanmean), ("median", np.nanmedian),
                         ("q1", lambda x, axis: np.nanquantile(x, 0.25, axis=axis)),
                         ("q3", lambda x, axis: np.nanquantile(x, 0.75, axis=axis))):
            with np.errstate(all="ignore"):
                import warnings
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    want_summary = fn(faith, axis=2)
            check(np.allclose(g[name][()], want_summary, rtol=1e-12, atol=1e-12, equal_nan=True), f"{label}: {name}")
        return {n: g[n][()] for n in ("full", "empty", "metric", "members", "size", "k", "faithfulness", "ratio_of_means")}


# ---- the reference fixtures ------------------------------------------------------------------------
def golden_of(name):
    path = os.path.join(fixtures, "golden", name + ".safetensors")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        meta = json.loads(f.read(n))["__metadata__"]
    return st.read(path), json.loads(meta["circuits"]), json.loads(meta["choices"])


def close(got, want):
    return np.abs(np.asarray(got) - np.asarray(want)) <= 5e-5 + 1e-4 * np.abs(np.asarray(want))


def reference_jobs(tmp):
    largest = 0.0
    for path in sorted(glob.glob(os.path.join(fixtures, "circuits", "circuits-*.json"))):
        name = os.path.basename(path)[:-5]
        job, local = local_job(json.load(open(path)), os.path.dirname(path), tmp, name)
        if not (run("run", local) and run("circuit", local)):
            continue
        got = check_layout(job["output"], job, name)
        golden, sets, choices = golden_of(name)
        with h5py.File(job["output"], "r") as f:
            check([x.decode() for x in f["circuits/set"][:]] == sets, f"{name}: set names {f['circuits/set'][:]}")
            stored = [x.decode() for x in f["circuits/choice"][:]]
        check([c.split(" ")[0] for c in stored] == [c[0] for c in choices], f"{name}: choices {stored} vs {choices}")
        for key in ("full", "empty", "metric"):
            want = np.asarray(golden[key])
            ok = close(got[key], want)
            largest = max(largest, float(np.max(np.abs(got[key] - want))))
            if not ok.all():
                where = np.argwhere(~ok)[0]
                check(False, f"{name}: {key}{list(where)} = {got[key][tuple(where)]!r}, reference {want[tuple(where)]!r}")
    print(f"reference jobs: largest |C - reference| {largest:.3g}")


# ---- the IOI known answers, ranks, resume ----------------------------------------------------------
KS = [5, 10, 20, 40, 80]


def ioi_job(tmp, name, prompts=6, sets=None, ablation=None):
    job = json.load(open(os.path.join(repo, "jobs", "ioi.json")))
    job = {"model": job["model"], "prompts": job["prompts"][:prompts], "corruption": "pair", "direction": "denoise",
           "metric": job.get("metric", "logit_diff"), "edges": "all", "positions": "all", "estimates": ["eap"]}
    everything = ["embed"] + [f"L{l}.{n}" for l in range(3) for n in ("H0", "H1", "H2", "H3", "mlp")]
    job["circuits"] = {"sets": sets or [{"name": "full", "nodes": everything}, {"name": "empty", "edges": []},
                                        {"name": "exact", "rank": "edges/exact", "k": KS},
                                        {"name": "random", "rank": "random", "seed": 0, "k": KS},
                                        {"name": "eap", "rank": "edges/eap", "k": [5, 20]}],
                       "granularity": ["edges", "nodes"],
                       "ablation": ablation or ["pair", "mean", {"resample": {"seeds": 2}}, "zero"]}
    return local_job(job, os.path.join(repo, "jobs"), tmp, name)


def ioi_known_answers(tmp):
    job, path = ioi_job(tmp, "ioi")
    if not (run("run", path) and run("circuit", path)):
        return None
    got = check_layout(job["output"], job, "ioi")
    faith, full, empty = got["faithfulness"], got["full"], got["empty"]
    A = empty.shape[0]
    defined = np.broadcast_to(full[None] != empty, (A,) + full.shape)
    check(np.all(faith[0][defined] == 1.0), f"ioi: the full circuit's faithfulness is not exactly 1: {faith[0][defined]}")
    check(np.all(faith[1][defined] == 0.0), f"ioi: the empty circuit's faithfulness is not exactly 0: {faith[1][defined]}")
    check(np.all(got["metric"][0] == full[None]), "ioi: the full circuit's metric is not the clean run's bit for bit")
    rom = got["ratio_of_means"]  # [C, A, M]
    exact, random = rom[2:2 + len(KS), 0, 0], rom[2 + len(KS):2 + 2 * len(KS), 0, 0]  # edges pair
    check(np.all(exact > random), f"ioi: exact top-k not above random at every k: exact {exact}, random {random}")
    print(f"ioi, edges pair, ratio of means at k = {KS}: exact {np.round(exact, 3)}, random {np.round(random, 3)}")
    gap = np.abs(got["metric"][2:, 0] - got["metric"][2:, A // 2])  # edges pair vs nodes pair, ranked circuits
    check(float(gap.max()) > 1e-3, f"ioi: edge and node ablation of the same circuits agree (largest gap {gap.max()})")
    print(f"ioi: exact k=10, pair: edges {rom[3, 0, 0]:.4f}, nodes {rom[3, A // 2, 0]:.4f}")
    # the curves: trapezoids over x = k / E from (0, 0), divided by the last x; the smallest k reaching a level
    with h5py.File(job["output"], "r") as f:
        E = len(f["edges/name"])
        auc, reach = f["circuits/sets/auc"][()], [f[f"circuits/sets/k{n}"][()] for n in (80, 90, 100)]
        curve_names = [x.decode() for x in f["circuits/sets/name"][:]]
    check(curve_names == ["exact", "random", "eap"], f"ioi: sets/name {curve_names}")
    for i, (first, ks) in enumerate(((2, KS), (2 + len(KS), KS), (2 + 2 * len(KS), [5, 20]))):
        for a in range(A):
            y = rom[first:first + len(ks), a, 0]
            x = np.array(ks, float) / E
            xs, ys = np.concatenate([[0.0], x]), np.concatenate([[0.0], y])
            want = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / x[-1])
            check(abs(auc[i, a, 0] - want) <= 1e-12, f"ioi: auc of {curve_names[i]} choice {a}: {auc[i, a, 0]} vs {want}")
            for level, got_k in zip((0.8, 0.9, 1.0), reach):
                hit = [k for k, v in zip(ks, y) if v >= level]
                check(got_k[i, a, 0] == (hit[0] if hit else -1), f"ioi: k{level} of {curve_names[i]} choice {a}")
    # the exact ranking's members: the top k of the mean over prompts of |/edges/exact|, ties by index
    with h5py.File(job["output"], "r") as f:
        scores = np.abs(f["edges/exact"][()][..., 0].astype(np.float64)).mean(0).sum(1)
    order = sorted(range(len(scores)), key=lambda e: (-scores[e], e))
    for r, k in enumerate(KS):
        want = np.zeros(len(scores), np.uint8)
        want[order[:k]] = 1
        check(np.array_equal(got["members"][2 + r][:, 0], want), f"ioi: exact top {k} members differ from the ranking")
        check(got["size"][2 + r] == k and got["k"][2 + r] == k, f"ioi: size/k of exact top {k}")
    return job, path


def rankings(tmp):
    """Every kind of ranked set, its members recomputed here from the file's arrays: effects/
    (nodes: the top heads and MLPs by mean |atp|, embed added, every edge out of them), a threshold,
    a signed score, position-specific cells, a seeded random ranking of cells."""
    job = json.load(open(os.path.join(repo, "jobs", "ioi.json")))
    job = {"model": job["model"], "prompts": job["prompts"][:3], "corruption": "pair", "direction": "denoise",
           "metric": "logit_diff", "nodes": ["z", "mlp_out"], "edges": "all", "positions": [10, -1],
           "estimates": ["atp", "eap"],
           "circuits": {"sets": [{"name": "atp", "rank": "effects/atp", "k": [2, 4]},
                                 {"name": "big", "rank": "edges/exact", "threshold": 0.05},
                                 {"name": "signed", "rank": "edges/eap", "score": "signed", "k": [5]},
                                 {"name": "cells", "rank": "edges/exact", "positions": "specific", "k": [10]},
                                 {"name": "rcells", "rank": "random", "seed": 3, "positions": "specific", "k": [7]}],
                        "ablation": ["zero"]}}
    job, path = local_job(job, os.path.join(repo, "jobs"), tmp, "rankings")
    if not (run("run", path) and run("circuit", path)):
        return
    got = check_layout(job["output"], job, "rankings")
    members, size = got["members"], got["size"]
    with h5py.File(job["output"], "r") as f:
        edges = [x.decode() for x in f["edges/name"][:]]
        exact, eap = (f[f"edges/{a}"][()][..., 0].astype(np.float64) for a in ("exact", "eap"))
        atp = f["effects/atp"][()][..., 0].astype(np.float64)
        nodes = [x.decode() for x in f["nodes/name"][:]]
        all_positions = f["circuits/all_positions"][()]
    E, S = len(edges), exact.shape[2]
    # effects/atp: heads and MLPs by the sum over columns of the mean |atp|, ties in upstream order
    upstream = ["embed"] + [f"L{l}.{n}" for l in range(3) for n in ("H0", "H1", "H2", "H3", "mlp")]
    score = {n.replace(".z", "").replace(".mlp_out", ".mlp"): np.nanmean(np.abs(atp[:, i]), axis=0).sum()
             for i, n in enumerate(nodes)}
    order = sorted(score, key=lambda u: (-score[u], upstream.index(u)))
    for r, k in enumerate((2, 4)):
        kept = {"embed", *order[:k]}
        want = np.array([[e.split("->")[0] in kept] * S for e in edges], np.uint8)
        check(np.array_equal(members[r], want), f"rankings: effects/atp top {k} members")
        check(size[r] == int(want[:, 0].sum()), f"rankings: effects/atp top {k} size {size[r]}")
    edge_score = np.nanmean(np.abs(exact), axis=0).sum(1)
    want = (edge_score >= 0.05).astype(np.uint8)
    check(np.array_equal(members[2][:, 0], want) and size[2] == want.sum(), f"rankings: threshold 0.05 ({size[2]} vs {want.sum()})")
    signed = np.nanmean(eap, axis=0).sum(1)
    want = np.zeros(E, np.uint8)
    want[sorted(range(E), key=lambda e: (-signed[e], e))[:5]] = 1
    check(np.array_equal(members[3][:, 0], want), "rankings: signed eap top 5")
    cells = np.nanmean(np.abs(exact), axis=0).reshape(-1)
    want = np.zeros(E * S, np.uint8)
    want[sorted(range(E * S), key=lambda c: (-cells[c], c))[:10]] = 1
    check(np.array_equal(members[4].reshape(-1), want) and size[4] == 10, "rankings: specific exact top 10 cells")
    check(members[5].sum() == 7 and size[5] == 7 and list(all_positions) == [1, 1, 1, 1, 0, 0],
          f"rankings: random cells {members[5].sum()}, all_positions {list(all_positions)}")


def done_offset(path):
    """(byte offset, count) of /circuits/done: contiguous, allocated when the group is made and never
    moved while a run of the same key writes, so its bytes can be polled while rank 0 writes."""
    with h5py.File(path, "r") as f:
        d = f["circuits/done"]
        return d.id.get_offset(), d.size


def ranks_and_resume(tmp, job, path):
    one = job["output"]
    if os.environ.get("PATCHSWEEP_SANITIZE", "").upper() in ("ON", "1", "TRUE"):
        print("sanitizer build: ranks and kill are the release build's; one resume on one rank here")
        light = dict(job, output=os.path.join(tmp, "light.h5"))
        shutil.copy(one, light["output"])
        with h5py.File(light["output"], "a") as f:
            f["circuits/done"][3:, 1:, 2:] = 0
            f["circuits/metric"][3:, 1:, 2:] = np.nan
        json.dump(light, open(path, "w"))
        if run("circuit", path):
            same_bits(one, light["output"], "resumed")
        json.dump(job, open(path, "w"))
        return
    three = dict(job, output=os.path.join(tmp, "ioi3.h5"))
    shutil.copy(one, three["output"])
    with h5py.File(three["output"], "a") as f:
        del f["circuits"]
    path3 = os.path.join(tmp, "ioi3.json")
    json.dump(three, open(path3, "w"))
    if run("circuit", path3, ranks=3):
        same_bits(one, three["output"], "1 vs 3 ranks")
    with h5py.File(three["output"], "a") as f:
        del f["circuits"]
    if run("circuit", path3, env={"PATCHSWEEP_THREADS": "2"}):
        same_bits(one, three["output"], "1 vs 2 threads")
    # SIGKILL a 2-rank run once some units are flagged done, then rerun: the same bits. The run
    # resumes the group of the same key whose flags (and values) were cleared here.
    with h5py.File(three["output"], "a") as f:
        f["circuits/done"][...] = 0
        f["circuits/metric"][...] = np.nan
    where = done_offset(three["output"])
    with h5py.File(one, "r") as f:
        reference = f["circuits/metric"][()]
    per_prompt = where[1] // len(job["prompts"])
    proc = subprocess.Popen(command("circuit", path3, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=ENV)
    seen, deadline = 0, time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        with open(three["output"], "rb") as f:
            f.seek(where[0])
            seen = sum(f.read(where[1]))
        if seen >= per_prompt:
            break
        time.sleep(0.002)
    killed = proc.poll() is None and seen < where[1]
    kill_session(proc)
    print(f"kill: {'after ' + str(seen) + ' of ' + str(where[1]) + ' units' if killed else 'too late: the run had finished'}")
    with h5py.File(three["output"], "r") as f:  # the file opens; every unit flagged done holds its values
        done = f["circuits/done"][()].astype(bool)
        metric = f["circuits/metric"][()]
    check(np.array_equal(metric[done], reference[done]), "killed: a unit flagged done does not hold its values")
    if run("circuit", path3):
        same_bits(one, three["output"], "killed and rerun")


def refusals(tmp, job):
    # a ranking by an array that is not complete
    partial = dict(job, output=os.path.join(tmp, "partial.h5"))
    shutil.copy(job["output"], partial["output"])
    with h5py.File(partial["output"], "a") as f:
        x = f["edges/exact"][()]
        x[1, 7, 0, 0] = np.nan
        f["edges/exact"][...] = x
    path = os.path.join(tmp, "partial.json")
    json.dump(partial, open(path, "w"))
    problem, _ = user_error([binary, "circuit", path], "/edges/exact")
    check(problem is None, f"incomplete ranking array: {problem}")
    # no results file yet
    missing = dict(job, output=os.path.join(tmp, "missing.h5"))
    json.dump(missing, open(path, "w"))
    problem, _ = user_error([binary, "circuit", path], "run the job first")
    check(problem is None, f"no results file: {problem}")
    # a job without circuits
    bare = {k: v for k, v in job.items() if k != "circuits"}
    json.dump(bare, open(path, "w"))
    problem, _ = user_error([binary, "circuit", path], "no \"circuits\" key")
    check(problem is None, f"no circuits key: {problem}")
    # plan counts the circuit passes: 6 prompts x (1 clean + pair (1 + 1 + C) + ...)
    p = subprocess.run([binary, "plan", job["output"][:-3] + ".json"], capture_output=True, text=True, timeout=60)
    check("circuits   " in p.stdout and "forward passes" in p.stdout, f"plan: no circuit line: {p.stdout}")


def replaced(tmp, job, path):
    """A different "circuits" key replaces the group; the rest of the file is untouched."""
    with h5py.File(job["output"], "r") as f:
        before = f["edges/exact"][()].tobytes()
    changed = dict(job, circuits={"sets": [{"name": "one", "edges": ["L2.mlp->logits"]}], "ablation": ["zero"]})
    json.dump(changed, open(path, "w"))
    if run("circuit", path):
        with h5py.File(job["output"], "r") as f:
            check(f["circuits/metric"].shape == (1, 1, 6, 1), f"replaced: shape {f['circuits/metric'].shape}")
            check(f["edges/exact"][()].tobytes() == before, "replaced: /edges/exact changed")


with tempfile.TemporaryDirectory() as tmp:
    reference_jobs(tmp)
    rankings(tmp)
    ioi = ioi_known_answers(tmp)
    if ioi:
        refusals(tmp, ioi[0])
        ranks_and_resume(tmp, *ioi)
        replaced(tmp, *ioi)

for f in failures:
    print("FAIL", f)
print(f"{len(failures)} failures")
sys.exit(1 if failures else 0)
