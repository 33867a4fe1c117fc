"""patchsweep run on the test jobs: the results file has the contract's names, shapes and
attributes (DESIGN.md section 6, docs/results.md), and its exact effects match the independent
float64 PyTorch computation (tests/reference/gen_effects.py).

Tolerance: patchsweep computes in float32. A metric read off logits of magnitude ~10 carries an
absolute error of ~1e-5 (the forward-pass tests measure 1e-5 on logits), and an effect is a
difference of two metrics, so we allow 5e-5 + 1e-4 |effect|. Estimates are sums of products of
float32 activation differences and gradients (gradients match autograd to ~1e-5 of their
scale, test_backward), so the same tolerance applies to them.
The gradient estimates (atp, atp_qk, atp_star) are compared the same way where a job asks for them.
Usage: test_results_file.py BINARY FIXTURES SHARED"""
import glob
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

binary, fixtures = sys.argv[1], os.path.abspath(sys.argv[2])
sys.path.insert(0, os.path.join(fixtures, "..", "reference"))
import safetensors_io as st  # noqa: E402
from job_layout import config_dims, nodes_of  # noqa: E402

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)


def node_name(site, layer, index):
    if site in ("q", "z"):
        return f"L{layer}.H{index}.{site}"
    if site in ("k", "v"):
        return f"L{layer}.KV{index}.{site}"
    if site == "mlp_post":
        return f"L{layer}.N{index}"
    return f"L{layer}.{site}"


def run_job(path, tmp):
    job = json.load(open(path))
    job["model"] = os.path.normpath(os.path.join(os.path.dirname(path), job["model"]))
    job["output"] = os.path.join(tmp, os.path.basename(path).replace(".json", ".h5"))
    std = job.get("corruption", {}).get("gaussian", {}).get("std") if isinstance(job.get("corruption"), dict) else None
    if isinstance(std, dict):  # a corpus file, relative to the job like the model
        std["corpus"] = os.path.normpath(os.path.join(os.path.dirname(path), std["corpus"]))
    local = os.path.join(tmp, os.path.basename(path))
    json.dump(job, open(local, "w"))
    p = subprocess.run([binary, "run", local, "--quiet"], capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"{path}: exit {p.returncode}: {p.stderr}")
    return job, job["output"] if p.returncode == 0 else None


with tempfile.TemporaryDirectory() as tmp:
    for path in sorted(glob.glob(os.path.join(fixtures, "jobs", "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if name.startswith("edges-"):  # edge jobs have their own golden files (reference/gen_edges.py)
            continue
        job, out = run_job(path, tmp)
        if out is None:
            continue
        golden = st.read(os.path.join(fixtures, "golden", f"effects-{name}.safetensors"))
        cfg = json.load(open(os.path.join(job["model"], "config.json")))
        dims = config_dims(cfg)
        nodes = nodes_of(job, dims)
        prompts = job["prompts"]
        P, N, T = len(prompts), len(nodes), max(len(p["clean"]) for p in prompts)
        with h5py.File(out, "r") as f:
            a = f.attrs
            check(a["format"] == b"patchsweep" or a["format"] == "patchsweep", f"{name}: format attr {a['format']!r}")
            check(int(a["format_version"]) == 2, f"{name}: format_version")
            check(int(a["complete"]) == 1, f"{name}: complete != 1")
            stored_job = json.loads(a["job"])
            check(stored_job["prompts"][0]["clean"] == prompts[0]["clean"], f"{name}: job attr lacks the prompts")
            check(json.loads(a["model_config"])["n_layer"] == dims["L"], f"{name}: model_config attr")
            for key in ("direction", "metric", "tool_version"):
                check(key in a, f"{name}: attribute {key} missing")
            window = job.get("window", 1)
            align = window.get("align", "start") if isinstance(window, dict) else "start"
            check(str(a["window_align"].decode() if isinstance(a["window_align"], bytes) else a["window_align"]) == align
                  and str(a["sever"].decode() if isinstance(a["sever"], bytes) else a["sever"]) == job.get("sever", "none"),
                  f"{name}: window_align / sever attributes")
            S = f["positions"].shape[0]
            metrics = job.get("metric", "logit_diff")
            metrics = [metrics] if isinstance(metrics, str) else metrics
            M = len(metrics)
            check([m.decode() for m in f["metrics"][:]] == metrics, f"{name}: /metrics {f['metrics'][:]}")
            check(str(a["metric"].decode() if isinstance(a["metric"], bytes) else a["metric"]) == metrics[0],
                  f"{name}: metric attribute is not the first metric")
            names = [n.decode() for n in f["nodes/name"][:]]
            check(names == [node_name(*n) for n in nodes], f"{name}: node names {names[:4]}...")
            check([s.decode() for s in f["nodes/site"][:]] == [n[0] for n in nodes], f"{name}: node sites")
            check(list(f["nodes/layer"][:]) == [n[1] for n in nodes], f"{name}: node layers")
            heads = [n[2] if n[0] in ("q", "z", "k", "v") else -1 for n in nodes]
            neurons = [n[2] if n[0] == "mlp_post" else -1 for n in nodes]
            check(list(f["nodes/head"][:]) == heads and list(f["nodes/neuron"][:]) == neurons, f"{name}: head/neuron")
            check(list(f["prompts/length"][:]) == [len(p["clean"]) for p in prompts], f"{name}: lengths")
            bt = f["prompts/base_tokens"][:]
            check(bt.shape == (P, T) and (bt[bt < 0] == -1).all(), f"{name}: base_tokens shape/padding")
            check(f["progress/done"][:].all(), f"{name}: not every unit flagged done")
            datasets = (["exact"] if job.get("exact", True) else []) + job.get("estimates", [])
            check(("effects/exact" in f) == job.get("exact", True), f"{name}: /effects/exact present iff exact")
            report = []
            for key in datasets:
                got, want = f[f"effects/{key}"][:], golden[key]
                want = want[..., None] if M == 1 else want  # single-metric golden files have no metric axis
                check(got.shape == (P, N, S, M) and got.dtype == np.float32, f"{name}: {key} shape/dtype {got.shape}")
                check((np.isnan(got) == np.isnan(want)).all(), f"{name}: {key}: NaN pattern differs from the reference")
                ok = ~np.isnan(want)
                err = np.abs(got[ok] - want[ok])
                worst = float(np.max(err - (5e-5 + 1e-4 * np.abs(want[ok])))) if ok.any() else 0.0
                check(worst <= 0, f"{name}: {key} differs from the reference by up to {err.max():.3g}")
                report.append(f"{key} {err.max():.1e} (largest {np.abs(want[ok]).max():.3g})")
            for key in ("base", "source"):
                got, ref = f[f"baseline/{key}"][:], golden[key]
                ref = ref[..., None] if M == 1 else ref
                check(got.shape == (P, M), f"{name}: baseline/{key} shape {got.shape}")
                same_nan = (np.isnan(got) == np.isnan(ref)).all()
                close = np.allclose(got[~np.isnan(ref)], ref[~np.isnan(ref)], atol=5e-5, rtol=1e-4)
                check(same_nan and close, f"{name}: baseline/{key} {got} vs {ref}")
            print(f"{name}: {P}x{N}x{S}, max |value - reference|: " + ", ".join(report))

    # A job with several metrics stores, for each, the bits a job with that metric alone stores:
    # the patched runs are shared, the metrics read off the same logits independently.
    path = os.path.join(fixtures, "jobs", "gpt2-pair-metrics.json")
    together = os.path.join(tmp, "gpt2-pair-metrics.h5")
    if os.path.exists(together):
        for k, m in enumerate(json.load(open(path))["metric"]):
            job = json.load(open(path))
            job["metric"] = m
            local = os.path.join(tmp, f"alone-{m}.json")
            job["model"] = os.path.normpath(os.path.join(os.path.dirname(path), job["model"]))
            job["output"] = os.path.join(tmp, f"alone-{m}.h5")
            json.dump(job, open(local, "w"))
            p = subprocess.run([binary, "run", local, "--quiet"], capture_output=True, text=True, timeout=300)
            check(p.returncode == 0, f"metric {m} alone: exit {p.returncode}: {p.stderr}")
            if p.returncode:
                continue
            with h5py.File(together, "r") as f, h5py.File(job["output"], "r") as g:
                for key in ("effects/exact", "effects/atp", "effects/atp_qk", "effects/atp_star", "baseline/base",
                            "baseline/source"):
                    check(f[key][..., k].tobytes() == g[key][..., 0].tobytes(),
                          f"metric {m}: {key} in a four-metric job differs from the job with {m} alone")
            # top --metric m on the four-metric file prints what top prints on the file of m alone
            tops = [subprocess.run([binary, "top", path_, "-k", "5"] + extra, capture_output=True, text=True)
                    for path_, extra in ((together, ["--metric", m]), (job["output"], []))]
            check(all(t.returncode == 0 for t in tops), f"top --metric {m}: {tops[0].stderr}{tops[1].stderr}")
            check(tops[0].stdout.split("\n", 1)[1] == tops[1].stdout.split("\n", 1)[1] and f"metric {m}" in tops[0].stdout,
                  f"top --metric {m} differs from top on the job with {m} alone:\n{tops[0].stdout}\n{tops[1].stdout}")
        print("gpt2-pair-metrics: each metric's bits equal its single-metric job's")

    # The example in docs/results.md runs as written on a real results file.
    docs = open(os.path.join(fixtures, "..", "..", "docs", "results.md")).read()
    example = docs.split("```python\n", 1)[1].split("```", 1)[0]
    example = example.replace('"results.h5"', repr(out))
    p = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0 and "L" in p.stdout, f"docs/results.md example failed: {p.stderr}")
    check(len(example.strip().splitlines()) <= 5, "docs/results.md example is longer than five lines")

print(f"{len(failures)} failures")
for f in failures:
    print("FAIL", f)
sys.exit(1 if failures else 0)
