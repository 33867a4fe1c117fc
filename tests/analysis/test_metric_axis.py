"""The metric axis (format 2): load() reads one of a file's metrics, for_metric() the others,
metric_agreement() compares their rankings, the report compares them; format-1 files still load."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import analysis
from conftest import ROOT, run_job, write_synthetic


@pytest.fixture(scope="module")
def metrics_file(tmp_path_factory):
    """The four-metric fixture job (tiny GPT-2, kl, logit_diff, prob, logprob) run by the binary."""
    return run_job(str(tmp_path_factory.mktemp("metrics")), "gpt2-pair-metrics")


def test_each_metric_is_its_slice_of_the_file(metrics_file):
    r = analysis.load(metrics_file)
    assert r.metrics == ["kl", "logit_diff", "prob", "logprob"] and r.metric == "kl"
    with h5py.File(metrics_file, "r") as f:
        exact, atp, base = f["effects/exact"][()], f["effects/atp"][()], f["baseline/base"][()]
    for k, m in enumerate(r.metrics):
        other = analysis.load(metrics_file, metric=m)
        same = r.for_metric(m)
        assert other.metric == same.metric == m
        for view in (other, same):
            assert view.exact.tobytes() == exact[..., k].tobytes()
            assert view.estimates["atp"].tobytes() == atp[..., k].tobytes()
            assert np.array_equal(view.base, base[:, k])
    assert r.metric == "kl", "for_metric changed the original"
    with pytest.raises(ValueError, match="holds no metric 'accuracy'; it holds: kl, logit_diff, prob, logprob"):
        analysis.load(metrics_file, metric="accuracy")


def test_metric_agreement_by_hand(tmp_path):
    """Two metrics over 1 prompt x 4 nodes x 1 position. Mean |effect|: metric a 4, 3, 2, 1;
    metric b 1, 3, 2, 4 (nodes 0 and 3 swapped). Spearman of ranks (1,2,3,4) and (4,2,3,1):
    1 - 6 * (9 + 0 + 0 + 9) / (4 * 15) = -0.8. a's top 2 {0, 1} against b's first 2 {3, 1}: 1/2."""
    a = np.array([4.0, -3.0, 2.0, 1.0])
    b = np.array([1.0, 3.0, -2.0, 4.0])
    exact = np.stack([a, b], axis=-1).reshape(1, 4, 1, 2)
    path = write_synthetic(str(tmp_path / "m.h5"), exact, {}, base=np.zeros((1, 2)), source=np.ones((1, 2)),
                           metrics=("a", "b"))
    r = analysis.load(path)
    agree = analysis.metric_agreement(r, "a", "b", k=2)
    assert agree["cells"] == 4
    assert agree["spearman"] == pytest.approx(-0.8)
    assert agree["top_k_a_in_b"] == 0.5 and agree["top_k_b_in_a"] == 0.5
    assert analysis.metric_agreement(r, "b", "b", k=2)["spearman"] == pytest.approx(1.0)


def test_format_1_files_still_load(tmp_path):
    """A file of an older patchsweep (no metric axis, the metric in the attribute) reads as M = 1."""
    exact = np.arange(6, dtype=float).reshape(1, 3, 2)
    path = write_synthetic(str(tmp_path / "old.h5"), exact, {"atp": exact * 2}, format_version=1)
    r = analysis.load(path)
    assert r.metrics == ["logit_diff"] and r.metric == "logit_diff"
    assert np.array_equal(r.exact, exact.astype(np.float32)) and np.array_equal(r.estimates["atp"], 2 * exact)
    assert r.base.shape == (1,)


def test_report_compares_the_metrics(metrics_file, tmp_path):
    text = open(analysis.report(metrics_file, str(tmp_path / "r"))).read()
    assert "Metrics compared" in text and "rho with kl" in text
    for m in ("logit_diff", "prob", "logprob"):
        assert f">{m}</td>" in text
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "analysis", "report", metrics_file, "-o", str(tmp_path / "p"),
                        "--metric", "prob"], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    text = open(p.stdout.strip()).read()
    assert "metric <b>prob</b>" in text and "rho with prob" in text
    p = subprocess.run([sys.executable, "-m", "analysis", "report", metrics_file, "-o", str(tmp_path / "q"),
                        "--metric", "accuracy"], capture_output=True, text=True, env=env)
    assert p.returncode == 2 and "holds no metric 'accuracy'" in p.stderr
