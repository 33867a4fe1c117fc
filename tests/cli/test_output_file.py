"""CLI: the results file of a job is resumed, never clobbered.
- a file holding another job's results, a non-HDF5 file, an empty file: exit 2, file untouched;
- a file with some units not flagged done (an interrupted run): rerunning computes exactly
  those, and the result equals an uninterrupted run bit for bit;
- rerunning a finished job changes nothing.
Usage: test_output_file.py BINARY FIXTURES SHARED"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(job_path):
    return subprocess.run([binary, "run", job_path, "--quiet"], capture_output=True, text=True, timeout=300)


with tempfile.TemporaryDirectory() as tmp:
    job = json.load(open(os.path.join(fixtures, "jobs", "gpt2-pair-denoise.json")))
    job["model"] = os.path.join(fixtures, "models", "gpt2-tiny")
    job["output"] = "out.h5"
    a = os.path.join(tmp, "a.json")
    json.dump(job, open(a, "w"))
    other = dict(job, prompts=job["prompts"][:2])
    b = os.path.join(tmp, "b.json")
    json.dump(other, open(b, "w"))
    out = os.path.join(tmp, "out.h5")

    p = run(a)
    check(p.returncode == 0, f"first run: {p.returncode} {p.stderr}")
    reference = os.path.join(tmp, "reference.h5")
    shutil.copy(out, reference)
    before = digest(out)

    p = run(b)
    check(p.returncode == 2 and "different job" in p.stderr and len(p.stderr.strip().splitlines()) == 1,
          f"different job: {p.returncode} {p.stderr!r}")
    check(digest(out) == before, "a different job modified the results file")

    for content, label in ((b"some notes\n", "text file"), (b"", "empty file")):
        with open(out, "wb") as f:
            f.write(content)
        p = run(a)
        check(p.returncode == 2 and "not an HDF5 results file" in p.stderr, f"{label}: {p.returncode} {p.stderr!r}")
        check(open(out, "rb").read() == content, f"{label} was modified")

    # An interrupted run: every third unit not flagged done, its cells holding garbage that the
    # rerun must overwrite (cells of done units must be kept as they are).
    shutil.copy(reference, out)
    with h5py.File(out, "r+") as f:
        done = f["progress/done"][:]
        for u in range(0, len(done), 3):
            done[u] = 0
            p_, n0, n = (int(f[f"progress/unit_{k}"][u]) for k in ("prompt", "node0", "nodes"))
            for key in (["exact"] if f["progress/unit_kind"][u] == 0 else ["atp", "atp_qk", "atp_star"]):
                f[f"effects/{key}"][p_, n0:n0 + n, :] = 12345.0
        f["progress/done"][:] = done
        f.attrs["complete"] = 0
    p = run(a)
    check(p.returncode == 0, f"resume: {p.returncode} {p.stderr}")
    with h5py.File(out, "r") as f, h5py.File(reference, "r") as g:
        check(f["progress/done"][:].all(), "resume left units undone")
        check(int(f.attrs["complete"]) == 1, "resume did not mark the file complete")
        for key in ("exact", "atp", "atp_qk", "atp_star"):
            same = f[f"effects/{key}"][:].tobytes() == g[f"effects/{key}"][:].tobytes()
            check(same, f"resumed {key} differs from the uninterrupted run")

    # A finished job: nothing to do, nothing changes.
    with h5py.File(out, "r") as f:
        before = f["effects/exact"][:].tobytes()
    p = run(a)
    check(p.returncode == 0, f"rerun of a finished job: {p.returncode} {p.stderr}")
    with h5py.File(out, "r") as f:
        check(f["effects/exact"][:].tobytes() == before, "rerunning a finished job changed its results")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
