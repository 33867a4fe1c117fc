"""Verification cost, recall and false negatives on synthetic files whose answers are known."""
import numpy as np
import pytest

import analysis
from conftest import write_synthetic

# six cells (nodes) at one position; true importance 6, 5, 4, 3, 2, 1
EXACT = np.array([6.0, -5.0, 4.0, 3.0, -2.0, 1.0]).reshape(1, 6, 1)
# "atp" ranks node 0 last and the rest in order; "atp_qk" is perfect
BACKWARD = np.array([1.0, 6.0, 5.0, 4.0, 3.0, 2.0]).reshape(1, 6, 1)


def synthetic(tmp_path):
    return analysis.load(write_synthetic(str(tmp_path / "s.h5"), EXACT, {"atp": BACKWARD, "atp_qk": EXACT}))


def test_verification_cost_known(tmp_path):
    r = synthetic(tmp_path)
    importance = analysis.cell_importance(r)
    np.testing.assert_array_equal(importance.ravel(), [6, 5, 4, 3, 2, 1])
    # atp puts the most important cell last: finding even the top 1 costs all 6 patches
    assert list(analysis.verification_cost(importance, analysis.estimator_score(r, "atp"), [1, 2, 3, 6])) == [6, 6, 6, 6]
    # a perfect ranking is the oracle: cost k
    assert list(analysis.verification_cost(importance, analysis.estimator_score(r, "atp_qk"), [1, 2, 3, 6])) == [1, 2, 3, 6]


def test_recall_known(tmp_path):
    r = synthetic(tmp_path)
    importance = analysis.cell_importance(r)
    # the true top 2 are nodes 0 and 1; atp's top 1 is node 1, its top 2 nodes 1 and 2
    recall = analysis.recall_within_budget(importance, analysis.estimator_score(r, "atp"), 2, [1, 2, 5, 6])
    np.testing.assert_allclose(recall, [0.5, 0.5, 0.5, 1.0])


def test_false_negatives_known(tmp_path):
    r = synthetic(tmp_path)
    misses = analysis.false_negatives(r, "atp", k=2, budget=2)
    assert [m["node"] for m in misses] == ["L0.resid_pre0"]
    assert misses[0]["true_rank"] == 1 and misses[0]["estimator_rank"] == 6 and misses[0]["exact"] == 6.0
    assert analysis.false_negatives(r, "atp_qk", k=2, budget=2) == []


def test_aggregations_differ_on_sign_flips(tmp_path):
    # a cell that is +4 on one prompt and -4 on the other: |mean| 0, mean |.| 4
    exact = np.array([[4.0, 1.0], [-4.0, 1.0]]).reshape(2, 2, 1)
    r = analysis.load(write_synthetic(str(tmp_path / "f.h5"), exact, {}))
    np.testing.assert_allclose(analysis.cell_importance(r, "abs_mean").ravel(), [0.0, 1.0])
    np.testing.assert_allclose(analysis.cell_importance(r, "mean_abs").ravel(), [4.0, 1.0])


def test_random_order_cost_matches_simulation():
    rng = np.random.default_rng(0)
    M, ks = 50, [1, 3, 10]
    simulated = [np.mean([rng.permutation(M)[:k].max() + 1 for _ in range(20000)]) for k in ks]
    np.testing.assert_allclose(analysis.random_order_cost(M, ks), simulated, rtol=0.02)


def test_normalized_undefined_without_source(tmp_path):
    r = analysis.load(write_synthetic(str(tmp_path / "m.h5"), EXACT, {}, source=np.array([np.nan])))
    try:
        analysis.normalized(r)
    except ValueError as e:
        assert "no source run" in str(e)
    else:
        raise AssertionError("normalised effects without a source run must be refused")


# ties: "atp_star" scores three cells exactly 0, among them the most important one (node 0)
ZEROS = np.array([0.0, 5.0, 0.0, 0.0, 2.0, 1.0]).reshape(1, 6, 1)


def with_zero_ties(tmp_path):
    return analysis.load(write_synthetic(str(tmp_path / "z.h5"), EXACT, {"atp_star": ZEROS}))


def test_tied_cells_share_the_last_rank_of_their_block(tmp_path):
    """The three zeros (nodes 0, 2, 3) fill positions 4 to 6 of atp_star's order; none of them is
    found before all three are verified, so each ranks 6 — not 4, 5, 6 by node index."""
    r = with_zero_ties(tmp_path)
    assert analysis.estimator_ranks(r, "atp_star").ravel().tolist() == [6, 1, 6, 6, 2, 3]
    importance, score = analysis.cell_importance(r), analysis.estimator_score(r, "atp_star")
    # the true top 1 is node 0, inside the zero block: 6 patches, never 4
    assert list(analysis.verification_cost(importance, score, [1, 2, 3, 4, 6])) == [6, 6, 6, 6, 6]
    np.testing.assert_allclose(analysis.recall_within_budget(importance, score, 2, [1, 4, 5, 6]), [0.5, 0.5, 0.5, 1.0])
    misses = analysis.false_negatives(r, "atp_star", k=1, budget=4)
    assert [(m["node"], m["estimator_rank"]) for m in misses] == [("L0.resid_pre0", 6)]


def test_tied_true_effects_any_of_them_completes_the_top_k(tmp_path):
    """Importance 3, 2, 2, 1: the true top 2 is node 0 and either of nodes 1 and 2. The score
    ranks node 0 first and node 2 second, so the top 2 costs 2 patches (not 4, as it would if the
    sort had picked node 1 for the top 2); both tied cells share true rank 2."""
    exact = np.array([3.0, 2.0, 2.0, 1.0]).reshape(1, 4, 1)
    score = np.array([4.0, 1.0, 3.0, 2.0]).reshape(1, 4, 1)
    r = analysis.load(write_synthetic(str(tmp_path / "t.h5"), exact, {"atp": score}))
    importance = analysis.cell_importance(r)
    assert list(analysis.verification_cost(importance, analysis.estimator_score(r, "atp"), [1, 2, 3, 4])) == [1, 2, 4, 4]
    np.testing.assert_allclose(analysis.recall_within_budget(importance, analysis.estimator_score(r, "atp"), 2, [1, 2, 3]),
                               [0.5, 1.0, 1.0])
    assert analysis.true_ranks(r).ravel().tolist() == [1, 2, 2, 4]


def test_zero_ties_counted(tmp_path):
    r = with_zero_ties(tmp_path)
    ties = analysis.zero_ties(r, "atp_star")
    assert ties["zero"] == 3 and ties["zero_where_exact_is_not"] == 3 and ties["exact_not_zero"] == 6
    assert ties["largest_exact"] == 6.0


def test_estimates_only_false_negatives_refused_clearly(estimates_only_file):
    r = analysis.load(estimates_only_file)
    assert r.exact is None and set(r.estimates) == {"atp", "atp_qk", "atp_star"}
    with pytest.raises(ValueError, match="false negatives need exact effects"):
        analysis.false_negatives(r, "atp_star")
    for call in (analysis.cell_importance, analysis.normalized):
        with pytest.raises(ValueError, match="holds no exact effects"):
            call(r)


def test_estimator_agreement_known(tmp_path):
    """Two estimators on six cells. a: 6 5 4 3 2 1; b: 1 6 5 4 0 0 (node 0 last but one block).
    a's top 2 (nodes 0, 1) within b's top 2 (nodes 1, 2): half of it; b's top 2 within a's: half.
    Spearman's rho is the correlation of the ranks, b's tied zeros sharing the average rank 5.5
    (the usual correction for ties; an order between them would change rho). b is 0 on two cells
    where a is not, a on none where b is not."""
    a = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0]).reshape(1, 6, 1)
    b = np.array([1.0, 6.0, 5.0, 4.0, 0.0, 0.0]).reshape(1, 6, 1)
    r = analysis.load(write_synthetic(str(tmp_path / "ab.h5"), a, {"atp": a, "atp_qk": b}))
    agree = analysis.estimator_agreement(r, "atp", "atp_qk", k=2)
    rank_a = np.array([1, 2, 3, 4, 5, 6.0])
    rank_b = np.array([4, 1, 2, 3, 5.5, 5.5])
    assert agree["cells"] == 6
    np.testing.assert_allclose(agree["spearman"], np.corrcoef(rank_a, rank_b)[0, 1])
    assert agree["top_k_a_in_b"] == 0.5 and agree["top_k_b_in_a"] == 0.5
    assert agree["zero_a_not_b"] == 0 and agree["zero_b_not_a"] == 2
    # node 0, a's first, is b's 4th: below a budget of 3; b's tied zeros rank 6 (the block's end)
    missed = analysis.estimator_disagreements(r, "atp_qk", "atp", k=2, budget=3)
    assert [(d["node"], d["reference_rank"], d["estimator_rank"]) for d in missed] == [("L0.resid_pre0", 1, 4)]
    missed = analysis.estimator_disagreements(r, "atp_qk", "atp", k=5, budget=4)
    assert [(d["node"], d["estimator_rank"]) for d in missed] == [("L0.resid_pre4", 6)]


def test_trivial_cells_known(tmp_path):
    """Nodes resid_pre, attn_out, resid_post; prompt 0's source token differs at position 1,
    prompt 1's at position 2. Trivial: the two residual-stream nodes at those positions, per
    prompt; attention output never."""
    exact = np.zeros((2, 3, 3))
    source = np.array([[0, 5, 0], [0, 0, 7]])
    r = analysis.load(write_synthetic(str(tmp_path / "t.h5"), exact, {}, sites=["resid_pre", "attn_out", "resid_post"],
                                      source_tokens=source))
    trivial = analysis.trivial_cells(r)
    assert trivial.shape == r.shape
    assert np.argwhere(trivial).tolist() == [[0, 0, 1], [0, 2, 1], [1, 0, 2], [1, 2, 2]]
