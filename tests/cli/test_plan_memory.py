"""plan's memory per rank against a real run's peak resident set (the kernel's maximum RSS of the
process, from wait4). A GPT-2-shaped model with no weights in it (shape_checkpoints.py: zeros,
which run like any others) and one prompt of 16 or of 1,024 tokens; every head's z at the last
position, exactly, and then AtP of the same (node estimates go one layer at a time over the lean
runs and hold the same layers for every estimator). The weights and the program's own footprint
(MPI, HDF5, the binary) are the same in both runs, so the difference of the two peaks is what the
longer prompt adds to a rank, and plan must have predicted it: the measured difference within [0.9, 1.1] of plan's difference. plan
counts every buffer a rank allocates whole (allocations are zeroed, so every page is resident) as
if all were held at once; the measured peak is about 4% above it here, because glibc keeps freed
buffers below its adaptive mmap threshold (it rises to the largest buffer freed) on the heap, so
transient ones (a layer recomputed for a view, attention scores) stay resident after use. In an
AddressSanitizer build the resident set holds the shadow memory: the runs are skipped there,
saying so. Usage: test_plan_memory.py BINARY FIXTURES SHARED"""
import json
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shape_checkpoints  # noqa: E402
from mpi_util import ENV  # noqa: E402

binary = sys.argv[1]
UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
CONFIG = {"model_type": "gpt2", "n_embd": 256, "n_layer": 4, "n_head": 4, "n_positions": 1024, "vocab_size": 512,
          "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new"}


def size(text):
    number, unit = re.fullmatch(r"([\d.]+)([kMGT]?)B", text).groups()
    return float(number) * UNITS[unit]


def plan_per_rank(job_path):
    p = subprocess.run([binary, "plan", job_path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return size(re.search(r"memory +(\S+) per rank", p.stdout).group(1))


# Linux carries a process's peak across exec, and a child starts with its parent's pages: the run
# is started from a fresh, small interpreter (a few MB, below either run's peak), which reports the
# run's ru_maxrss alone (wait4).
MEASURE = """import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read().decode()
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, err.replace(chr(10), ' '))
"""


def peak_rss(job_path):
    """The run's maximum resident set in bytes."""
    p = subprocess.run([sys.executable, "-S", "-c", MEASURE, binary, "run", job_path, "--quiet"], capture_output=True,
                       text=True, env=ENV, timeout=120)
    code, kb, err = p.stdout.split(" ", 2)
    assert p.returncode == 0 and code == "0", (p.stderr, err)
    return int(kb) * 1024.0


if b"__asan_init" in open(binary, "rb").read():
    print("an AddressSanitizer build: its resident set holds the shadow memory; skipped (the release build checks it)")
    sys.exit(0)

failures = []
with tempfile.TemporaryDirectory() as tmp:
    model = os.path.join(tmp, "model")
    shape_checkpoints.write_folder(model, "gpt2", CONFIG)
    # the exact sweep, and the node estimates (one layer at a time over the lean runs)
    variants = {"z": {"nodes": ["z"]},
                "estimates": {"nodes": ["z"], "exact": False, "estimates": ["atp"]}}
    for name, keys in variants.items():
        plan, peak = {}, {}
        for T in (16, 1024):
            job = dict(keys, model=model, positions=[-1], output=os.path.join(tmp, f"{name}{T}.h5"),
                       prompts=[{"clean": [1 + t % 500 for t in range(T)], "corrupt": [1 + t % 500 for t in range(T - 1)] + [501],
                                 "answer": 5, "wrong": 6}])
            path = os.path.join(tmp, f"{name}{T}.json")
            json.dump(job, open(path, "w"))
            plan[T], peak[T] = plan_per_rank(path), peak_rss(path)
            print(f"{name}, T = {T}: plan {plan[T] / 1e6:.1f} MB per rank; the run's peak resident set {peak[T] / 1e6:.1f} MB")
        planned, measured = plan[1024] - plan[16], peak[1024] - peak[16]
        ratio = measured / planned
        print(f"{name}: what 1,024 tokens add to a rank: plan {planned / 1e6:.1f} MB, measured {measured / 1e6:.1f} MB "
              f"(ratio {ratio:.3f}, allowed 0.9-1.1)")
        if not 0.9 <= ratio <= 1.1:
            failures.append(f"{name}: measured/planned {ratio:.3f} outside [0.9, 1.1]")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
