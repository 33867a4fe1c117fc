"""analysis.causal_trace: token roles and role means by hand, against a direct reading of a real
file, and in the report."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import analysis
from analysis import causal_trace as ct
from conftest import ROOT, run_job


class FakeResults:
    """Just what causal_trace reads: one site, one layer, positions 0..S-1."""

    def __init__(self, subjects, effects):
        self.path = "fake.h5"
        self.job = {"corruption": {"gaussian": {"samples": 1}},
                    "prompts": [{"clean": [0] * len(e), "noise_positions": s} for s, e in zip(subjects, effects)]}
        self.lengths = np.array([len(e) for e in effects])
        S = int(self.lengths.max())
        self.positions = np.arange(S)
        self.exact = np.full((len(effects), 1, S), np.nan)
        for p, e in enumerate(effects):
            self.exact[p, 0, :len(e)] = e
        self.model_config = {"n_layer": 1}
        self.node_layers = np.array([0])
        self.sites = ["resid_post"]

    def nodes(self, site):
        return np.array([0]) if site == "resid_post" else np.array([], dtype=int)


def test_token_roles_by_hand():
    fake = FakeResults([[2, 3, 4], [1], [2, 3], [0, 1]], [[0] * 8, [0] * 4, [0] * 4, [0] * 3])
    assert ct.token_roles(fake, 0) == [-1, -1, 0, 1, 2, 3, 4, 5]
    assert ct.token_roles(fake, 1) == [-1, 2, 3, 5]  # a one-token subject is its last token
    assert ct.token_roles(fake, 2) == [-1, -1, 0, 5]  # the last position is the last token, whatever else
    assert ct.token_roles(fake, 3) == [0, 2, 5]


def test_role_means_by_hand():
    fake = FakeResults([[1, 2], [1], [1, 2, 3, 4]],
                       [[9, 1, 2, 3], [9, 4, 5, 6, 7], [0, 1, 10, 20, 3, 4, 8]])
    means, counts = ct.role_means(fake, "resid_post")
    # first subject: prompts 0 and 2 (1, 1); middle: prompt 2 alone (mean of 10 and 20); last
    # subject: 2, 4, 3; first subsequent: 5 (prompt 1), 4 (prompt 2); further: 6; last: 3, 7, 8
    want = [1.0, 15.0, 3.0, 4.5, 6.0, 6.0]
    assert list(counts) == [2, 1, 3, 2, 1, 3]
    assert np.allclose(means[:, 0], want)


def test_role_means_equal_a_direct_reading(tmp_path):
    """On a real gaussian file with per-prompt subjects: role_means against the roles worked out
    here from the job attribute and the raw /effects/exact."""
    path = run_job(str(tmp_path), "gpt2-trace-center")
    r = analysis.load(path)
    with h5py.File(path, "r") as f:
        exact = f["effects/exact"][..., 0]  # the job's one metric
        layers, sites = f["nodes/layer"][()], [s.decode() for s in f["nodes/site"][()]]
        lengths = f["prompts/length"][()]
    checked = 0
    for site in ("resid_pre", "mlp_out"):
        means, counts = ct.role_means(r, site)
        for layer in range(2):
            k = [i for i in range(len(sites)) if sites[i] == site and layers[i] == layer][0]
            per_role = {i: [] for i in range(6)}
            for p, prompt in enumerate(r.job["prompts"]):
                subject, T = prompt["noise_positions"], int(lengths[p])
                groups = {5: [T - 1], 2: [max(subject)] if max(subject) != T - 1 else [],
                          0: [min(subject)] if min(subject) != max(subject) else [],
                          1: [t for t in range(min(subject) + 1, max(subject))],
                          3: [max(subject) + 1] if max(subject) + 1 < T - 1 else [],
                          4: list(range(max(subject) + 2, T - 1))}
                for role, ts in groups.items():
                    if ts:
                        per_role[role].append(np.mean([float(exact[p, k, t]) for t in ts]))
            for role in range(6):
                assert counts[role] == len(per_role[role])
                if per_role[role]:
                    assert means[role, layer] == pytest.approx(np.mean(per_role[role]), rel=1e-12, abs=1e-15)
                    checked += 1
    assert checked >= 16


def test_report_has_causal_tracing_and_trace_refuses_other_files(tmp_path, real_file):
    path = run_job(str(tmp_path), "gpt2-trace-center")
    index = analysis.report(path, str(tmp_path / "report"), prompts=1)
    text = open(index).read()
    assert "<h2>Causal tracing</h2>" in text and os.path.exists(tmp_path / "report" / "causal_trace.png")
    plain = open(analysis.report(real_file, str(tmp_path / "plain"), prompts=0)).read()
    assert "Causal tracing" not in plain  # a pair job: nothing to trace
    p = subprocess.run([sys.executable, "-m", "analysis", "trace", real_file, "-o", str(tmp_path / "t")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and "not a causal-tracing file" in p.stderr
