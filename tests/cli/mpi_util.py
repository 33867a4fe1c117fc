"""Helpers for the CLI tests: checking a user error, running patchsweep under mpiexec, killing a
whole run, comparing results files."""
import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np

# Open MPI gives each rank its own process group, so a run is killed by session.
TIMING = {"seconds_runs", "seconds_exact", "seconds_atp", "seconds_atp_qk", "seconds_atp_star", "n_ranks", "created"}


def command(binary, ranks, job, *extra):
    base = [binary, "run", job, "--quiet", *extra]
    return base if ranks == 1 else ["mpiexec", "-n", str(ranks), "--oversubscribe", *base]


# mpiexec refuses root unless both variables are set (the tests run as root in CI).
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def run(binary, ranks, job, timeout=300):
    return subprocess.run(command(binary, ranks, job), capture_output=True, text=True, timeout=timeout, env=ENV)


def start(binary, ranks, job):
    return subprocess.Popen(command(binary, ranks, job), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, env=ENV)


def session_pids(sid):
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = open(f"/proc/{name}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session id
            pids.append(int(name))
    return pids


def kill_session(proc):
    """SIGKILL mpiexec and every rank it started."""
    for pid in session_pids(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    deadline = time.time() + 10
    while session_pids(proc.pid) and time.time() < deadline:
        time.sleep(0.05)


def compare(path_a, path_b):
    """Differences between two results files, ignoring timings: a list of strings."""
    diffs = []
    with h5py.File(path_a, "r") as a, h5py.File(path_b, "r") as b:
        names = []
        a.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        other = []
        b.visititems(lambda n, o: other.append(n) if isinstance(o, h5py.Dataset) else None)
        if sorted(names) != sorted(other):
            diffs.append(f"datasets differ: {sorted(set(names) ^ set(other))}")
        for n in names:
            if n in ("progress/seconds", "progress/estimator_seconds", "progress/rank") or n not in b:
                continue
            x, y = a[n][()], b[n][()]
            if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
                bad = np.sum(x != y) if x.shape == y.shape and x.dtype.kind != "S" else "?"
                diffs.append(f"{n}: differs ({bad} values)")
        for k in set(a.attrs) | set(b.attrs):
            if k in TIMING:
                continue
            if k not in a.attrs or k not in b.attrs:
                diffs.append(f"attribute {k} missing on one side")
            elif k == "job":  # it records where each run wrote: compare the rest
                ja, jb = json.loads(a.attrs[k]), json.loads(b.attrs[k])
                ja.pop("output"), jb.pop("output")
                if ja != jb:
                    diffs.append("attribute job differs")
            elif a.attrs[k] != b.attrs[k]:
                diffs.append(f"attribute {k} differs")
    return diffs


def user_error(args, fragment, timeout=60):
    """Runs the binary (args[0]) expecting a user error: exit status 2, nothing on stdout, and
    exactly one 'patchsweep: ...' line on stderr that contains fragment. Returns (problem or
    None, the line)."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    lines = p.stderr.strip().splitlines()
    if p.returncode != 2:
        return f"exit status {p.returncode}, expected 2 ({p.stderr.strip()!r})", None
    if len(lines) != 1 or not lines[0].startswith("patchsweep: "):
        return f"expected one 'patchsweep: ...' line on stderr, got {p.stderr!r}", None
    if fragment not in lines[0]:
        return f"{lines[0]!r} does not mention {fragment!r}", lines[0]
    if p.stdout:
        return f"printed to stdout: {p.stdout!r}", lines[0]
    return None, lines[0]
