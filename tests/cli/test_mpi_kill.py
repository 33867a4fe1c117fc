"""MPI: SIGKILL every rank of a running sweep at several moments (at launch, while the results
file is being created, then each time the units flagged done on disk reach a further share of
the job), rerun after each kill, and check:
- after every kill the file opens and every unit flagged done holds exactly the values of an
  uninterrupted run (flags are written after values);
- the rerun that finishes the job produces the uninterrupted run's file, bit for bit;
- when a single rank dies, the job stops with a non-zero exit status and a rerun completes it;
- on a job of a few seconds every rank computes units.
The kill moments are read off the file itself (the done flags, polled as raw bytes), not off a
clock, so they land mid-run however loaded the machine is: under a busy CI run, launching three
ranks can take longer than the computing does.
Usage: test_mpi_kill.py BINARY FIXTURES SHARED"""
import json
import os
import random
import subprocess
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


def is_rank(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].endswith(b"patchsweep")
    except OSError:  # it ended meanwhile
        return False


def done_flags_at(path):
    """(byte offset, count) of /progress/done in the file at path, or None while it is not there.
    The file only appears under its name once its structure is on disk, and the flags are a
    contiguous uint8 dataset, so polling those bytes is safe while ranks write."""
    try:
        with h5py.File(path, "r") as f:
            flags = f["progress/done"]
            return flags.id.get_offset(), flags.shape[0]
    except (OSError, KeyError):
        return None


def wait_for_units(proc, path, target, timeout=120):
    """Polls until at least target units are flagged done in the file at path. Returns the
    count seen, or None when the run ended (or the time ran out) first."""
    where, deadline = None, time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        where = where or done_flags_at(path)
        if where:
            with open(path, "rb") as f:
                f.seek(where[0])
                seen = sum(f.read(where[1]))
            if seen >= target:
                return seen
        time.sleep(0.005)
    return None


def wait_for_file(proc, paths, timeout=120):
    """Polls until one of paths exists. True if it did while the run was going."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if any(os.path.exists(p) for p in paths):
            return True
        time.sleep(0.001)
    return False


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

    # An uninterrupted 3-rank run: every rank takes part, and it equals the 1-rank run.
    t1 = time.time()
    p = run(binary, 3, job)
    full = time.time() - t1
    check(p.returncode == 0, f"3-rank run: {p.returncode} {p.stderr[-500:]}")
    with h5py.File(out, "r") as f:
        used = sorted(set(f["progress/rank"][:].tolist()))
    check(used == [0, 1, 2], f"a 3-rank run of {total} units used ranks {used} only")
    failures.extend(f"3 ranks vs 1: {d}" for d in compare(reference, out))
    os.remove(out)

    # Kills at launch and while the file is being created, then each time the units done on
    # disk reach a further share of the job; every run resumes the file the last one left.
    interrupted = 0
    moments = ["at launch", "creating the file"] + [share for share in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8)]
    for i, moment in enumerate(moments):
        proc = start(binary, 3, job)
        if moment == "creating the file":
            running = wait_for_file(proc, [out + ".creating", out])
            seen = None
        elif moment != "at launch":
            seen = wait_for_units(proc, out, int(moment * total))
            running = seen is not None
            moment = f"at {seen}/{total} units ({moment:.0%})" if running else f"at {moment:.0%} (not reached)"
        else:
            running = True
        finished = proc.poll() is not None
        kill_session(proc)
        done = check_partial(out, reference, f"kill {i} {moment}")
        interrupted += running and not finished and done < total
        check(not os.path.exists(out + ".creating") or not os.path.exists(out),
              f"kill {i}: both the file and a leftover .creating file exist")
        print(f"kill {i} {moment}: {done}/{total} units done{' (had finished)' if finished else ''}")
    check(interrupted >= 6, f"only {interrupted} of {len(moments)} kills interrupted a running sweep")

    # Finish, and compare with the uninterrupted run.
    p = run(binary, 3, job)
    check(p.returncode == 0, f"resume after the kills: {p.returncode} {p.stderr[-500:]}")
    failures.extend(f"resumed after kills vs uninterrupted: {d}" for d in compare(reference, out))
    with h5py.File(out, "r") as f:
        check(int(f.attrs["complete"]) == 1, "the resumed file is not marked complete")

    # A single rank dies in a fresh run: the job must stop with an error, not hang; a rerun finishes.
    os.remove(out)
    proc = start(binary, 3, job)
    wait_for_units(proc, out, int(0.3 * total))
    ranks = [pid for pid in session_pids(proc.pid) if pid != proc.pid and is_rank(pid)]
    check(ranks and proc.poll() is None, "the sweep was not running when a rank was to be killed")
    if ranks and proc.poll() is None:
        os.kill(sorted(ranks)[-1], 9)
        try:
            status = proc.wait(timeout=60)
            check(status != 0, "a rank died but the job exited with status 0")
            print(f"one rank killed: job stopped with status {status}")
        except subprocess.TimeoutExpired:
            failures.append("a rank died and the job hung")
    kill_session(proc)
    print(f"after the rank died: {check_partial(out, reference, 'after a rank died')}/{total} units done")
    p = run(binary, 3, job)
    check(p.returncode == 0, f"resume after a rank died: {p.returncode} {p.stderr[-500:]}")
    failures.extend(f"resumed after a rank died vs uninterrupted: {d}" for d in compare(reference, out))

    print(f"{total} units; every rank computed in the uninterrupted run: {used}; it took {full:.1f}s; "
          f"test {time.time() - t0:.1f}s")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
