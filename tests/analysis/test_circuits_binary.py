"""A /circuits group written by the binary (`patchsweep circuit`) held to the definitions of
docs/circuits.md as the analysis package computes them: the stored summaries and curve numbers
equal the ones recomputed from the stored per-prompt values, the full circuit is exactly 1, and
the report draws it. Skipped, saying so, while the binary has no `circuit` command (the C side of
issue 12 lands separately)."""
import subprocess

import numpy as np
import pytest

import analysis
from conftest import BINARY, run_job

CIRCUITS = {"sets": [{"name": "hand", "nodes": ["embed", "L0.H1", "L1.mlp"]},
                     {"name": "exact", "rank": "edges/exact", "k": [1, 5, 20, 110, 500]},
                     {"name": "eap", "rank": "edges/eap", "k": [1, 5, 20]},
                     {"name": "rand", "rank": "random", "seed": 3, "k": [1, 5, 20]},
                     {"name": "atp", "rank": "effects/atp", "k": [1, 3, 100]}],  # 10 heads and MLPs: 100 is clipped
            "granularity": ["edges", "nodes"], "ablation": ["pair"]}


def binary_has_circuit():
    """False only on the binary's own refusal of an unknown command: any other answer runs the tests."""
    answer = subprocess.run([BINARY, "circuit"], capture_output=True, text=True)
    return 'unknown command "circuit"' not in answer.stderr


@pytest.fixture(scope="module")
def circuit_results(tmp_path_factory):
    if not binary_has_circuit():
        pytest.skip(f"{BINARY} has no `circuit` command yet (docs/circuits.md)")
    folder = str(tmp_path_factory.mktemp("circuits"))
    path = run_job(folder, "edges-gpt2-pair-denoise-all", circuits=CIRCUITS, nodes=["z", "mlp_out"],
                   estimates=["eap", "atp"])  # 3 prompts, 110 edges; 10 nodes a ranking of node effects takes
    done = subprocess.run([BINARY, "circuit", path[:-3] + ".json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return path


def test_stored_summaries_follow_the_definitions(circuit_results):
    c = analysis.load(circuit_results).circuits
    assert c.choices == ["edges pair", "nodes pair"] and c.done.all()
    again = analysis.recompute_summaries(c)
    for name, values in again.items():  # both in float64 from the same values: only rounding apart
        assert np.allclose(getattr(c, name), values, rtol=1e-12, atol=1e-12, equal_nan=True), name
    curves = analysis.recompute_curves(c)
    assert c.set_names == ["exact", "eap", "rand", "atp"] and c.node_items == 10
    assert np.allclose(c.auc, curves["auc"], rtol=1e-12, atol=1e-12, equal_nan=True)
    for name in ("k80", "k90", "k100"):
        assert (getattr(c, name) == curves[name]).all(), name
    full = [row for row in c.rows("exact") if c.k[row] >= 110]  # every edge: k 110, and 500 clipped to it
    assert [int(c.size[row]) for row in full] == [110, 110]
    assert (c.faithfulness[full] == 1.0).all()


def test_report_draws_the_binary_s_circuits(circuit_results, tmp_path):
    text = open(analysis.report(circuit_results, str(tmp_path / "report"), prompts=0)).read()
    assert "<h2>Circuits and their faithfulness</h2>" in text and "circuit_curves.png" in text
    assert "circuit_graph_0.png" in text  # "hand", the explicit circuit
