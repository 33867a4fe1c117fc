"""CLI: every malformed job gives exit status 2 and one line naming the problem, from both
`patchsweep plan` and `patchsweep run`, and `run` writes no results file.
Usage: test_bad_jobs.py BINARY FIXTURES SHARED"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mpi_util import user_error  # noqa: E402

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
folder = os.path.join(fixtures, "bad_jobs")
cases = json.load(open(os.path.join(folder, "cases.json")))
failures = []
output = os.path.join(folder, "bad.h5")
for name, fragment in cases.items():
    for command in ("plan", "run"):
        if os.path.exists(output):
            os.remove(output)
        label = f"{command} {name}"
        problem, line = user_error([binary, command, os.path.join(folder, name + ".json")], fragment)
        if problem:
            failures.append(f"{label}: {problem}")
        elif name + ".json" not in line and "jsonl" not in line and "no-such-model" not in line:
            failures.append(f"{label}: {line!r} does not name the job file")
        if command == "run" and os.path.exists(output):
            failures.append(f"{label}: a results file was written for a bad job")
print(f"{2 * len(cases)} checks over {len(cases)} malformed jobs, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
