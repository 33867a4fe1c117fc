"""CLI: rerunning an edited job on its results file.
- A job that only gained node sites or estimators grows its file: every finished exact unit is
  carried over, not recomputed (its /progress/seconds stay the old run's), and the file equals a
  fresh run of the edited job bit for bit; units the old run had not finished are computed.
- Any other edit is refused in one line (exit 2) naming the fields that differ, the file
  untouched: metric, prompts (which one), a removed site, another model.
Usage: test_edited_job.py BINARY FIXTURES SHARED"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def write_job(tmp, name, output, **changes):
    job = json.load(open(os.path.join(fixtures, "jobs", "gpt2-pair-denoise.json")))
    job["model"] = os.path.join(fixtures, "models", "gpt2-tiny")
    job.update(nodes=["z", "mlp_out"], estimates=["atp"], output=output)
    job.update(changes)
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    return path


def run(path):
    return subprocess.run([binary, "run", path], capture_output=True, text=True, timeout=300)


def unit_cells(f):
    """(prompt, node names) of every exact unit -> its index, seconds and done flag."""
    names = [n.decode() for n in f["nodes/name"][()]]
    out = {}
    for u, kind in enumerate(f["progress/unit_kind"][()]):
        if kind == 0:
            p, n0, n = (int(f[f"progress/unit_{k}"][u]) for k in ("prompt", "node0", "nodes"))
            out[(p, tuple(names[n0:n0 + n]))] = (u, f["progress/seconds"][u], f["progress/done"][u])
    return out


with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "out.h5")
    small = write_job(tmp, "small", out)
    grown_nodes = ["resid_pre", "z", "mlp_out", "mlp_post"]  # sites before, between and after the old ones
    grown = write_job(tmp, "grown", out, nodes=grown_nodes, estimates=["atp", "atp_star"])
    fresh = write_job(tmp, "fresh", os.path.join(tmp, "fresh.h5"), nodes=grown_nodes, estimates=["atp", "atp_star"])
    p = run(small)
    check(p.returncode == 0, f"small job: {p.returncode} {p.stderr}")
    # An interrupted old run: its first exact unit not done (and holding garbage).
    with h5py.File(out, "r+") as f:
        f["progress/done"][0] = 0
        f["effects/exact"][0, :4] = 12345.0
        f.attrs["complete"] = 0
        old_units = unit_cells(f)
    p = run(grown)
    check(p.returncode == 0, f"grown job: {p.returncode} {p.stderr}")
    n_carried = sum(1 for _, _, done in old_units.values() if done)
    check(f"the job gained nodes (+resid_pre +mlp_post); estimates (+atp_star): {n_carried} of " in p.stdout,
          f"grown job: no line saying what was carried: {p.stdout!r}")
    check(run(fresh).returncode == 0, "fresh run of the grown job failed")
    with h5py.File(out, "r") as f, h5py.File(os.path.join(tmp, "fresh.h5"), "r") as g:
        for key in ("effects/exact", "effects/atp", "effects/atp_star", "baseline/base", "baseline/source", "nodes/name",
                    "progress/done", "progress/unit_kind", "progress/unit_node0"):
            check(f[key][()].tobytes() == g[key][()].tobytes(), f"grown file: {key} differs from a fresh run of the grown job")
        check(json.loads(f.attrs["job"])["nodes"] == grown_nodes and int(f.attrs["complete"]) == 1,
              "grown file: job attribute or complete flag")
        new_units = unit_cells(f)
        for cells, (u, seconds, done) in old_units.items():
            check(cells in new_units, f"old unit {cells[0]}, {cells[1][:2]}... has no unit in the grown file")
            if cells in new_units and done:
                check(new_units[cells][1] == seconds, f"unit {cells[0]}, {cells[1][0]}...: recomputed (seconds "
                                                      f"{new_units[cells][1]} vs {seconds}), not carried over")
            if cells in new_units and not done:
                check(new_units[cells][1] != seconds or np.isnan(seconds), "the unfinished unit was not computed")
    check(not os.path.exists(out + ".creating"), "the .creating file was left behind")

    # Edits that are not growth: refused, the file untouched, the differing fields named.
    before = digest(out)
    job = json.load(open(grown))
    two_prompts = [dict(job["prompts"][0]), dict(job["prompts"][1])]
    two_prompts[1]["answer"] = (two_prompts[1]["answer"] + 1) % 64
    cases = [
        ("metric", dict(metric="logprob"), "holds the results of a different job: metric differs;"),
        ("prompts", dict(prompts=two_prompts), "prompts (2 prompts, was 3; the first that differs is prompts[1]) differs"),
        ("site removed", dict(nodes=["resid_pre", "z", "mlp_post"]),
         "nodes (-mlp_out) differs (a file can gain node sites and estimators, not lose them)"),
        ("estimator removed and window", dict(estimates=["atp"], window=2), "window; estimates (-atp_star) differ"),
        ("another model", dict(model=os.path.join(fixtures, "models", "neox-tiny")),
         "holds the results of this job with another model"),
        ("grown, another model", dict(model=os.path.join(fixtures, "models", "neox-tiny"), nodes=grown_nodes + ["k"]),
         "holds the results of an earlier version of this job (nodes (+k)) with another model"),
    ]
    for label, changes, fragment in cases:
        path = write_job(tmp, "edited", out, **{"nodes": grown_nodes, "estimates": ["atp", "atp_star"], **changes})
        problem, _ = user_error([binary, "run", path], fragment)
        check(problem is None, f"{label}: {problem}")
        check(digest(out) == before, f"{label}: the refused run changed the file")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
