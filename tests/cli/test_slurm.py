"""Slurm: start a real one-node cluster (slurm/start-local.sh), submit jobs/full_sweep.slurm with
`sbatch --wait` on a small job, and check the results file equals a direct run; resubmitting
finds the job done and, with BOUND=z, adds the bound, equal to a direct `patchsweep bound`.
Failures: the first submission finds half the units done (a run cut short) and its first start
fails (a wrapper stands in for a rank killed with the node: status 137 while
SLURM_RESTART_COUNT is unset); the script requeues its own job, and the restart resumes and
finishes: the log holds both starts, the requeue and "(resuming)", and the file equals the
direct run.
Skips (exit 77, shown by ctest) when not root or Slurm is not installed.
Usage: test_slurm.py BINARY FIXTURES SHARED"""
import json
import os
import stat
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import h5py  # noqa: E402
from mpi_util import ENV, compare, run  # noqa: E402

binary, fixtures = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
root = os.path.normpath(os.path.join(fixtures, "..", ".."))
missing = [c for c in ("sbatch", "slurmctld", "slurmd", "munged") if not shutil.which(c) and
           not os.path.exists(f"/usr/sbin/{c}")]
if os.geteuid() != 0 or missing:
    print(f"SKIPPED: the Slurm test needs root and Slurm ({'not root' if os.geteuid() else 'missing ' + ', '.join(missing)})")
    sys.exit(77)

failures = []
with tempfile.TemporaryDirectory() as tmp:
    env = dict(ENV, PS_SLURM_DIR=os.path.join(tmp, "slurm"), SLURM_CONF=os.path.join(tmp, "slurm", "slurm.conf"))
    job = json.load(open(os.path.join(fixtures, "jobs", "llama-pair-noise-kl.json")))
    job["model"] = os.path.join(fixtures, "models", "llama-tiny")
    job["output"] = os.path.join(tmp, "slurm.h5")
    json.dump(job, open(os.path.join(tmp, "job.json"), "w"))
    direct = dict(job, output=os.path.join(tmp, "direct.h5"))
    json.dump(direct, open(os.path.join(tmp, "direct.json"), "w"))
    # a run cut short: the direct run's file with every other unit not done (the job's
    # fingerprint does not depend on where its output goes)
    p = run(binary, 1, os.path.join(tmp, "direct.json"))
    if p.returncode:
        failures.append(f"direct run failed: {p.stderr}")
    shutil.copy(direct["output"], job["output"])
    with h5py.File(job["output"], "r+") as f:
        done = f["progress/done"][()]
        done[::2] = 0
        f["progress/done"][...] = done
        f.attrs["complete"] = 0
    # the first start of the run dies (as its ranks would with the node), a restart runs
    wrapper = os.path.join(tmp, "dies-once.sh")
    open(wrapper, "w").write(f'#!/bin/sh\n[ "$1" = run ] && [ -z "$SLURM_RESTART_COUNT" ] && exit 137\nexec {binary} "$@"\n')
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
    try:
        up = subprocess.run([os.path.join(root, "slurm", "start-local.sh")], env=env, capture_output=True, text=True, timeout=120)
        if up.returncode != 0:
            failures.append(f"start-local.sh failed: {up.stdout} {up.stderr}")
        else:
            print(up.stdout.strip())
            for attempt in ("first", "resubmitted"):
                log = os.path.join(tmp, f"{attempt}.log")
                bound = ",BOUND=z,BOUND_OPTIONS=--subsets 40" if attempt == "resubmitted" else ""
                program = wrapper if attempt == "first" else binary
                p = subprocess.run(["sbatch", "--wait", "-D", tmp, "-o", log,
                                    f"--export=ALL,JOB={tmp}/job.json,PATCHSWEEP={program}{bound}",
                                    os.path.join(root, "jobs", "full_sweep.slurm")],
                                   env=env, capture_output=True, text=True, timeout=300)
                text = open(log).read() if os.path.exists(log) else ""
                if p.returncode != 0:
                    failures.append(f"{attempt} sbatch --wait: status {p.returncode}: {p.stderr} {text[-1500:]}")
                    break
                print(f"{attempt}: {p.stdout.strip()}; log: " + " | ".join(l for l in text.splitlines() if "patchsweep:" in l))
                ranks = "2 ranks" if os.cpu_count() >= 2 else "1 ranks"
                if attempt == "first" and ranks not in text:
                    failures.append(f"the job did not run on the allocation's ranks: {text}")
                if attempt == "first" and not all(x in text for x in ("start 1", "requeueing job", "start 2", "(resuming)")):
                    failures.append(f"a failed start was not requeued and resumed: {text[-2000:]}")
                if attempt == "resubmitted" and "all done already" not in text:
                    failures.append(f"resubmitting did not find the job done: {text}")
                if attempt == "resubmitted" and "largest bound over prompts" not in text:
                    failures.append(f"BOUND=z did not bound: {text[-1500:]}")
            if p.returncode == 0:
                p = subprocess.run([binary, "bound", os.path.join(tmp, "direct.json"), "--site", "z", "--subsets", "40",
                                    "--quiet"], capture_output=True, text=True, timeout=300)
            if p.returncode == 0 and os.path.exists(job["output"]):
                failures += [f"sbatch vs direct run: {d}" for d in compare(direct["output"], job["output"])]
            elif p.returncode != 0:
                failures.append(f"direct run or bound failed: {p.stderr}")
    finally:
        subprocess.run([os.path.join(root, "slurm", "stop-local.sh")], env=env, capture_output=True, timeout=60)

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
