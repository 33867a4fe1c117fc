"""MPI: SIGKILL every rank of a running sweep at several moments (before the results file
exists, early, in the middle, during the stream of unit writes), rerun after each kill, and
check:
- after every kill the file opens and every unit flagged done holds exactly the values of an
  uninterrupted run (flags are written after values);
- the rerun that finishes the job produces the uninterrupted run's file, bit for bit;
- when a single rank dies, the job stops with a non-zero exit status and a rerun completes it;
- on a job of a few seconds every rank computes units.
Usage: test_mpi_kill.py BINARY FIXTURES SHARED"""
import json
import os
import random
import sys
import tempfile
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import compare, kill_session, run, session_pids, start  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def write_job(path, output):
    r = random.Random(0)
    prompts = []
    for _ in range(200):
        clean = [r.randrange(64) for _ in range(12)]
        corrupt = list(clean)
        corrupt[3], corrupt[8] = (clean[3] + 7) % 64, (clean[8] + 11) % 64
        prompts.append({"clean": clean, "corrupt": corrupt, "answer": clean[3], "wrong": corrupt[3]})
    job = {"model": os.path.join(fixtures, "models", "gpt2-tiny"), "prompts": prompts, "output": output,
           "estimates": ["atp", "atp_qk", "atp_star"],
           "nodes": ["resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post", "z", "q", "k", "v", "mlp_post"]}
    json.dump(job, open(path, "w"))


def check_partial(path, reference, label):
    """The file opens; units flagged done hold the reference values. Returns units done."""
    if not os.path.exists(path):
        return 0
    try:
        with h5py.File(path, "r") as f, h5py.File(reference, "r") as g:
            done = f["progress/done"][:].astype(bool)
            kind = f["progress/unit_kind"][:]
            prompts, node0, nodes = (f[f"progress/unit_{k}"][:] for k in ("prompt", "node0", "nodes"))
            for u in np.flatnonzero(done):
                for key in (["exact"] if kind[u] == 0 else ["atp", "atp_qk", "atp_star"]):
                    got = f[f"effects/{key}"][prompts[u], node0[u]:node0[u] + nodes[u], :]
                    ref = g[f"effects/{key}"][prompts[u], node0[u]:node0[u] + nodes[u], :]
                    if got.tobytes() != ref.tobytes():
                        failures.append(f"{label}: unit {u} is flagged done but its {key} values differ")
                        return int(done.sum())
            return int(done.sum())
    except OSError as e:
        failures.append(f"{label}: the results file does not open after the kill: {e}")
        return 0


with tempfile.TemporaryDirectory() as tmp:
    reference_job, job = os.path.join(tmp, "reference.json"), os.path.join(tmp, "job.json")
    reference, out = os.path.join(tmp, "reference.h5"), os.path.join(tmp, "out.h5")
    write_job(reference_job, reference)
    write_job(job, out)
    t0 = time.time()
    p = run(binary, 1, reference_job)
    check(p.returncode == 0, f"reference run: {p.returncode} {p.stderr[-500:]}")
    with h5py.File(reference, "r") as f:
        total = len(f["progress/done"])

    # Kills while the results file is being created, then at growing delays into the sweep.
    interrupted = 0
    for i, delay in enumerate([0.05, 0.3, 0.6, 0.35, 0.9, 0.5, 0.75, 1.0]):
        proc = start(binary, 3, job)
        time.sleep(delay)
        finished = proc.poll() is not None
        kill_session(proc)
        done = check_partial(out, reference, f"kill {i} after {delay}s")
        interrupted += not finished and done < total
        check(not os.path.exists(out + ".creating") or not os.path.exists(out),
              f"kill {i}: both the file and a leftover .creating file exist")
        print(f"kill {i} after {delay:.2f}s: {done}/{total} units done{' (had finished)' if finished else ''}")
    check(interrupted >= 4, f"only {interrupted} kills interrupted a running sweep")

    # A single rank dies: the job must stop with an error, not hang.
    proc = start(binary, 3, job)
    time.sleep(0.6)
    ranks = [pid for pid in session_pids(proc.pid) if pid != proc.pid and
             open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].endswith(b"patchsweep")]
    if ranks and proc.poll() is None:
        os.kill(sorted(ranks)[-1], 9)
        try:
            status = proc.wait(timeout=60)
            check(status != 0, "a rank died but the job exited with status 0")
            print(f"one rank killed: job stopped with status {status}")
        except Exception:
            failures.append("a rank died and the job hung")
        kill_session(proc)
        check_partial(out, reference, "after a rank died")
    else:
        kill_session(proc)
        print("one rank killed: the sweep had already finished; not checked")

    # Finish, and compare with the uninterrupted run.
    p = run(binary, 3, job)
    check(p.returncode == 0, f"final resume: {p.returncode} {p.stderr[-500:]}")
    diffs = compare(reference, out)
    failures += [f"resumed vs uninterrupted: {d}" for d in diffs]
    with h5py.File(out, "r") as f:
        check(int(f.attrs["complete"]) == 1, "the resumed file is not marked complete")

    # A fresh uninterrupted 3-rank run: every rank takes part.
    os.remove(out)
    p = run(binary, 3, job)
    with h5py.File(out, "r") as f:
        used = sorted(set(f["progress/rank"][:].tolist()))
    check(used == [0, 1, 2], f"a 3-rank run of {total} units used ranks {used} only")
    failures += [f"3 ranks vs 1: {d}" for d in compare(reference, out)]
    print(f"{total} units; every rank computed: {used}; {time.time() - t0:.1f}s")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
