#!/usr/bin/env python3
"""Circuit metrics of the circuit test jobs, computed independently with circuits_ref.py (run
with /usr/bin/python3):

    /usr/bin/python3 tests/reference/gen_circuits.py

For every tests/fixtures/circuits/circuits-*.json (explicit circuits only: the ranked ones come
from a results file and are checked against it by tests/cli/test_circuits.py) writes
tests/fixtures/golden/<job name>.safetensors with float64 tensors
  "full"   [P, M]         the clean run's metrics,
  "empty"  [A, P, M]      every edge ablated, per choice,
  "metric" [C, A, P, M]   each circuit's, per choice (the mean over resample seeds),
choices in docs/circuits.md's order (granularity-major), and in the header's __metadata__ the
JSON lists "circuits" (the set names) and "choices" (granularity, ablation).
The outputs are committed; CI does not rerun this script.
"""
import glob
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import circuits_ref as cr  # noqa: E402
import safetensors_io as st  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def job_choices(job, folder):
    """(granularity, ablation) in the contract's order, a mean's prompts file read in."""
    spec = job["circuits"]
    ablations = []
    for a in spec.get("ablation", ["pair"]):
        if isinstance(a, dict) and "mean" in a:
            a = {"mean": dict(a["mean"], prompts=read_jsonl(os.path.join(folder, a["mean"]["prompts_file"])))}
        ablations.append(a)
    return [(g, a) for g in spec.get("granularity", ["edges"]) for a in ablations]


def job_circuits(job):
    default = job["circuits"].get("positions", "all") == "specific"
    out = []
    for s in job["circuits"]["sets"]:
        specific = s.get("positions", "specific" if default else "all") == "specific"
        out.append({"nodes": s["nodes"]} if "nodes" in s else {"edges": s["edges"], "specific": specific})
    return out


def main():
    for path in sorted(glob.glob(os.path.join(FIXTURES, "circuits", "circuits-*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        start = time.time()
        job, folder = json.load(open(path)), os.path.dirname(path)
        choices = job_choices(job, folder)
        full, empty, metric = cr.evaluate_choices(job, folder, job_circuits(job), choices)
        names = [s["name"] for s in job["circuits"]["sets"]]
        labels = [[g, a if isinstance(a, str) else json.dumps(a)[:60]] for g, a in choices]
        st.write(os.path.join(FIXTURES, "golden", f"{name}.safetensors"),
                 {"full": ("F64", full), "empty": ("F64", empty), "metric": ("F64", metric)},
                 {"circuits": json.dumps(names), "choices": json.dumps(labels)})
        print(f"{name}: C {len(names)} A {len(choices)} P {len(job['prompts'])} M {full.shape[1]}, "
              f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
