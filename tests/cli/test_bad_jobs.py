"""CLI: every malformed job gives exit status 2 and one line naming the problem, from both
`patchsweep plan` and `patchsweep run`, and `run` writes no results file.
Usage: test_bad_jobs.py BINARY FIXTURES SHARED"""
import json
import os
import subprocess
import sys

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
folder = os.path.join(fixtures, "bad_jobs")
cases = json.load(open(os.path.join(folder, "cases.json")))
failures = []
output = os.path.join(folder, "bad.h5")
for name, fragment in cases.items():
    for command in ("plan", "run"):
        if os.path.exists(output):
            os.remove(output)
        p = subprocess.run([binary, command, os.path.join(folder, name + ".json")], capture_output=True, text=True, timeout=60)
        lines = p.stderr.strip().splitlines()
        label = f"{command} {name}"
        if p.returncode != 2:
            failures.append(f"{label}: exit status {p.returncode}, expected 2 ({p.stderr.strip()!r})")
        elif len(lines) != 1 or not lines[0].startswith("patchsweep: "):
            failures.append(f"{label}: expected one 'patchsweep: ...' line, got {p.stderr!r}")
        elif fragment not in lines[0]:
            failures.append(f"{label}: {lines[0]!r} does not mention {fragment!r}")
        elif name + ".json" not in lines[0] and "jsonl" not in lines[0] and "no-such-model" not in lines[0]:
            failures.append(f"{label}: {lines[0]!r} does not name the job file")
        if command == "run" and os.path.exists(output):
            failures.append(f"{label}: a results file was written for a bad job")
print(f"{2 * len(cases)} checks over {len(cases)} malformed jobs, {len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
