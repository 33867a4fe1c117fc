"""CLI: patchsweep bound, the false-negative bound after verifying the top of a ranking.
- the subsets drawn and their joint effects equal those of the independent PyTorch reference
  (tests/reference/gen_bound.py -> fixtures/golden/bound.json), on GPT-2 and Llama (GQA, a window
  of two layers), with pair and gaussian (three noise draws) corruptions, on q-side and kv-side
  sites;
- the ranking, the verified set and the subset masks follow the recipe of docs/methods.md (the
  generator re-implemented here); a tie block across the verified budget is never split by cell
  order (left to the bound, or verified whole with --ties verify; /bound/boundary_ties); the masks are drawn again from it, never stored (docs/results.md);
- estimate, se, ucb, theta and the sign-symmetric test's theta_sign and delta_sign equal the
  formulas of docs/methods.md recomputed with numpy;
- a rerun gives the same /bound bit for bit and replaces it; on 1, 2 and 3 MPI ranks the same;
- --metric bounds another of the job's metrics, bit for bit as a job of that metric alone;
  the sweep's datasets are untouched;
- bad input: one line, exit status 2, the results file unchanged.
Edges (bound --edges, docs/edges.md): the same checks on the cells (edge, column) of GPT-2 (pair,
gaussian), Llama (GQA, mean) and NeoX (parallel residual) edge jobs against the reference's joint
edge patches (the same fixture); the default ranker among eap, eap_ig, eap_ig_act; 1 and 2 ranks
bit for bit; the edge options' bad input.
Usage: test_bound.py BINARY FIXTURES SHARED"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
from statistics import NormalDist

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from mpi_util import ENV, user_error  # noqa: E402
from splitmix64 import SplitMix64  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []
# float32 forward passes against float64 ones: the effects tests see at most 8e-6 (docs/methods.md)
TOLERANCE = 3e-5


def check(cond, msg):
    if not cond:
        failures.append(msg)


def bound(job_path, *options):
    return subprocess.run([binary, "bound", job_path, "--quiet", *options], capture_output=True, text=True, timeout=300)


def sweep_digest(path):
    """A digest of every dataset outside /bound: what the sweep computed."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and not n.startswith("bound") else None)
        for n in sorted(names):
            h.update(n.encode() + f[n][()].tobytes())
    return h.hexdigest()


def read_bound(path):
    """/bound's datasets and attributes, the positions, and each node's site ("edges" for every
    edge of an edge bound)."""
    with h5py.File(path, "r") as f:
        g = f["bound"]
        edges = g.attrs.get("cells") in (b"edges", "edges")
        sites = ["edges"] * len(f["edges/name"]) if edges else [s.decode() for s in f["nodes/site"][()]]
        return {k: g[k][()] for k in g}, dict(g.attrs), None, f["positions"][()], sites


def expected_order(estimate, site_cells):
    """Cells of one prompt by |estimate|, largest first, ties in cell order (float32 compare)."""
    return sorted(site_cells, key=lambda c: (-abs(np.float32(estimate[c])), c))


def expected_verified(estimate, order, budget, verify_ties=False):
    """How many of the ranked cells are verified, and the size of the tie block (equal float32
    |estimate|) straddling the budget: never a pick among tied cells (docs/methods.md); the block
    is left to the bound, or verified whole with --ties verify."""
    key = [abs(np.float32(estimate[c])) for c in order]
    if budget <= 0 or budget >= len(order) or key[budget] != key[budget - 1]:
        return min(max(budget, 0), len(order)), 0
    first, end = budget - 1, budget + 1
    while first > 0 and key[first - 1] == key[budget - 1]:
        first -= 1
    while end < len(order) and key[end] == key[budget - 1]:
        end += 1
    return (end if verify_ties else first), end - first


def recall_found(exact, estimate, site_cells, budget):
    """How many of the true top min(budget, n) cells by |exact| an estimate's ranking finds within
    its first min(budget, n) (docs/methods.md, "Which estimator ranks"): a cell counts when fewer
    than budget + 1 cells score at least as high (a tie block straddling the place counts none),
    and where |exact| ties at the k-th value any of the tied cells completes the top k."""
    truth = np.array([abs(float(exact[c])) for c in site_cells])
    score = np.array([abs(float(estimate[c])) for c in site_cells])
    k = min(budget, len(site_cells))
    ranks = np.array([(score >= s).sum() for s in score])  # a tie block at its last rank
    kth = np.sort(truth)[::-1][k - 1]
    found = ranks <= k
    return int((found & (truth > kth)).sum()) + min(int((found & (truth == kth)).sum()), k - int((truth > kth).sum()))


def expected_ranker(path, site, budget):
    """The default ranking estimator: the best recall summed over prompts, ties to the first of
    atp, atp_qk, atp_star (edges, site "edges": eap, eap_ig, eap_ig_act); and each estimator's recall."""
    group, names = ("edges", ("eap", "eap_ig", "eap_ig_act")) if site == "edges" else ("effects", ("atp", "atp_qk", "atp_star"))
    with h5py.File(path, "r") as f:
        exact = f[f"{group}/exact"][..., 0]
        estimates = {e: f[f"{group}/{e}"][..., 0] for e in names if f"{group}/{e}" in f}
        positions = f["positions"][()]
        node_sites = ["edges"] * exact.shape[1] if site == "edges" else [s.decode() for s in f["nodes/site"][()]]
        lengths = f["prompts/length"][()]
    found, wanted = dict.fromkeys(estimates, 0), 0
    for p in range(exact.shape[0]):
        cells = [(n, j) for n in range(len(node_sites)) for j in range(len(positions))
                 if node_sites[n] == site and positions[j] < lengths[p]]
        wanted += min(budget, len(cells))
        for e in estimates:
            found[e] += recall_found(exact[p], estimates[e][p], cells, budget)
    recall = {e: found[e] / wanted for e in estimates}
    return max(estimates, key=lambda e: (recall[e], -list(estimates).index(e))), recall


def check_default_ranker(path, label, site, budget, want=None):
    """bound without --by ranks by the estimator of the best recall on the file's exact effects,
    records it and why (ranked_by, ranked_by_reason, recall_<estimator>), and prints it."""
    where = ["--edges"] if site == "edges" else ["--site", site]
    p = subprocess.run([binary, "bound", path, *where, "--verified", str(budget), "--subsets", "8"],
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"{label}: bound without --by: {p.stderr}")
    if p.returncode:
        return
    out = json.load(open(path))["output"]
    best, recall = expected_ranker(out, site, budget)
    with h5py.File(out, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["bound"].attrs.items()}
    check(attrs["ranked_by"] == best and (want is None or best == want),
          f"{label}: ranked by {attrs['ranked_by']}, the best recall is {best} ({recall}){'' if want is None else ', expected ' + want}")
    check("best recall" in attrs.get("ranked_by_reason", ""), f"{label}: ranked_by_reason {attrs.get('ranked_by_reason')!r}")
    for e, r in recall.items():
        check(abs(attrs.get(f"recall_{e}", -1) - r) <= 1e-12, f"{label}: recall_{e} {attrs.get(f'recall_{e}')}, expected {r}")
    check(f"ranked by {best}: best recall" in p.stdout, f"{label}: the choice is not printed: {p.stdout[:500]!r}")
    print(f"{label}: default ranker {best}, recall {', '.join(f'{e} {r:.3f}' for e, r in recall.items())}")


def check_job(tmp, case):
    name, site, by = case["job"], case["site"], case["by"]
    options = [x for key, value in case["options"].items() for x in (f"--{key}", str(value))]
    job = json.load(open(os.path.join(fixtures, "jobs", name + ".json")))
    job["model"] = os.path.normpath(os.path.join(fixtures, "jobs", job["model"]))
    job["output"] = os.path.join(tmp, name + ".h5")
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    p = subprocess.run([binary, "run", path, "--quiet"], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"{name}: run: {p.returncode} {p.stderr}")
    before = sweep_digest(job["output"])
    group = "edges" if case.get("edges") else "effects"
    p = bound(path, *(["--edges"] if case.get("edges") else ["--site", site]), "--by", by, *options)
    check(p.returncode == 0, f"{name}: bound: {p.returncode} {p.stderr}")
    if p.returncode:
        return path
    check(sweep_digest(job["output"]) == before, f"{name}: bound changed the sweep's datasets")
    b, attrs, _, positions, node_sites = read_bound(job["output"])
    with h5py.File(job["output"], "r") as f:
        estimates = f[f"{group}/{by}"][..., 0]  # bound reads the first metric
        lengths = f["prompts/length"][()]
    opts = dict(zip(options[::2], options[1::2]))
    K, verified_k = int(opts["--subsets"]), int(opts["--verified"])
    inclusion, confidence, seed = float(opts["--inclusion"]), float(opts.get("--confidence", 0.95)), int(opts.get("--seed", 0))
    text = lambda v: v.decode() if isinstance(v, bytes) else v
    check(text(attrs["site"]) == site, f"{name}: site attribute {attrs['site']!r}")
    check(text(attrs["cells"]) == ("edges" if group == "edges" else "nodes"), f"{name}: cells attribute {attrs['cells']!r}")
    P, N, S = estimates.shape
    check(abs(attrs["delta_sign"] - (1 - inclusion / 2) ** K) <= 1e-12, f"{name}: delta_sign {attrs['delta_sign']}")
    check("in_subset" not in b, f"{name}: /bound/in_subset is stored; the masks are to be drawn again from the seed")
    check(b["subset_effect"].shape == (P, K), f"{name}: shapes {b['subset_effect'].shape}")
    masks = np.zeros((P, K, N, S), dtype=np.uint8)
    largest_ucb_gap = 0.0
    for p in range(P):
        site_cells = [(n, j) for n in range(N) for j in range(S) if node_sites[n] == site and positions[j] < lengths[p]]
        order = expected_order(estimates[p], site_cells)
        n_verified, block = expected_verified(estimates[p], order, verified_k)
        verified, unverified = order[:n_verified], order[n_verified:]
        got_block = b["boundary_ties"][p] if "boundary_ties" in b else None
        check(got_block == block, f"{name} prompt {p}: boundary_ties {got_block}, expected {block}")
        got_verified = sorted(zip(*np.nonzero(b["verified"][p])))
        check(got_verified == sorted(verified), f"{name} prompt {p}: verified cells {got_verified[:5]}... != {sorted(verified)[:5]}...")
        # the masks: draw u of subset k is splitmix64(seed, p, k)'s u-th uniform, unverified cells in rank order
        mask = np.zeros((K, N, S), dtype=np.uint8)
        for k in range(K):
            rng = SplitMix64(seed, p, k)
            for (n, j) in unverified:
                mask[k, n, j] = rng.uniform() < inclusion
        masks[p] = mask
        # the statistics
        I = b["subset_effect"][p]
        z = NormalDist().inv_cdf(1 - (1 - confidence) / (2 * max(len(unverified), 1)))
        theta = 0.0
        for (n, j) in unverified:
            inside = mask[:, n, j] == 1
            a, c = I[inside], I[~inside]
            if len(a) < 2 or len(c) < 2:
                check(math.isinf(b["ucb"][p, n, j]), f"{name} prompt {p} cell {(n, j)}: {len(a)} subsets in, ucb not inf")
                theta = math.inf
                continue
            est = a.mean() - c.mean()
            se = math.sqrt(a.var(ddof=1) / len(a) + c.var(ddof=1) / len(c))
            ucb = abs(est) + z * se
            theta = max(theta, ucb)
            for key, want in (("estimate", est), ("se", se), ("ucb", ucb)):
                got = b[key][p, n, j]
                if not abs(got - want) <= 1e-9 * max(1.0, abs(want)):
                    failures.append(f"{name} prompt {p} cell {(n, j)}: {key} {got!r}, recomputed {want!r}")
            largest_ucb_gap = max(largest_ucb_gap, abs(b["ucb"][p, n, j] - ucb))
        check(b["theta"][p] == theta or abs(b["theta"][p] - theta) <= 1e-9 * max(1.0, theta),
              f"{name} prompt {p}: theta {b['theta'][p]} != {theta}")
        theta_sign = np.max(np.abs(I)) if unverified else 0.0
        check(b["theta_sign"][p] == theta_sign, f"{name} prompt {p}: theta_sign {b['theta_sign'][p]} != max |I| {theta_sign}")
        outside = np.ones((N, S), dtype=bool)
        for cell in unverified:
            outside[cell] = False
        check(np.isnan(b["ucb"][p][outside]).all(), f"{name} prompt {p}: ucb set outside the unverified cells")

    # the reference's subsets and joint effects
    worst = 0.0
    for ref in case["subsets"]:
        p, k = ref["prompt"], ref["subset"]
        cells = sorted(map(list, zip(*np.nonzero(masks[p, k]))))
        if cells != sorted(ref["cells"]):
            failures.append(f"{name} prompt {p} subset {k}: patchsweep drew {len(cells)} cells, the reference "
                            f"{len(ref['cells'])} (a different ranking or recipe)")
            continue
        got, want = b["subset_effect"][p, k], ref["effect"]
        worst = max(worst, abs(got - want))
        check(abs(got - want) <= TOLERANCE * max(1.0, abs(want)),
              f"{name} prompt {p} subset {k} ({len(cells)} cells): patchsweep {got:.8g}, reference {want:.8g}")
    print(f"{name}: {'edges' if group == 'edges' else 'site ' + site} by {by}: {P} prompts, masks and statistics as documented (ucb within {largest_ucb_gap:.1e}); "
          f"{len(case['subsets'])} joint patches match the reference within {worst:.1e}")
    return path


with tempfile.TemporaryDirectory() as tmp:
    ref_cases = json.load(open(os.path.join(fixtures, "golden", "bound.json")))
    paths = [check_job(tmp, case) for case in ref_cases]
    gpt2 = paths[0]
    opts = [x for key, value in ref_cases[0]["options"].items() for x in (f"--{key}", str(value))] + ["--by", ref_cases[0]["by"]]

    # Rerun: the same bits; other options replace the group.
    out = json.load(open(gpt2))["output"]
    first = read_bound(out)[0]
    p = bound(gpt2, "--site", "z", *opts)
    again = read_bound(out)[0]
    check(p.returncode == 0 and all(np.array_equal(first[k], again[k], equal_nan=True) for k in first),
          f"a rerun with the same options gave another /bound: {p.stderr}")
    for ranks in (2, 3):
        p = subprocess.run(["mpiexec", "-n", str(ranks), "--oversubscribe", binary, "bound", gpt2, "--quiet", "--site", "z",
                            *opts], capture_output=True, text=True, timeout=300, env=ENV)
        spread = read_bound(out)[0]
        check(p.returncode == 0 and all(np.array_equal(first[k], spread[k], equal_nan=True) for k in first),
              f"/bound on {ranks} ranks differs from 1 rank: {p.returncode} {p.stderr[-300:]}")
    p = bound(gpt2, "--site", "mlp_post", "--subsets", "6", "--verified", "0")
    with h5py.File(out, "r") as f:
        check(p.returncode == 0 and f["bound"].attrs["subsets"] == 6 and f["bound/subset_effect"].shape[1] == 6
              and f["bound/verified"][()].sum() == 0, f"a rerun with other options did not replace /bound: {p.stderr}")

    # The default ranking estimator: the best recall on the file's exact effects, on the file as
    # it is and with AtP* made useless (every estimate 0, one tie block); AtP without exact effects.
    check_default_ranker(gpt2, "gpt2-pair-denoise z", "z", 10)
    check_default_ranker(gpt2, "gpt2-pair-denoise mlp_post", "mlp_post", 4)
    with h5py.File(out, "r+") as f:
        saved = f["effects/atp_star"][()]
        f["effects/atp_star"][()] = np.where(np.isnan(saved), saved, 0.0)
    check_default_ranker(gpt2, "gpt2-pair-denoise z, AtP* all 0", "z", 10, want="atp")
    with h5py.File(out, "r+") as f:
        f["effects/atp_star"][()] = saved

    # Ties across the boundary are never picked by cell order: prompt 0's z cells ranked 3rd to 7th
    # by AtP* are made to tie (equal |estimate|, mixed signs), across a budget of 5.
    with h5py.File(out, "r+") as f:
        star = f["effects/atp_star"]
        saved = star[0][()]
        sites, positions, lengths = [x.decode() for x in f["nodes/site"][()]], f["positions"][()], f["prompts/length"][()]
        site_cells = [(n, j) for n in range(len(sites)) for j in range(len(positions)) if sites[n] == "z" and positions[j] < lengths[0]]
        order = expected_order(saved[..., 0], site_cells)
        tied = saved[order[2] + (0,)]
        edited = saved.copy()
        for i, c in enumerate(order[2:7]):
            edited[c + (0,)] = tied if i % 2 else -tied
        star[0] = edited
    for ties, want in (("bound", order[:2]), ("verify", order[:7])):
        p = subprocess.run([binary, "bound", gpt2, "--site", "z", "--by", "atp_star", "--verified", "5", "--subsets", "12", "--ties", ties],
                           capture_output=True, text=True, timeout=300)
        with h5py.File(out, "r") as f:
            got = sorted(zip(*np.nonzero(f["bound/verified"][0]))) if p.returncode == 0 else None
            block = f["bound/boundary_ties"][()].tolist() if p.returncode == 0 and "boundary_ties" in f["bound"] else None
            attr = f["bound"].attrs.get("ties") if p.returncode == 0 else None
        check(got == sorted(want), f"--ties {ties}: prompt 0 verified {got}, expected the {len(want)} cells {sorted(want)}")
        check(block is not None and block[0] == 5 and block[1:] == [0, 0],
              f"--ties {ties}: /bound/boundary_ties {block}, expected [5, 0, 0]")
        check(attr in (ties, ties.encode()), f"--ties {ties}: the ties attribute is {attr!r}")
        check("5 cells tie at |atp_star|" in p.stdout, f"--ties {ties}: the tie is not reported: {p.stdout[:400]!r}")
    with h5py.File(out, "r+") as f:
        f["effects/atp_star"][0] = saved

    # --metric: a job of four metrics bounded for its third gives the bits of a job with that
    # metric alone (the estimates ranked and the joint patches are that metric's); the default is
    # the first; the attribute names it.
    metrics_job = json.load(open(os.path.join(fixtures, "jobs", "gpt2-pair-metrics.json")))
    metrics_job["model"] = os.path.normpath(os.path.join(fixtures, "jobs", metrics_job["model"]))
    bounded = {}
    for label, metric, options in (("several", metrics_job["metric"], ["--metric", "prob"]), ("alone", "prob", []),
                                   ("first", metrics_job["metric"], [])):
        job_path = os.path.join(tmp, f"metric-{label}.json")
        json.dump(dict(metrics_job, metric=metric, output=os.path.join(tmp, f"metric-{label}.h5")), open(job_path, "w"))
        p = subprocess.run([binary, "run", job_path, "--quiet"], capture_output=True, text=True, timeout=300)
        p = p.returncode == 0 and bound(job_path, "--site", "z", "--by", "atp", "--subsets", "12", "--inclusion", "0.3", *options)
        check(p and p.returncode == 0, f"--metric {label}: {p and p.stderr}")
        if p and p.returncode == 0:
            bounded[label] = read_bound(os.path.join(tmp, f"metric-{label}.h5"))[:2]
    if len(bounded) == 3:
        (several, several_attrs), (alone, alone_attrs), (_, first_attrs) = (bounded[k] for k in ("several", "alone", "first"))
        check(all(np.array_equal(several[k], alone[k], equal_nan=True) for k in alone) and set(several) == set(alone),
              "bound --metric prob on a job of four metrics differs from the job with prob alone")
        check([a.get("metric") for a in (several_attrs, alone_attrs, first_attrs)] == [b"prob", b"prob", b"kl"],
              f"metric attributes {[a.get('metric') for a in (several_attrs, alone_attrs, first_attrs)]}")
    several_job = os.path.join(tmp, "metric-several.json")

    # The check compares at the exact effects' float32 precision: an unverified cell whose float32
    # effect is the sign test's bound rounded to nearest, and so above it in double, is no miss.
    def sign_held(stdout):
        line = [x for x in stdout.splitlines() if x.startswith("sign-symmetric test")]
        return int(line[0].split("held on ")[1].split()[0]) if line and "held on" in line[0] else None
    p = subprocess.run([binary, "bound", gpt2, "--site", "z", *opts], capture_output=True, text=True, timeout=300)
    held_before = sign_held(p.stdout)
    with h5py.File(out, "r+") as f:
        theta_sign, ucb, exact = f["bound/theta_sign"][()], f["bound/ucb"][()], f["effects/exact"]
        rounds_up = [q for q in range(len(theta_sign)) if float(np.float32(theta_sign[q])) > theta_sign[q]]
        q = rounds_up[0] if rounds_up else 0
        index = (q,) + tuple(np.argwhere(~np.isnan(ucb[q]))[0]) + (0,)
        saved_cell, missed = exact[index], np.nanmax(np.where(np.isnan(ucb[q]), np.nan, np.abs(exact[q][..., 0])))
        exact[index] = np.float32(theta_sign[q])
    p = subprocess.run([binary, "bound", gpt2, "--site", "z", *opts], capture_output=True, text=True, timeout=300)
    check(rounds_up and missed <= theta_sign[q] and sign_held(p.stdout) == held_before,
          f"a bound equal to a float32 effect rounded up counts as a miss (prompt {q}; the sign test held on "
          f"{held_before} before, {sign_held(p.stdout)} after): {p.stdout[-300:]!r}")
    with h5py.File(out, "r+") as f:
        f["effects/exact"][index] = saved_cell

    # The printed summary names the bound and checks it against the exact sweep.
    p = subprocess.run([binary, "bound", gpt2, "--site", "z", *opts], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0 and "check against the exact sweep" in p.stdout and "prompt 2:" in p.stdout,
          f"summary: {p.stdout[-400:]!r}")

    # The use it is meant for: a job with estimates only ("exact": false), then the bound.
    job = json.load(open(os.path.join(fixtures, "jobs", "llama-window-estimates.json")))
    job["model"] = os.path.normpath(os.path.join(fixtures, "jobs", job["model"]))
    job["output"] = os.path.join(tmp, "estimates-only.h5")
    estimates_only = os.path.join(tmp, "estimates-only.json")
    json.dump(job, open(estimates_only, "w"))
    p = subprocess.run([binary, "run", estimates_only, "--quiet"], capture_output=True, text=True, timeout=300)
    p = p.returncode == 0 and subprocess.run([binary, "bound", estimates_only, "--site", "mlp_post", "--subsets", "40", "--inclusion", "0.3"],
                                             capture_output=True, text=True, timeout=300)
    check(p and p.returncode == 0 and "largest bound over prompts" in p.stdout and "check against" not in p.stdout,
          f"bound on an estimates-only job: {p and (p.returncode, p.stdout[-300:], p.stderr)}")
    check(p and "ranked by atp: the file holds no exact effects" in p.stdout,
          f"an estimates-only job is not ranked by AtP, saying why: {p and p.stdout[:400]!r}")
    if p and p.returncode == 0:
        with h5py.File(job["output"], "r") as f:
            check("effects/exact" not in f and np.isfinite(f["bound/theta"][()]).all(),
                  "estimates-only job: no finite bound")

    # Bad input: one line, exit 2, nothing changed.
    before = hashlib.sha256(open(out, "rb").read()).hexdigest()
    job = json.load(open(gpt2))
    no_estimates = os.path.join(tmp, "no-estimates.json")
    json.dump(dict(job, estimates=[]), open(no_estimates, "w"))
    other_metric = os.path.join(tmp, "other-metric.json")
    json.dump(dict(job, metric="logprob"), open(other_metric, "w"))
    missing = os.path.join(tmp, "missing.json")
    json.dump(dict(job, output=os.path.join(tmp, "nothing-here.h5")), open(missing, "w"))
    junk = os.path.join(tmp, "junk.json")
    open(os.path.join(tmp, "junk.h5"), "w").write("not a results file\n")
    json.dump(dict(job, output=os.path.join(tmp, "junk.h5")), open(junk, "w"))
    cases = [
        ([gpt2], "several sites"),
        ([gpt2, "--site", "nonsense"], "--site \"nonsense\" is not a site"),
        ([gpt2, "--site", "attn_out", "--by", "atp_qk", "--site", "mlp_out"], "--site is given twice"),
        ([gpt2, "--site", "z", "--by", "grad"], "--by \"grad\" is not an estimator"),
        ([gpt2, "--site", "z", "--inclusion", "1.5"], "--inclusion must be a number strictly between 0 and 1"),
        ([gpt2, "--site", "z", "--confidence", "abc"], "--confidence must be a number"),
        ([gpt2, "--site", "z", "--subsets", "2"], "--subsets must be an integer >= 4"),
        ([gpt2, "--site", "z", "--verified", "-1"], "--verified must be an integer >= 0"),
        ([gpt2, "--site", "z", "--verified"], "--verified needs a value"),
        ([gpt2, "--site", "z", "--fast"], "unknown option \"--fast\""),
        ([gpt2, "--site", "z", "--ties", "random"], "--ties must be \"bound\" or \"verify\", got \"random\""),
        ([several_job, "--site", "z", "--metric", "accuracy"], "--metric accuracy: the job"),
        ([several_job, "--site", "z", "--metric", "kl", "--metric", "prob"], "--metric is given twice"),
        ([no_estimates, "--site", "z"], "computes no estimates"),
        ([other_metric, "--site", "z"], "different job or model"),
        ([missing, "--site", "z"], "does not exist; run the job first"),
        ([junk, "--site", "z"], "is not a patchsweep results file"),
        ([os.path.join(tmp, "no-such-job.json"), "--site", "z"], "no-such-job.json"),
    ]
    gaussian = os.path.join(tmp, "gpt2-gaussian.json")
    cases.append(([gaussian, "--site", "k", "--by", "atp_qk"], "does not compute that estimate"))
    cases.append(([gaussian, "--site", "q"], "does not patch that site"))
    for args, fragment in cases:
        problem, _ = user_error([binary, "bound", *args], fragment)
        if problem:
            failures.append(f"bound {' '.join(os.path.basename(a) for a in args)}: {problem}")
    check(hashlib.sha256(open(out, "rb").read()).hexdigest() == before, "a refused bound changed the results file")

    # Edges: the default ranker; 2 ranks as 1; the edge options' bad input.
    edge_case = next(i for i, case in enumerate(ref_cases) if case.get("edges"))
    edge_job, edge_opts = paths[edge_case], [x for key, value in ref_cases[edge_case]["options"].items()
                                             for x in (f"--{key}", str(value))] + ["--by", ref_cases[edge_case]["by"]]
    check_default_ranker(edge_job, "edges-gpt2-pair-noise-each", "edges", 10)
    edge_out = json.load(open(edge_job))["output"]
    bound(edge_job, *edge_opts)
    first = read_bound(edge_out)[0]
    p = subprocess.run(["mpiexec", "-n", "2", "--oversubscribe", binary, "bound", edge_job, "--quiet", *edge_opts],
                       capture_output=True, text=True, timeout=300, env=ENV)
    spread = read_bound(edge_out)[0]
    check(p.returncode == 0 and all(np.array_equal(first[k], spread[k], equal_nan=True) for k in first),
          f"edge /bound on 2 ranks differs from 1 rank: {p.returncode} {p.stderr[-300:]}")
    before = hashlib.sha256(open(edge_out, "rb").read()).hexdigest()
    for args, fragment in (([edge_job, "--by", "atp"], "--by \"atp\" is not an edge estimator"),
                           ([edge_job, "--site", "z"], "--site z: with edges the cells are the job's edges"),
                           ([gpt2, "--edges"], "patches no edges")):
        problem, _ = user_error([binary, "bound", *args], fragment)
        if problem:
            failures.append(f"bound {' '.join(os.path.basename(a) for a in args)}: {problem}")
    check(hashlib.sha256(open(edge_out, "rb").read()).hexdigest() == before, "a refused edge bound changed the results file")

    # An unfinished sweep: a missing estimate is named, and nothing is written.
    with h5py.File(out, "r+") as f:
        z_node = [s.decode() for s in f["nodes/site"][()]].index("z")
        f["effects/atp_star"][1, z_node, 2, 0] = np.nan
        name = f["nodes/name"][z_node].decode()
    before = hashlib.sha256(open(out, "rb").read()).hexdigest()
    problem, line = user_error([binary, "bound", gpt2, "--site", "z", "--by", "atp_star"], "prompt 1 has no atp_star estimate")
    if problem:
        failures.append(f"unfinished sweep: {problem}")
    elif f"for {name} at position 2" not in line:
        failures.append(f"unfinished sweep: {line!r} does not name {name} at position 2")
    check(hashlib.sha256(open(out, "rb").read()).hexdigest() == before, "a refused bound changed the results file")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
