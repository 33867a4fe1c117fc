"""The demo end to end: jobs/induction.json on models/induction-2l under mpiexec, then
`patchsweep top`. What the patching finds is checked against what the attention patterns say
(`patchsweep heads`), not against hard-coded head names:
- among z nodes at the last position, the largest mean |exact effect| is a layer-1 head, and
  the one with the highest induction score in its layer;
- at the position right after the first occurrence of the last token (position 8), the
  layer-1 key with the largest effect is that same head's key, and the layer-0 head with the
  largest effect is a previous-token head (score >= 0.5: it puts most of its attention on the
  previous token);
- every estimator is present and finite where the exact effect is;
- `bound --site z` ranks by the estimator of the best recall (not AtP*) and holds on (nearly) every
  prompt; ranked by AtP*, every prompt it misses on misses a layer-0 previous-token head at
  position 8 whose estimate the subsets shrank toward 0 (the sub-additivity docs/methods.md
  measures);
- jobs/ioi.json on models/ioi-small (templates and names it never trained on) runs, and the
  model answers both versions of every prompt right: metric < 0 on the corrupted base run
  (whose answer is the other name), > 0 on the clean source run.
Usage: test_demo.py BINARY FIXTURES SHARED"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import ENV  # noqa: E402

binary, fixtures = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
root = os.path.normpath(os.path.join(fixtures, "..", ".."))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


heads = subprocess.run([binary, "heads", "--model", os.path.join(root, "models", "induction-2l")],
                       capture_output=True, text=True, check=True).stdout
scores = {}
for line in heads.splitlines():
    if line.startswith("L"):
        name, ind, prev = line.split()
        scores[name] = (float(ind), float(prev))

with tempfile.TemporaryDirectory() as tmp:
    job = json.load(open(os.path.join(root, "jobs", "induction.json")))
    job["model"] = os.path.join(root, "models", "induction-2l")
    job["output"] = os.path.join(tmp, "induction.h5")
    path = os.path.join(tmp, "induction.json")
    json.dump(job, open(path, "w"))
    p = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", binary, "run", path], capture_output=True, text=True,
                       timeout=600, env=ENV)
    check(p.returncode == 0, f"demo run: exit {p.returncode}: {p.stderr[-800:]}")
    with h5py.File(job["output"], "r") as f:
        exact = f["effects/exact"][:]
        names = [n.decode() for n in f["nodes/name"][:]]
        for e in ("atp", "atp_qk", "atp_star"):
            est = f[f"effects/{e}"][:]
            check(np.isfinite(est[~np.isnan(exact)]).all(), f"{e} is not finite where exact is")
    mean = np.nanmean(np.abs(exact), axis=0)  # [node, position]
    last = len(job["prompts"][0]["clean"]) - 1
    after_first = 8  # <bos> at 0, A[0..9] at 1..10: A[6] first occurs at 7

    def best(filter_fn, position):
        candidates = [i for i, n in enumerate(names) if filter_fn(n)]
        return names[max(candidates, key=lambda i: mean[i, position])]

    top_z = best(lambda n: n.endswith(".z"), last)
    layer, head = top_z.split(".")[0], top_z.split(".")[1]
    induction_best = max((s[0], h) for h, s in scores.items() if h.startswith("L1."))[1]
    check(layer == "L1", f"the largest z effect at the last position is {top_z}, not a layer-1 head")
    check(f"{layer}.{head}" == induction_best, f"the largest z effect at the last position is {top_z}, but the head with "
          f"the highest induction score in layer 1 is {induction_best}")
    top_key = best(lambda n: n.startswith("L1.") and n.endswith(".k"), after_first)
    check(top_key.replace("KV", "H").rsplit(".", 1)[0] == induction_best,
          f"the largest layer-1 key effect at position {after_first} is {top_key}, not {induction_best}'s key")
    top_l0 = best(lambda n: n.startswith("L0.") and n.endswith(".z"), after_first)
    l0_head = top_l0.rsplit(".", 1)[0]
    check(scores[l0_head][1] >= 0.5, f"the largest layer-0 head effect at position {after_first} is {top_l0}, whose "
          f"previous-token score is {scores[l0_head][1]}")
    print(f"top z at the last position: {top_z} (highest induction score in layer 1: {induction_best}); "
          f"at position {after_first}: key {top_key}, layer-0 head {top_l0} (previous-token score {scores[l0_head][1]})")

    top = subprocess.run([binary, "top", job["output"], "-k", "12"], capture_output=True, text=True)
    check(top.returncode == 0 and induction_best + ".z" in top.stdout and "atp_star" in top.stdout,
          f"patchsweep top: {top.returncode} {top.stdout} {top.stderr}")
    print(top.stdout)
    # Estimator ranks in top: the cells with a mean |estimate| at least as large, so a tie block
    # gets its last rank (AtP*'s block of exact zeros is one rank at the bottom, not a sort order).
    with h5py.File(job["output"], "r") as f:
        star = np.nanmean(np.abs(f["effects/atp_star"][()]), axis=0).ravel()
        positions = list(f["positions"][()])
    for line in top.stdout.splitlines():
        fields = line.split()
        if len(fields) < 9 or not fields[0].isdigit():
            continue
        cell = names.index(fields[1]) * len(positions) + positions.index(int(fields[2]))
        want = int(np.sum(star >= star[cell]))
        check(int(fields[-1]) == want, f"top: {fields[1]} at {fields[2]} has atp_star rank {fields[-1]}, expected {want}")

    # The bound on the heads the ranking left out, as the demo runs it, against the exact sweep.
    # Without --by it ranks by the estimator whose top 10 finds the most of the true top 10 (AtP
    # here, 270 of 320; AtP* 130): measured on the committed model the bound held on 32 of 32
    # prompts and each cell's own ucb covered its |exact effect| for 99.95% of the cells.
    def run_bound(*options):
        p = subprocess.run([binary, "bound", path, "--site", "z", *options], capture_output=True, text=True, timeout=300)
        check(p.returncode == 0, f"bound {' '.join(options)}: exit {p.returncode}: {p.stderr[-500:]}")
        if p.returncode:
            return None
        with h5py.File(job["output"], "r") as f:
            b = {k: f["bound"][k][()] for k in ("ucb", "theta", "theta_sign", "estimate", "se")}
            b["ranked_by"] = f["bound"].attrs["ranked_by"]
        unverified = ~np.isnan(b["ucb"])
        b["covered"] = np.mean(np.abs(exact[..., 0][unverified]) <= b["ucb"][unverified])
        b["missed"] = [np.nanmax(np.where(unverified[q], np.abs(exact[q, ..., 0]), np.nan)) for q in range(len(b["theta"]))]
        b["held"] = sum(b["missed"][q] <= b["theta"][q] for q in range(len(b["theta"])))
        b["held_sign"] = sum(b["missed"][q] <= b["theta_sign"][q] for q in range(len(b["theta"])))
        return b

    b = run_bound()
    if b is not None:
        check(b["ranked_by"] in (b"atp", b"atp_qk") and b["held"] >= 28 and b["covered"] >= 0.99 and b["held_sign"] >= 30,
              f"bound ranked by {b['ranked_by']}: held on {b['held']} of 32 prompts (sign test {b['held_sign']}), "
              f"each cell's ucb covers its |exact| for {b['covered']:.1%}")
        print(f"bound on z by {b['ranked_by'].decode()}: held on {b['held']} of 32 prompts (sign test: {b['held_sign']}); "
              f"each cell's ucb covers its |exact| for {b['covered']:.1%}")
    # Ranked by AtP* it misses on some prompts (25 of 32 held when measured), and always the same way
    # (docs/methods.md): the cell missed is a layer-0 previous-token head at position 8, whose
    # estimate the subsets shrink toward 0 by more than two standard errors: a bias from its
    # sub-additive partner there, not bad luck.
    b = run_bound("--by", "atp_star")
    if b is not None:
        misses = [q for q in range(32) if b["missed"][q] > b["theta"][q]]
        check(b["held"] >= 20 and b["held_sign"] >= 30, f"bound by atp_star: held on {b['held']}, sign test {b['held_sign']}")
        for q in misses:
            n, s = np.unravel_index(np.nanargmax(np.where(np.isnan(b["ucb"][q]), np.nan, np.abs(exact[q, ..., 0]))),
                                    b["ucb"][q].shape)
            head, position = names[n].rsplit(".", 1)[0], int(positions[s])
            shrunk = abs(exact[q, n, s, 0]) - abs(b["estimate"][q, n, s])
            check(head.startswith("L0.H") and names[n].endswith(".z") and scores[head][1] >= 0.5 and position == after_first
                  and shrunk > 2 * b["se"][q, n, s],
                  f"bound by atp_star, prompt {q}: missed {names[n]} at {position} (exact {exact[q, n, s, 0]:.3f}, "
                  f"estimate {b['estimate'][q, n, s]:.3f} +- {b['se'][q, n, s]:.3f})")
        print(f"bound on z by atp_star: held on {b['held']} of 32; each miss a layer-0 previous-token head at position "
              f"{after_first}, its estimate shrunk toward 0")

    ioi = json.load(open(os.path.join(root, "jobs", "ioi.json")))
    ioi["model"] = os.path.join(root, "models", "ioi-small")
    ioi["output"] = os.path.join(tmp, "ioi.h5")
    json.dump(ioi, open(os.path.join(tmp, "ioi.json"), "w"))
    p = subprocess.run([binary, "run", os.path.join(tmp, "ioi.json"), "--quiet"], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"ioi job: exit {p.returncode}: {p.stderr[-500:]}")
    if p.returncode == 0:
        with h5py.File(ioi["output"], "r") as f:
            base, source = f["baseline/base"][()], f["baseline/source"][()]
        check((base < 0).all() and (source > 0).all(), f"ioi-small gets some prompts wrong: base {base}, source {source}")
        print(f"ioi: base metric {base.mean():.2f} (corrupted), source {source.mean():.2f} (clean), all {len(base)} right")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
