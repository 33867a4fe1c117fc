"""Positions that mean the same thing in every prompt: columns counted from the end (-1 = the last
token) and columns named per prompt ({"S2": 10, "END": -1}) on prompts of different lengths.
Each such column of prompt p holds exactly the values (bits) of the absolute column where it sits
in p, in a job with "positions": "each" (exact effects and estimates); the file says where each
column sits (/prompts/position, /position_names); top and the analysis package label columns by
name. Usage: test_named_positions.py BINARY FIXTURES SHARED"""
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
root = os.path.normpath(os.path.join(fixtures, "..", ".."))
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def write(tmp, name, **changes):
    job = json.load(open(os.path.join(fixtures, "jobs", "gpt2-pair-denoise.json")))  # prompts of 10, 8, 10 tokens
    job.update(model=os.path.join(fixtures, "models", "gpt2-tiny"), nodes=["resid_pre", "z", "mlp_out"],
               estimates=["atp", "atp_qk"], output=os.path.join(tmp, name + ".h5"))
    job.update(changes)
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    return path, job


with tempfile.TemporaryDirectory() as tmp:
    each_path, each = write(tmp, "each")
    prompts = each["prompts"]
    lengths = [len(p["clean"]) for p in prompts]
    # "CHANGED": the first position where clean and corrupt differ; "END": the last (-1)
    named = []
    for p in prompts:
        changed = next(t for t in range(len(p["clean"])) if p["clean"][t] != p["corrupt"][t])
        named.append(dict(p, positions={"CHANGED": changed, "END": -1, "unused": 0}))
    columns = ["CHANGED", -2, "END", 1]
    named_path, named_job = write(tmp, "named", prompts=named, positions=columns)
    for path in (each_path, named_path):
        p = subprocess.run([binary, "run", path, "--quiet"], capture_output=True, text=True, timeout=300)
        check(p.returncode == 0, f"{os.path.basename(path)}: exit {p.returncode}: {p.stderr}")
    if not failures:
        with h5py.File(each["output"], "r") as f, h5py.File(named_job["output"], "r") as g:
            names = [n.decode() for n in g["position_names"][()]]
            check(names == ["CHANGED", "-2", "END", "1"], f"/position_names {names}")
            check(list(g["positions"][()]) == [-2, -2, -2, 1], f"/positions {list(g['positions'][()])}")
            where = g["prompts/position"][()]
            for i, p in enumerate(named):
                want = [p["positions"]["CHANGED"], lengths[i] - 2, lengths[i] - 1, 1]
                check(list(where[i]) == want, f"prompt {i}: /prompts/position {list(where[i])}, expected {want}")
                for key in ("exact", "atp", "atp_qk"):
                    for j, pos in enumerate(want):
                        same = g[f"effects/{key}"][i, :, j].tobytes() == f[f"effects/{key}"][i, :, pos].tobytes()
                        check(same, f"prompt {i}: {key} column {names[j]} differs from absolute position {pos}")
            check(g["progress/done"][()].all(), "not every unit done")
        # top labels the columns by name, with the token of the first prompt
        p = subprocess.run([binary, "top", named_job["output"], "-k", "40"], capture_output=True, text=True)
        check(p.returncode == 0 and " END " in p.stdout and " CHANGED " in p.stdout, f"top: {p.stdout[-800:]} {p.stderr}")
        # the analysis package: labels and computed cells per prompt
        sys.path.insert(0, root)
        import analysis
        r = analysis.load(named_job["output"])
        check(r.position_names == names and r.computed[:, :, :].all(), "analysis: names or computed cells")
        label = r.position_labels(1)[2]
        check(label.startswith("END: "), f"analysis: label of END in prompt 1 is {label!r}")

    # Mistakes: one line each.
    missing = [dict(named[0]), dict(named[1])]
    missing[1] = dict(missing[1], positions={"END": -1})
    outside = [dict(named[0], positions={"CHANGED": 40, "END": -1}), named[1]]
    cases = [
        ("a prompt without a named position", dict(prompts=missing, positions=["CHANGED"]),
         'prompts[1] has no position named "CHANGED"'),
        ("a named position outside its prompt", dict(prompts=outside, positions=["CHANGED"]),
         'prompts[0] has 10 tokens; its position "CHANGED" (40) is outside it'),
        ("before every prompt's start", dict(positions=[-11]), "position -11 is before the start of every prompt"),
        ("a name twice", dict(prompts=named, positions=["END", "END"]), 'position "END" is listed twice'),
        ("a number twice", dict(positions=[-1, 3, -1]), "position -1 is listed twice"),
        ("a prompt's position not an integer", dict(prompts=[dict(named[0], positions={"END": 1.5})], positions=["END"]),
         "positions.END must be an integer position"),
        ("a prompt's positions not an object", dict(prompts=[dict(named[0], positions=[3])], positions=[1]),
         '"positions" must be an object of names and positions'),
    ]
    for label, changes, fragment in cases:
        path, _ = write(tmp, "bad", **changes)
        problem, _ = user_error([binary, "plan", path], fragment)
        check(problem is None, f"{label}: {problem}")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
