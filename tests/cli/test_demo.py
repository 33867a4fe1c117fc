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
    # Joint patches of heads are not additive here, so the bound may miss on some prompts
    # (docs/methods.md: 22 of 32 held when measured on the committed model; 26 of 32 on the one
    # trained before the kernels changed); each cell's own ucb should still cover its |exact effect|
    # almost always.
    p = subprocess.run([binary, "bound", path, "--site", "z"], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"bound: exit {p.returncode}: {p.stderr[-500:]}")
    if p.returncode == 0:
        with h5py.File(job["output"], "r") as f:
            ucb, theta, theta_sign = f["bound/ucb"][()], f["bound/theta"][()], f["bound/theta_sign"][()]
        unverified = ~np.isnan(ucb)
        covered = np.mean(np.abs(exact[unverified]) <= ucb[unverified])
        missed = [np.nanmax(np.abs(exact[q][unverified[q]])) for q in range(len(theta))]
        held = sum(missed[q] <= theta[q] for q in range(len(theta)))
        held_sign = sum(missed[q] <= theta_sign[q] for q in range(len(theta)))
        check(held >= 20 and covered >= 0.98, f"the bound held on {held} of {len(theta)} prompts and covered "
              f"{covered:.1%} of the cells")
        check(held_sign >= 28, f"the sign-symmetric bound held on {held_sign} of {len(theta)} prompts")
        print(f"bound on z: held on {held} of {len(theta)} prompts (sign test: {held_sign}); each cell's ucb covers its "
              f"|exact| for {covered:.1%}")

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
