"""Edges in the analysis package: /edges/* load as labelled arrays of the selected metric, and
edge_verification_cost counts in an estimator's order (a perfect estimator needs exactly k)."""
import shutil

import h5py
import numpy as np
import pytest

import analysis
from conftest import run_job


def test_edges_load_and_rank(tmp_path):
    path = run_job(str(tmp_path), "edges-gpt2-pair-noise-each")
    r = analysis.load(path)
    with h5py.File(path, "r") as f:
        names = [n.decode() for n in f["edges/name"][()]]
        exact, eap = f["edges/exact"][()], f["edges/eap"][()]
    assert r.edge_names == names and r.edge_upstream[0] + "->" + r.edge_downstream[0] == names[0]
    assert r.edges["exact"].tobytes() == exact[..., 0].tobytes() and r.edges["eap"].tobytes() == eap[..., 0].tobytes()
    assert r.exact is None and not r.estimates  # a job of edges alone has no node effects
    # an estimator equal to the exact effect finds the true top k in k verifications
    perfect = str(tmp_path / "perfect.h5")
    shutil.copy(path, perfect)
    with h5py.File(perfect, "r+") as f:
        f["edges/eap"][...] = f["edges/exact"][()]
    cells = int(np.isfinite(np.nanmean(np.abs(exact[..., 0]), axis=0)).sum())
    assert list(analysis.edge_verification_cost(analysis.load(perfect), "eap", [1, 5])) == [1, 5]
    cost = analysis.edge_verification_cost(r, "eap", [5])[0]
    assert 5 <= cost <= cells


def test_report_of_an_edge_job(tmp_path):
    """A job of edges alone gets a report: the edge table with each estimator's ranks, the cost
    of finding the true top edges, the scatter and the graph; no numpy warnings."""
    import warnings
    path = run_job(str(tmp_path), "edges-gpt2-pair-denoise-all")
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        text = open(analysis.report(path, str(tmp_path / "report"))).read()
    assert "<h2>Edges</h2>" in text and "rank by eap" in text and "edge_graph.png" in text
    assert (tmp_path / "report" / "edge_graph.png").exists()


def test_edge_bound(tmp_path):
    """`patchsweep bound --edges` writes /bound over the edge axis: the package loads it, draws
    its subsets again over [K, E, S] (giving back each cell's estimate), checks it against the
    exact edge effects, and the report draws it without numpy warnings."""
    import json
    import subprocess
    import warnings
    from conftest import BINARY
    path = run_job(str(tmp_path), "edges-gpt2-pair-noise-each")
    subprocess.run([BINARY, "bound", path[:-3] + ".json", "--edges", "--verified", "5", "--subsets", "24",
                    "--inclusion", "0.2", "--quiet"], check=True, timeout=300)
    r = analysis.load(path)
    b = r.bound
    P, E, S = r.edges["exact"].shape
    assert b["cells"] == "edges" and b["ucb"].shape == (P, E, S) and b["ranked_by"] in ("eap", "eap_ig", "eap_ig_act")
    for p in range(P):
        masks = analysis.bound_subsets(r, p)
        assert masks.shape == (24, E, S) and not (masks & np.isnan(b["ucb"][p])[None]).any()
        effect = b["subset_effect"][p]
        for e, s in list(zip(*np.nonzero(np.isfinite(b["ucb"][p]))))[:50]:
            inside = masks[:, e, s]
            assert b["estimate"][p, e, s] == pytest.approx(effect[inside].mean() - effect[~inside].mean(), rel=1e-9, abs=1e-12)
    check = analysis.bound_check(r)
    assert check["theta"].shape == (P,) and check["ucb"].size == int((~np.isnan(b["ucb"])).sum())
    missed = [np.nanmax(np.where(np.isnan(b["ucb"][p]), np.nan, np.abs(r.edges["exact"][p]))) for p in range(P)]
    assert np.allclose(check["missed"], missed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        text = open(analysis.report(path, str(tmp_path / "report"))).read()
    assert "patchsweep bound" in text
