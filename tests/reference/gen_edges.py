#!/usr/bin/env python3
"""Exact edge effects and EAP / EAP-IG estimates of the edge test jobs, computed independently
with edges_ref.py (run with /usr/bin/python3):

    /usr/bin/python3 tests/reference/gen_edges.py

For every tests/fixtures/jobs/edges-*.json writes tests/fixtures/golden/<job name>.safetensors
(so edges-gpt2-filter.json -> edges-gpt2-filter.safetensors) with float32 tensors
  "exact" [P, E, S]                        when the job's "exact" is not false,
  "eap", "eap_ig", "eap_ig_act" [P, E, S]  those the job's "estimates" ask for,
  "base" [P]                               metric(B), the mean over noise samples,
NaN past a prompt's end, and in the header's __metadata__ the JSON lists "edges" (the E edge
names in contract order, after the job's filter) and "positions" (the S columns, -1 = all).
The outputs are committed; CI does not rerun this script.
"""
import glob
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
from edges_ref import EdgeJob, edge_name  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")


def job_tables(job):
    """{"base": [P], "exact" and each estimate: [P, E, S]} as float64 arrays."""
    base, tables = [], []
    for p in range(len(job.prompts)):
        metric, table = job.prompt_results(p)
        base.append(metric)
        tables.append(table)
    out = {k: np.stack([t[k] for t in tables]) for k in tables[0]}
    out["base"] = np.array(base)
    return out


def main():
    for path in sorted(glob.glob(os.path.join(FIXTURES, "jobs", "edges-*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        start = time.time()
        job = EdgeJob.from_file(path)
        tables = job_tables(job)
        metadata = {"edges": json.dumps([edge_name(e) for e in job.edges]), "positions": json.dumps(job.columns)}
        st.write(os.path.join(FIXTURES, "golden", f"{name}.safetensors"),
                 {k: ("F32", v) for k, v in tables.items()}, metadata)
        largest = {k: f"{np.nanmax(np.abs(v)):.3g}" for k, v in tables.items() if k != "base"}
        print(f"{name}: P {len(job.prompts)} E {len(job.edges)} S {len(job.columns)}, largest |value| {largest}, "
              f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
