"""The false-negative bound written by `patchsweep bound`: loaded, checked against the exact
sweep (known answers on a synthetic file), drawn with labelled axes, and reported."""
import json
import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest

import analysis
from analysis import figures
from conftest import BINARY, FIXTURES, write_synthetic
from test_report import axes_are_labelled


@pytest.fixture(scope="module")
def bounded_file(real_file, tmp_path_factory):
    """A copy of the real file with /bound for its z cells (the job's fingerprint ignores where
    the output is, so a job naming the copy is the same job)."""
    tmp = str(tmp_path_factory.mktemp("bound"))
    path = os.path.join(tmp, "bounded.h5")
    shutil.copy(real_file, path)
    job = json.load(open(os.path.join(FIXTURES, "jobs", "gpt2-pair-denoise.json")))
    job["model"] = os.path.normpath(os.path.join(FIXTURES, "jobs", job["model"]))
    job["output"] = path
    job_path = os.path.join(tmp, "job.json")
    json.dump(job, open(job_path, "w"))
    subprocess.run([BINARY, "bound", job_path, "--site", "z", "--verified", "4", "--subsets", "16", "--quiet"],
                   check=True, timeout=300)
    return path


def test_load_bound(bounded_file, real_file):
    assert analysis.load(real_file).bound is None
    r = analysis.load(bounded_file)
    b = r.bound
    assert b["site"] == "z" and b["n_verified"] == 4 and b["subsets"] == 16 and b["metric"] == "logit_diff"
    # ranked by the estimator of the best recall (tests/cli/test_bound.py checks the choice), and why
    recall = {e: b[f"recall_{e}"] for e in ("atp", "atp_qk", "atp_star")}
    assert b["ranked_by"] == max(recall, key=lambda e: (recall[e], -list(recall).index(e)))
    assert b["ranked_by_reason"].startswith("best recall of each prompt's true top 4")
    assert b["ucb"].shape == r.shape and b["subset_effect"].shape == (r.shape[0], 16)
    z = np.array([s == "z" for s in r.node_sites])
    for p in range(r.shape[0]):
        assert b["verified"][p].sum() == 4 and b["verified"][p][z].sum() == 4
        unverified = ~np.isnan(b["ucb"][p])
        assert not (unverified & b["verified"][p]).any() and not unverified[~z].any()
        assert b["theta"][p] == np.max(b["ucb"][p][unverified])
        assert b["theta_sign"][p] == np.max(np.abs(b["subset_effect"][p]))


def test_bound_subsets_drawn_again(bounded_file):
    """The file keeps the seed, not the masks: the subsets drawn again from the recipe give back
    every unverified cell's estimate (mean subset effect with it - without it) and se."""
    r = analysis.load(bounded_file)
    b = r.bound
    with h5py.File(bounded_file, "r") as f:
        assert "in_subset" not in f["bound"]
    for p in range(r.shape[0]):
        masks = analysis.bound_subsets(r, p)
        effect = b["subset_effect"][p]
        assert masks.shape == (16,) + r.shape[1:] and not (masks & np.isnan(b["ucb"][p])[None]).any()
        for n, s in zip(*np.nonzero(~np.isnan(b["ucb"][p]))):
            inside = masks[:, n, s]
            if inside.sum() < 2 or (~inside).sum() < 2:
                assert np.isinf(b["ucb"][p, n, s])
                continue
            a, c = effect[inside], effect[~inside]
            assert b["estimate"][p, n, s] == pytest.approx(a.mean() - c.mean(), rel=1e-9, abs=1e-12)
            assert b["se"][p, n, s] == pytest.approx(np.sqrt(a.var(ddof=1) / a.size + c.var(ddof=1) / c.size), rel=1e-9)


def test_bound_check_known(tmp_path):
    """Two prompts, three cells: prompt 0's bound (2.5) covers its largest unverified |effect|
    (|-2|; the verified cell's 9 does not count), prompt 1's (1.0) does not cover 3; the sign
    test's bounds (1.5, 4.0) do the opposite."""
    exact = np.array([[[9.0], [-2.0], [0.5]], [[1.0], [3.0], [0.25]]])
    path = write_synthetic(str(tmp_path / "s.h5"), exact, {"atp": exact})
    ucb = np.array([[[np.nan], [2.5], [1.0]], [[np.nan], [1.0], [0.1]]])
    with h5py.File(path, "r+") as f:
        g = f.create_group("bound")
        g.attrs["site"], g.attrs["ranked_by"], g.attrs["n_verified"], g.attrs["subsets"] = "resid_pre", "atp", 1, 8
        g["verified"] = np.isnan(ucb).astype(np.uint8)
        g["ucb"], g["estimate"], g["se"] = ucb, ucb, ucb
        g["theta"] = np.array([2.5, 1.0])
        g["theta_sign"] = np.array([1.5, 4.0])
        g["subset_effect"] = np.zeros((2, 8))
    check = analysis.bound_check(analysis.load(path))
    assert check["missed"].tolist() == [2.0, 3.0] and check["held"].tolist() == [True, False]
    assert check["held_sign"].tolist() == [False, True]
    assert sorted(zip(check["exact"].tolist(), check["ucb"].tolist())) == [(0.25, 0.1), (0.5, 1.0), (2.0, 2.5), (3.0, 1.0)]


def test_bound_check_at_float32(tmp_path):
    """The exact effects are float32: a bound equal to a cell's effect in double (the subset of
    that cell alone) holds, though the float32 effect is above it by its rounding; a bound one
    float32 step below does not."""
    effect = np.float32(0.22919513)  # as double 0.2291951298713684
    below = float(np.nextafter(effect, np.float32(0)))
    exact = np.array([[[9.0], [effect]], [[9.0], [effect]]])
    path = write_synthetic(str(tmp_path / "f.h5"), exact, {"atp": exact})
    theta = np.array([0.229195128019426, below])  # the double the joint patch gave; one step down
    with h5py.File(path, "r+") as f:
        g = f.create_group("bound")
        g.attrs.update(site="resid_pre", ranked_by="atp", n_verified=1, subsets=8)
        g["verified"] = np.array([[[1], [0]], [[1], [0]]], dtype=np.uint8)
        ucb = np.array([[[np.nan], [theta[0]]], [[np.nan], [theta[1]]]])
        g["ucb"], g["estimate"], g["se"] = ucb, ucb, ucb
        g["theta"], g["theta_sign"], g["subset_effect"] = theta, theta, np.zeros((2, 8))
    check = analysis.bound_check(analysis.load(path))
    assert float(check["missed"][0]) > theta[0]  # in double the bound looks missed
    assert check["held"].tolist() == [True, False] and check["held_sign"].tolist() == [True, False]
    assert check["covered"].tolist() == [True, False]


def test_bound_check_reads_the_bounds_metric(tmp_path):
    """A /bound computed for a file's second metric is checked against that metric's exact
    effects, whichever metric the file was loaded to read."""
    exact = np.zeros((1, 2, 1, 2))
    exact[0, :, 0, 0], exact[0, :, 0, 1] = [5.0, 1.0], [5.0, 3.0]
    path = write_synthetic(str(tmp_path / "m.h5"), exact, {"atp": exact}, base=np.zeros((1, 2)), source=np.ones((1, 2)),
                           metrics=("logit_diff", "kl"))
    with h5py.File(path, "r+") as f:
        g = f.create_group("bound")
        g.attrs.update(site="resid_pre", ranked_by="atp", n_verified=1, subsets=8, metric="kl")
        g["verified"] = np.array([[[1], [0]]], dtype=np.uint8)
        ucb = np.array([[[np.nan], [2.0]]])
        g["ucb"], g["estimate"], g["se"] = ucb, ucb, ucb
        g["theta"], g["theta_sign"], g["subset_effect"] = np.array([2.0]), np.array([4.0]), np.zeros((1, 8))
    for metric in (None, "kl"):
        check = analysis.bound_check(analysis.load(path, metric=metric))
        assert check["missed"].tolist() == [3.0] and check["held"].tolist() == [False]


def test_report_names_boundary_ties(tmp_path):
    """A tie block across the verified budget (/bound/boundary_ties) is loaded and reported, with
    the way it went (ties = "bound": left to the bound)."""
    exact = np.array([[[9.0], [-2.0], [0.5]], [[1.0], [3.0], [0.25]]])
    path = write_synthetic(str(tmp_path / "s.h5"), exact, {"atp": exact})
    ucb = np.array([[[np.nan], [2.5], [1.0]], [[np.nan], [1.0], [0.1]]])
    with h5py.File(path, "r+") as f:
        g = f.create_group("bound")
        g.attrs.update(site="resid_pre", ranked_by="atp", n_verified=1, subsets=8, ties="bound")
        g["verified"] = np.isnan(ucb).astype(np.uint8)
        g["ucb"], g["estimate"], g["se"] = ucb, ucb, ucb
        g["theta"], g["theta_sign"] = np.array([2.5, 1.0]), np.array([1.5, 4.0])
        g["subset_effect"] = np.zeros((2, 8))
        g["boundary_ties"] = np.array([2, 0], dtype=np.int32)
    r = analysis.load(path)
    assert r.bound["boundary_ties"].tolist() == [2, 0] and r.bound["ties"] == "bound"
    text = open(analysis.report(path, str(tmp_path / "report"))).read()
    assert "On 1 prompt a block of cells tied on |atp|" in text and "left unverified, to the bound" in text


def test_bound_figure_and_report(bounded_file, tmp_path):
    r = analysis.load(bounded_file)
    fig = figures.bound_figure(r)
    axes_are_labelled(fig, "bound")
    text = open(analysis.report(bounded_file, str(tmp_path / "report"))).read()
    assert "Bounding what verifying the top missed" in text and "src='bound.png'" in text
    assert os.path.getsize(tmp_path / "report" / "bound.png") > 5000
