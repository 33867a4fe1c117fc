"""Circuits in the analysis package (docs/circuits.md): /circuits loads as labelled arrays, the
summaries and curve numbers recomputed from the per-prompt values equal hand-computed ones (and
the file's, and a wrong stored value is caught), and the report has a circuits section exactly
when the file has /circuits. Synthetic files, written per the contract by conftest.write_circuits."""
import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest

import analysis
from analysis import circuit_figures, circuits_report
from analysis.figures import plt
from conftest import ROOT, write_circuits, write_synthetic
from test_report import axes_are_labelled

EDGES = ["embed->L0.H0.q", "embed->L0.mlp_in", "L0.H0->L0.mlp_in", "embed->logits", "L0.H0->logits", "L0.mlp->logits"]
CHOICES = ["edges pair", "nodes mean"]
FULL = np.array([2.0, 4.0, 6.0, 8.0])
EMPTY = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 8.0]])  # [A, P]; "nodes mean" has full = empty on prompt 3
# rows: (set, k, size, kept edges, faithfulness under each choice for the ranked rows)
SETS = [("exact", 4, 4, [5, 4, 3, 0], (1.0, 0.9)), ("exact", 1, 1, [5], (0.5, 0.3)), ("exact", 2, 2, [5, 4], (0.85, 0.6)),
        ("exact", 10, 6, [0, 1, 2, 3, 4, 5], (1.0, 1.0)), ("rand", 1, 1, [2], (0.1, 0.05)), ("rand", 2, 2, [2, 0], (0.2, 0.1)),
        ("rand", 4, 4, [2, 0, 3, 1], (0.4, 0.2)), ("big", -1, 2, [5, 4], (0.85, 0.6))]
HAND_METRIC = np.array([[1.0, 2.0, 3.0, 8.0], [3.0, -1.0, 11.0, 17.0]])  # the explicit circuit "hand", [A, P]
# its summaries by hand, [A] each. edges pair: per prompt 0.5 0.5 0.5 1; ratio of means 3.5/5.
# nodes mean: per prompt 2, -2/3, 2, NaN (full = empty); ratio of means (7.5 - 2.75)/(5 - 2.75) over all four.
HAND = {"ratio_of_means": [0.7, 19 / 9], "mean_of_ratios": [0.625, 10 / 9], "median": [0.5, 2.0], "q1": [0.5, 2 / 3],
        "q3": [0.625, 2.0]}
# curves by hand: trapezoids from (0, 0) over size, divided by the largest size (the second metric is 0.5 everywhere)
CURVES = {"auc": [[[4.775 / 6, 2.75 / 6], [4.0 / 6, 2.75 / 6]], [[0.8 / 4, 1.75 / 4], [0.4 / 4, 1.75 / 4]]],
          "k80": [[[2, -1], [4, -1]], [[-1, -1], [-1, -1]]], "k90": [[[4, -1], [4, -1]], [[-1, -1], [-1, -1]]],
          "k100": [[[4, -1], [10, -1]], [[-1, -1], [-1, -1]]]}


def circuit_datasets():
    """/circuits of 9 rows (the explicit position-specific "hand", then SETS), 2 choices, 4
    prompts, 2 metrics (logit_diff as above; prob: every circuit halfway, faithfulness 0.5)."""
    C, A, P, M, E, S = 1 + len(SETS), len(CHOICES), len(FULL), 2, len(EDGES), 2
    members = np.zeros((C, E, S))
    members[0, 0, 1] = members[0, 4, :] = 1  # "hand": edge 0 at column 1 only, edge 4 everywhere
    metric = np.zeros((C, A, P, M))
    faithfulness = np.zeros((C, A, P, M))
    stored = {name: np.zeros((C, A, M)) for name in HAND}
    metric[0, :, :, 0] = HAND_METRIC
    faithfulness[0, 0, :, 0] = [0.5, 0.5, 0.5, 1.0]
    faithfulness[0, 1, :, 0] = [2.0, -2 / 3, 2.0, np.nan]
    for name, values in HAND.items():
        stored[name][0, :, 0] = values
    for row, (_, _, _, kept, f) in enumerate(SETS, start=1):
        members[row, kept, :] = 1
        for a in range(A):
            metric[row, a, :, 0] = EMPTY[a] + f[a] * (FULL - EMPTY[a])
            faithfulness[row, a, :, 0] = f[a]
            for name in HAND:
                stored[name][row, a, 0] = f[a]
    for a in range(A):
        metric[:, a, :, 1] = EMPTY[a] + 0.5 * (FULL - EMPTY[a])
        faithfulness[:, a, :, 1] = 0.5
    faithfulness[:, 1, 3, :] = np.nan  # full = empty on prompt 3 under "nodes mean"
    for name in HAND:
        stored[name][:, :, 1] = 0.5
    out = {"set": ["hand"] + [s[0] for s in SETS], "k": [-1] + [s[1] for s in SETS], "size": [3] + [s[2] for s in SETS],
           "members": members, "all_positions": [0] + [1] * len(SETS), "choice": CHOICES,
           "full": np.stack([FULL, FULL], axis=1), "empty": np.stack([EMPTY, EMPTY], axis=2), "metric": metric,
           "faithfulness": faithfulness, "sets/name": ["exact", "rand"], "done": np.ones((C, A, P))}
    out.update(stored)
    out.update({f"sets/{name}": values for name, values in CURVES.items()})
    return out


def circuit_file(folder, edges=True, sites=("resid_pre",), ranks=None, **changes):
    """The synthetic file with /circuits (changes: datasets replaced); edges=False: without /edges;
    sites: its nodes'; ranks: {set: "rank"} replaced in the job."""
    P, S = len(FULL), 2
    path = write_synthetic(str(folder / "circuits.h5"), np.ones((P, len(sites), S, 2)), {}, sites=list(sites),
                           base=np.zeros((P, 2)), source=np.ones((P, 2)), metrics=("logit_diff", "prob"))
    job = {"sets": [{"name": "hand", "edges": ["embed->L0.H0.q@1", "L0.H0->logits"]},
                    {"name": "exact", "rank": "edges/exact", "k": [4, 1, 2, 10]},
                    {"name": "rand", "rank": "random", "k": [1, 2, 4]},
                    {"name": "big", "rank": "edges/exact", "threshold": 0.5}],
           "ablation": ["pair", "mean"], "granularity": ["edges", "nodes"], "positions": "specific"}
    for entry in job["sets"]:
        entry["rank"] = (ranks or {}).get(entry["name"], entry.get("rank"))
    edge_exact = np.arange(P * len(EDGES) * S * 2, dtype=float).reshape(P, len(EDGES), S, 2) / 10 - 2
    return write_circuits(path, EDGES if edges else None, dict(circuit_datasets(), **changes),
                          edge_exact=edge_exact if edges else None, job=job)


@pytest.fixture
def circuits_path(tmp_path):
    return circuit_file(tmp_path)


def test_circuits_load_as_labelled_arrays(circuits_path, tmp_path):
    r = analysis.load(circuits_path)
    c = r.circuits
    assert c.set[:3] == ["hand", "exact", "exact"] and c.choices == CHOICES and c.metrics == ["logit_diff", "prob"]
    assert list(c.k) == [-1, 4, 1, 2, 10, 1, 2, 4, -1] and list(c.size) == [3, 4, 1, 2, 6, 1, 2, 4, 2]
    assert c.members.dtype == bool and c.members.shape == (9, len(EDGES), 2) and list(c.all_positions) == [False] + [True] * 8
    assert c.metric.shape == c.faithfulness.shape == (9, 2, 4, 2) and c.empty.shape == (2, 4, 2) and c.full.shape == (4, 2)
    assert c.rows("rand") == [5, 6, 7] and c.set_names == ["exact", "rand"] and c.auc.shape == c.k80.shape == (2, 2, 2)
    assert c.job["ablation"] == ["pair", "mean"] and c.job["sets"][1]["rank"] == "edges/exact" and c.fingerprint == "0123abcd" and c.seconds == 1.5 and c.done.all()
    assert analysis.circuit_edges(r, 0) == [(0, [1]), (4, [0, 1])]
    one = analysis.circuit_faithfulness(r, 0, "nodes mean")
    assert one["median"] == 2.0 and np.isnan(one["per_prompt"][3]) and one["per_prompt"][1] == pytest.approx(-2 / 3)
    with pytest.raises(ValueError, match="no circuit set 'nope'; the file has: hand, exact, rand, big"):
        c.rows("nope")
    with pytest.raises(ValueError, match="no choice 'nodes zero'"):
        analysis.faithfulness_curve(r, "exact", "nodes zero")
    plain = write_synthetic(str(tmp_path / "plain.h5"), np.ones((2, 1, 2)), {})
    r = analysis.load(plain)
    assert r.circuits is None
    with pytest.raises(ValueError, match="has no /circuits: run `patchsweep circuit`"):
        analysis.faithfulness_curve(r, "exact", "edges pair")


def test_summaries_by_hand():
    """The definitions on small numbers: a prompt whose circuit value is missing counts in no
    mean; one whose full = empty counts in the ratio of means only; quartiles interpolate."""
    got = analysis.summaries([1.0, np.nan, 3.0, 8.0], [0.0] * 4, FULL)
    want = {"ratio_of_means": 12 / 16, "mean_of_ratios": 2 / 3, "median": 0.5, "q1": 0.5, "q3": 0.75}
    assert got == pytest.approx(want, abs=1e-12)
    got = analysis.summaries(HAND_METRIC[1], EMPTY[1], FULL)
    assert got == pytest.approx({name: values[1] for name, values in HAND.items()}, abs=1e-12)
    nothing = analysis.summaries([1.0, 2.0], [3.0, 4.0], [3.0, 4.0])  # full = empty everywhere
    assert all(np.isnan(v) for v in nothing.values())


def test_recomputed_summaries_equal_hand_values_and_the_file(circuits_path, tmp_path):
    c = analysis.load(circuits_path).circuits
    again = analysis.recompute_summaries(c)
    for name, values in HAND.items():
        assert again[name][0, :, 0] == pytest.approx(values, abs=1e-12), name
        assert np.allclose(again[name], getattr(c, name), atol=1e-12, rtol=0), name
    assert np.allclose(again["median"][1:, :, 1], 0.5, atol=1e-12, rtol=0)
    # a file whose stored summary breaks the definition is caught
    wrong = circuit_datasets()["q3"]
    wrong[0, 1, 0] = 1.5  # what the quartile of "nearest" rank would say, not the interpolated 2.0
    c = analysis.load(circuit_file(tmp_path, q3=wrong)).circuits
    assert not np.allclose(analysis.recompute_summaries(c)["q3"], c.q3, atol=1e-12, rtol=0)


def test_curve_numbers_by_hand(circuits_path):
    numbers = analysis.curve_metrics([4, 1, 2, 10], [4, 1, 2, 6], [1.0, 0.5, 0.85, 1.0])
    assert numbers == pytest.approx({"auc": 4.775 / 6, "k80": 2, "k90": 4, "k100": 4}, abs=1e-12)
    # (0, 0) is part of the curve: without it the area would be 4.525 / 6
    assert analysis.curve_metrics([1], [1], [1.0])["auc"] == pytest.approx(0.5, abs=1e-12)
    assert np.isnan(analysis.curve_metrics([1, 2], [1, 2], [0.5, np.nan])["auc"])
    c = analysis.load(circuits_path).circuits
    again = analysis.recompute_curves(c)
    for name, values in CURVES.items():
        assert np.allclose(again[name], values, atol=1e-12, rtol=0) and np.allclose(getattr(c, name), values), name


def test_faithfulness_curve_in_order_of_k(circuits_path):
    r = analysis.load(circuits_path)
    curve = analysis.faithfulness_curve(r, "exact", "edges pair")
    assert list(curve["k"]) == [1, 2, 4, 10] and list(curve["size"]) == [1, 2, 4, 6]
    assert list(curve["faithfulness"]) == pytest.approx([0.5, 0.85, 1.0, 1.0])
    assert curve["auc"] == pytest.approx(4.775 / 6) and (curve["k80"], curve["k90"], curve["k100"]) == (2, 4, 4)
    assert list(analysis.faithfulness_curve(r, "rand", "nodes mean")["faithfulness"]) == pytest.approx([0.05, 0.1, 0.2])
    # another metric: by name, or the one the file was loaded as
    assert list(analysis.faithfulness_curve(r, "exact", "edges pair", "prob")["faithfulness"]) == pytest.approx([0.5] * 4)
    assert analysis.faithfulness_curve(analysis.load(circuits_path, metric="prob"), "exact", "edges pair")["k80"] == -1


def test_report_has_a_circuits_section(circuits_path, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        text = open(analysis.report(circuits_path, str(tmp_path / "report"), prompts=0)).read()
    assert "<h2>Circuits and their faithfulness</h2>" in text
    assert "<td class=''>0.7 · 0.625 · 0.5 [0.5, 0.625]</td>" in text  # "hand" under "edges pair"
    assert "2.11 · 1.11 · 2 [0.667, 2]" in text  # and under "nodes mean"
    assert "nodes mean: ratio of means · mean of ratios · median [q1, q3]" in text
    assert "<td class='l'>exact</td><td class='l'>edges pair</td><td class=''>0.796</td><td class=''>2</td>" in text
    for name in ("circuit_curves", "circuit_spread", "circuit_graph_0", "circuit_graph_3", "circuit_graph_6", "circuit_graph_8"):
        assert f"src='{name}.png'" in text and (tmp_path / "report" / f"{name}.png").stat().st_size > 5000, name
    assert "The axis is linear" in text
    r = analysis.load(circuits_path)
    assert circuits_report.featured_rows(r.circuits, 0) == [0, 8, 3, 6]  # hand, big; at k = 2, where "exact" reaches 0.8: exact, rand
    r.circuits.job["sets"][1]["rank"], r.circuits.job["sets"][2]["rank"] = "random", "edges/exact"
    assert circuits_report.reference_set(r.circuits) == "rand"  # the set ranked by exact edge effects, wherever it is
    assert circuits_report.featured_rows(r.circuits, 0) == [0, 8, 3, 6]  # rand reaches 0.8 nowhere: its middle k, 2
    for fig in (circuit_figures.curves(r), circuit_figures.spread(r, [0, 3]), circuit_figures.graph(r, 0)):
        axes_are_labelled(fig, "circuits")
        plt.close(fig)
    plain = write_synthetic(str(tmp_path / "plain.h5"), np.ones((2, 1, 2)), {})
    assert "Circuits and" not in open(analysis.report(plain, str(tmp_path / "plain"), prompts=0)).read()


def test_an_unfinished_group_is_reported_as_such(tmp_path):
    """A run of `patchsweep circuit` killed half-way: the report says how many units are done."""
    done = np.ones((9, 2, 4))
    done[:, :, 2:] = 0
    text = open(analysis.report(circuit_file(tmp_path, done=done), str(tmp_path / "report"), prompts=0)).read()
    assert "<b>Incomplete</b>: 36 of 72 (circuit, choice, prompt) units are done" in text


def test_spread_turns_symlog_when_values_span_decades(tmp_path):
    """Per-prompt values far beyond 1, of either sign (Miller et al.: outliers in the tens of
    thousands of percent): the spread's axis is symlog and the report says so."""
    faithfulness = circuit_datasets()["faithfulness"]
    faithfulness[0, 0, :, 0] = [0.5, -300.0, 0.9, 250.0]
    path = circuit_file(tmp_path, faithfulness=faithfulness)
    r = analysis.load(path)
    assert circuit_figures.spread_scale(r.circuits.faithfulness[0]) == "symlog"
    assert circuit_figures.spread_scale(np.array([-9.0, 0.5, np.nan])) == "linear"
    fig = circuit_figures.spread(r, [0])
    assert fig.axes[0].get_yscale() == "symlog"
    plt.close(fig)
    assert "The axis is <b>symlog</b>" in open(analysis.report(path, str(tmp_path / "report"), prompts=0)).read()


def test_graph_without_exact_edges_draws_the_circuit_alike(circuits_path):
    with h5py.File(circuits_path, "r+") as f:
        del f["edges/exact"]
    r = analysis.load(circuits_path)
    fig = circuit_figures.graph(r, 3)
    assert "its 2 edges" in fig.axes[0].get_title()
    plt.close(fig)


@pytest.mark.parametrize("change, message", [
    ({"faithfulness": np.zeros((9, 2, 3, 2))}, "/circuits/faithfulness has shape [9, 2, 3, 2], expected [9, 2, 4, 2]"),
    ({"members": np.zeros((9, 5, 2))}, "/circuits/members has shape [9, 5, 2], expected [9, 6, 2]"),
    ({"sets/k90": np.zeros((1, 2, 2))}, "/circuits/sets/k90 has shape [1, 2, 2], expected [2, 2, 2]"),
])
def test_a_malformed_group_is_refused_in_one_line(tmp_path, change, message):
    """The report's command line refuses a /circuits group whose shapes disagree with the file,
    naming the dataset, exit status 2; a missing dataset likewise."""
    path = circuit_file(tmp_path, **change)
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", "analysis", "report", path, "-o", str(tmp_path / "r")],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr == f"analysis: {path}: {message} (circuits, choices, prompts, metrics, " \
                                                   "edges, columns of the file)\n", done.stderr
    datasets = circuit_datasets()
    del datasets["q1"]
    with pytest.raises(ValueError, match=r"^/circuits/q1 is missing$"):
        analysis.load(write_circuits(write_synthetic(str(tmp_path / "m.h5"), np.ones((4, 1, 2, 2)), {}, base=np.zeros((4, 2)),
                                                     source=np.ones((4, 2)), metrics=("logit_diff", "prob")),
                                     EDGES, datasets))


def test_a_ranking_of_node_effects_counts_nodes_on_its_curve(tmp_path):
    """An "effects/" ranking takes k nodes (the file's z and mlp_out nodes, 3 here), not the edges
    `size` counts: rand's k = 1, 2, 4 take 1, 2, 3 nodes, so its area under 0.1, 0.2, 0.4 is
    (0.05 + 0.15 + 0.3) / 3, where sizes 1, 2, 4 would give 0.8 / 4."""
    path = circuit_file(tmp_path, sites=("z", "mlp_out", "resid_pre", "z"), ranks={"rand": "effects/atp"})
    c = analysis.load(path).circuits
    assert (c.node_items, c.node_cells) == (3, 6) and [analysis.circuits.items_kept(c, row) for row in c.rows("rand")] == [1, 2, 3]
    auc = analysis.recompute_curves(c)["auc"]
    assert auc[1, 0, 0] == pytest.approx(0.5 / 3, abs=1e-12) and auc[0, 0, 0] == pytest.approx(4.775 / 6, abs=1e-12)


def test_circuits_of_a_node_job_are_drawn_from_their_own_edge_names(tmp_path):
    """A node job's file has no /edges: /circuits/edge_name names the members' edges, and the
    circuits are drawn from it (alike, in grey: there are no exact edge effects)."""
    r = analysis.load(circuit_file(tmp_path, edges=False, edge_name=EDGES))
    assert r.circuits.edge_names == EDGES and not r.edge_names and analysis.circuits.edge_names(r) == EDGES
    fig = circuit_figures.graph(r, 0)
    assert fig.axes[0].get_title() == "Circuit hand: its 2 edges"
    plt.close(fig)
    assert "circuit_graph_0.png" in open(analysis.report(r.path, str(tmp_path / "report"), prompts=0)).read()
    with pytest.raises(ValueError, match=r"/circuits/edge_name has shape \[5\], expected \[6\] \(the edges of /edges/name\)"):
        analysis.load(circuit_file(tmp_path, edge_name=EDGES[:5]))


def test_a_file_without_edges_reports_its_circuits_undrawn(tmp_path):
    """Circuits in a file that names no edges (neither /edges nor /circuits/edge_name, as the
    first layout had it): they load, and the report gives their numbers and says why it draws none."""
    r = analysis.load(circuit_file(tmp_path, edges=False))
    assert r.circuits.members.shape == (9, len(EDGES), 2) and not r.edge_names
    assert circuit_figures.graph(r, 0) is None
    text = open(analysis.report(r.path, str(tmp_path / "report"), prompts=0)).read()
    assert "0.7 · 0.625 · 0.5 [0.5, 0.625]" in text and "names no edges (neither <code>/circuits/edge_name</code> nor <code>/edges/name</code>): the circuits are not drawn" in text
    assert "circuit_graph_" not in text
