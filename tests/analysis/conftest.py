"""Fixtures for the analysis tests: results files made by the real binary (PATCHSWEEP_BIN,
default build/patchsweep), and synthetic files with known answers."""
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
BINARY = os.environ.get("PATCHSWEEP_BIN", os.path.join(ROOT, "build", "patchsweep"))


def run_job(tmp, name, **changes):
    job = json.load(open(os.path.join(FIXTURES, "jobs", name + ".json")))
    job["model"] = os.path.normpath(os.path.join(FIXTURES, "jobs", job["model"]))
    job["output"] = os.path.join(tmp, name + ".h5")
    job.update(changes)
    path = os.path.join(tmp, name + ".json")
    json.dump(job, open(path, "w"))
    subprocess.run([BINARY, "run", path, "--quiet"], check=True, timeout=300)
    return job["output"]


@pytest.fixture(scope="session")
def real_file(tmp_path_factory):
    """A finished file with exact effects and all three estimates (tiny GPT-2, 3 prompts)."""
    return run_job(str(tmp_path_factory.mktemp("real")), "gpt2-pair-denoise")


@pytest.fixture(scope="session")
def estimates_only_file(tmp_path_factory):
    """A finished file of a job with "exact": false: AtP, AtP+QK and AtP*, no /effects/exact."""
    return run_job(str(tmp_path_factory.mktemp("estimates")), "llama-window-estimates")


@pytest.fixture(scope="session")
def unfinished_file(real_file, tmp_path_factory):
    """The same file as a killed run leaves it: every other unit not done, its cells NaN."""
    path = os.path.join(str(tmp_path_factory.mktemp("unfinished")), "unfinished.h5")
    shutil.copy(real_file, path)
    with h5py.File(path, "r+") as f:
        done = f["progress/done"][()]
        for u in range(0, len(done), 2):
            done[u] = 0
            p, n0, n = (int(f[f"progress/unit_{k}"][u]) for k in ("prompt", "node0", "nodes"))
            key = "exact" if f["progress/unit_kind"][u] == 0 else "atp"
            f[f"effects/{key}"][p, n0:n0 + n, :] = np.nan
        f["progress/done"][()] = done
        f.attrs["complete"] = 0
    return path


def write_synthetic(path, exact, estimates, sites=None, base=None, source=None, lengths=None, source_tokens=None,
                    metrics=("logit_diff",), format_version=2):
    """A results file laid out as docs/results.md says, with given effects [P, N, S] (or
    [P, N, S, M] with M metrics, base and source then [P, M]; format_version=1 writes the old
    layout without the metric axis): one layer,
    one position column per position, one exact unit per (prompt, node). Prompts are S tokens
    long unless `lengths` says otherwise (the caller writes NaN past a prompt's end, as the
    binary does). Base tokens are 0; source tokens too unless `source_tokens` [P, S] says."""
    P, N, S = exact.shape[:3]
    sites = sites or ["resid_pre"] * N
    base = np.zeros(P) if base is None else base
    source = np.ones(P) if source is None else source
    if format_version == 2 and exact.ndim == 3:  # one metric: the axis of length 1
        exact, base, source = exact[..., None], np.asarray(base)[:, None], np.asarray(source)[:, None]
        estimates = {k: v[..., None] for k, v in estimates.items()}
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "patchsweep"
        f.attrs["format_version"] = format_version
        f.attrs["job"] = json.dumps({"description": "synthetic", "prompts": [{"clean": [0] * S}] * P})
        f.attrs["model_config"] = json.dumps({"n_layer": 1, "vocab": 4})
        f.attrs["metric"], f.attrs["direction"], f.attrs["corruption"] = metrics[0], "denoise", "pair"
        if format_version == 2:
            f["metrics"] = np.array([m.encode() for m in metrics], dtype="S16")
        f.attrs["complete"], f.attrs["window"], f.attrs["model_dir"] = 1, 1, ""
        for key in ("seconds_exact", "seconds_atp", "seconds_atp_qk", "seconds_atp_star"):
            f.attrs[key] = 1.0
        f["effects/exact"] = exact.astype(np.float32)
        for name, values in estimates.items():
            f[f"effects/{name}"] = values.astype(np.float32)
        f["nodes/name"] = np.array([f"L0.{s}{i}".encode() for i, s in enumerate(sites)], dtype="S32")
        f["nodes/site"] = np.array([s.encode() for s in sites], dtype="S32")
        f["nodes/layer"] = np.zeros(N, dtype=np.int32)
        f["nodes/head"] = np.full(N, -1, dtype=np.int32)
        f["nodes/neuron"] = np.full(N, -1, dtype=np.int32)
        f["positions"] = np.arange(S, dtype=np.int32)
        f["prompts/base_tokens"] = np.zeros((P, S), dtype=np.int32)
        f["prompts/source_tokens"] = np.zeros((P, S), dtype=np.int32) if source_tokens is None \
            else np.asarray(source_tokens, dtype=np.int32)
        f["prompts/length"] = np.full(P, S, dtype=np.int32) if lengths is None else np.asarray(lengths, dtype=np.int32)
        f["prompts/answer"] = np.ones(P, dtype=np.int32)
        f["prompts/wrong"] = np.full(P, 2, dtype=np.int32)
        f["baseline/base"], f["baseline/source"] = base, source
        U = P * N
        f["progress/done"] = np.ones(U, dtype=np.uint8)
        f["progress/unit_kind"] = np.zeros(U, dtype=np.int32)
        f["progress/unit_prompt"] = np.repeat(np.arange(P), N).astype(np.int32)
        f["progress/unit_node0"] = np.tile(np.arange(N), P).astype(np.int32)
        f["progress/unit_nodes"] = np.ones(U, dtype=np.int32)
        f["progress/seconds"] = np.full(U, 0.01)
    return path


# The datasets of /circuits and their types, as docs/circuits.md lays them out ("S": strings).
CIRCUIT_TYPES = {"set": "S", "k": np.int32, "size": np.int32, "members": np.uint8, "all_positions": np.uint8,
                 "choice": "S", "full": np.float64, "empty": np.float64, "metric": np.float64,
                 "faithfulness": np.float64, "ratio_of_means": np.float64, "mean_of_ratios": np.float64,
                 "median": np.float64, "q1": np.float64, "q3": np.float64, "sets/name": "S", "sets/auc": np.float64,
                 "sets/k80": np.int32, "sets/k90": np.int32, "sets/k100": np.int32, "done": np.uint8,
                 "edge_name": "S"}  # edge_name: the layout's addition naming the members' edges (node jobs have no /edges)


def write_circuits(path, edge_names, circuits, edge_exact=None, job=None):
    """Adds to a results file (write_synthetic's) the edges named ("u->v") and a /circuits group
    laid out as docs/circuits.md says: `circuits` maps each dataset's path under /circuits to its
    values, written with the contract's type; edge_exact [P, E, S, M] becomes /edges/exact.
    edge_names None writes no /edges (a node job whose circuits were ranked by its node effects)."""
    with h5py.File(path, "r+") as f:
        if edge_names is not None:
            f["edges/name"] = np.array([e.encode() for e in edge_names], dtype="S64")
            f["edges/upstream"] = np.array([e.split("->")[0].encode() for e in edge_names], dtype="S32")
            f["edges/downstream"] = np.array([e.split("->")[1].encode() for e in edge_names], dtype="S32")
        if edge_exact is not None:
            f["edges/exact"] = np.asarray(edge_exact, dtype=np.float32)
        g = f.create_group("circuits")
        for name, values in circuits.items():
            kind = CIRCUIT_TYPES[name]
            g[name] = np.array([v.encode() for v in values], dtype="S64") if kind == "S" else np.asarray(values, dtype=kind)
        g.attrs["job"] = json.dumps(job or {"sets": []})
        g.attrs["fingerprint"], g.attrs["seconds"] = "0123abcd", 1.5
    return path
