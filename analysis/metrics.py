"""Numbers computed from a results file: normalised effects, and how well an estimator's ranking
finds the exact effects (verification cost, recall, false negatives).

Conventions. A *cell* is a (node, position) pair. Its true importance aggregates the exact
effect over prompts, either |mean| ("abs_mean", the |E[I]| of Kramar et al.) or mean |.|
("mean_abs", E|I|). An estimator scores a cell the same way from its estimates (AtP* values are
already magnitudes). Verifying cells in the estimator's order, one exact patch each, the cost to
find the true top k is the position of the last of them in that order (Kramar et al. 2024, 1.6).

Ties. An estimator's ties are common (AtP* is exactly 0 on every cell whose only path GradDrop
cuts), and it says nothing about the order inside a tie block. Every rank by an estimator here
(cost, recall, false negatives, the report's tables and figure labels) gives a tied cell the
*last* rank of its block: the worst case for the estimator, where a block is found only after
all of it is verified. (A verifier that knew nothing more would pick an order inside the block at
random; the worst case is the bound that holds whichever order it picks, and it never credits an
estimator with the cells' index order.) True importances rank with ties sharing the first rank
(1, 2, 2, 4), and a true top k that ties at its k-th value is completed by any of the tied cells.
"""
import warnings

import numpy as np


def normalized(results, way="ratio_of_means"):
    """Effects normalised by the full gap between source and base, (patched - base)/(source - base):
    1 means the patch alone moves the metric all the way to the source run's.

    way = "per_prompt"      -> [P, N, S], each prompt divided by its own gap
          "mean_of_ratios"  -> [N, S], the mean over prompts of the per-prompt ratios
          "ratio_of_means"  -> [N, S], mean effect / mean gap (the IOI paper's convention)
    Both means of a cell run over the same prompts: those where the cell has a value (a prompt
    shorter than the column's position, or a unit not computed yet, counts in neither).
    Undefined (ValueError) for mean and zero corruption, which have no source run."""
    gap = results.gap
    if np.isnan(gap).all():
        raise ValueError("no source run (mean or zero corruption): normalised effects are undefined")
    exact = results.effects("exact")
    if way == "per_prompt":
        with np.errstate(divide="ignore", invalid="ignore"):
            return exact / gap[:, None, None]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        if way == "mean_of_ratios":
            return np.nanmean(exact / gap[:, None, None], axis=0)
        if way == "ratio_of_means":
            return _ratio_of_means(exact, gap)
    raise ValueError(f"unknown way {way!r}")


def _ratio_of_means(values, gap):
    """Per cell, mean of the values over the prompts that have one, divided by the mean gap over
    those same prompts (a mean gap over every prompt would mix in prompts without the cell)."""
    has = np.isfinite(values) & np.isfinite(gap)[:, None, None]
    summed = np.where(has, values, 0.0).sum(axis=0, dtype=np.float64)
    gaps = np.where(has, gap[:, None, None], 0.0).sum(axis=0)
    return np.where(has.any(axis=0), summed / gaps, np.nan)


RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")


def corrupted_positions(results):
    """bool [P, T]: the positions where the source run's input differs from the base run's,
    within each prompt. pair and resample: where the tokens differ; gaussian: the positions the
    job adds noise at; mean and zero: none (their source is not a run on other inputs)."""
    P, T = results.base_tokens.shape
    inside = np.arange(T)[None, :] < results.lengths[:, None]
    corruption = results.attrs.get("corruption")
    if corruption in ("mean", "zero"):
        return np.zeros((P, T), dtype=bool)
    if corruption == "gaussian":  # each prompt's own noise_positions, else the job's
        noised = np.zeros((P, T), dtype=bool)
        shared = results.job["corruption"]["gaussian"].get("positions", [])
        for p, prompt in enumerate(results.job["prompts"]):
            listed = [t for t in prompt.get("noise_positions", shared) if 0 <= t < T]
            noised[p, listed] = True
        return inside & noised
    return inside & (results.base_tokens != results.source_tokens)


def trivial_cells(results):
    """bool [P, N, S]: the cells whose effect is the corruption itself rather than something a
    component computes. A cell is trivial for a prompt when its node is a residual-stream site
    (resid_pre, resid_mid, resid_post) and its column patches a position where that prompt's
    base and source inputs differ (corrupted_positions; the "all" column when any does): the
    patch writes (what has become of) the source's input there. At layer 0, with one position
    corrupted, such a patch turns the base run into the source run: the whole gap."""
    differs = corrupted_positions(results)
    P = differs.shape[0]
    columns = np.array([[differs[p].any() if pos == -1 else pos >= 0 and differs[p, pos]
                         for pos in results.prompt_positions[p]] for p in range(P)], dtype=bool)
    residual = np.array([site in RESIDUAL_SITES for site in results.node_sites])
    return residual[None, :, None] & columns[:, None, :]


def _aggregate(values, how):
    """Over prompts (axis 0), ignoring NaN; all-NaN cells stay NaN without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        if how == "abs_mean":
            return np.abs(np.nanmean(values, axis=0))
        if how == "mean_abs":
            return np.nanmean(np.abs(values), axis=0)
    raise ValueError(f"unknown aggregation {how!r}")


def cell_importance(results, how="mean_abs"):
    """True importance of every cell, [N, S] (NaN where never computed). ValueError for a file
    of estimates only."""
    return _aggregate(results.effects("exact"), how)


def estimator_score(results, estimator, how="mean_abs"):
    """An estimator's score of every cell, [N, S] (for atp_star, its mean: already unsigned)."""
    values = results.effects(estimator)
    return _aggregate(values, "mean_abs" if estimator == "atp_star" else how)


def _among(importance):
    """The cells one can verify: those with an exact value."""
    return np.isfinite(importance)


def tied_last_ranks(score, among):
    """Rank of every cell of `among` in the score's order, 1 = highest score, ties sharing the
    last rank of their block: a cell's rank is how many cells score at least as high as it. A
    cell without a score (NaN) ranks with the lowest, as one block at the end. 0 outside
    `among`. Why the last: the estimator gives no order inside a tie block, so a cell there is
    found for certain only once the whole block is verified (the worst case for the estimator;
    a sort's order inside the block would credit it with what is only the cells' index order)."""
    flat = np.where(np.isnan(score), -np.inf, score)[among]
    ranks = np.zeros(score.shape, dtype=int)
    ranks[among] = flat.size - np.searchsorted(np.sort(flat), flat, side="left")
    return ranks


def tied_first_ranks(importance):
    """Competition ranks of the true importance, 1 = most important: 1 + how many cells are more
    important, so tied cells share the first rank of their block (1, 2, 2, 4). 0 where NaN."""
    among = _among(importance)
    flat = importance[among]
    ranks = np.zeros(importance.shape, dtype=int)
    ranks[among] = 1 + flat.size - np.searchsorted(np.sort(flat), flat, side="right")
    return ranks


def _true_top(importance, k):
    """The true top k when importances may tie at the k-th value: the cells strictly above it
    (all needed), the cells equal to it, and how many of those complete the k (any will do)."""
    among = _among(importance)
    values = np.sort(importance[among])[::-1]
    if k >= values.size:
        return among, np.zeros_like(among), 0
    kth = values[k - 1]
    above, tied = among & (importance > kth), among & (importance == kth)
    return above, tied, k - int(above.sum())


def verification_cost(importance, score, ks):
    """For each k: how many cells one verifies, in the score's order, before the true top k are
    all verified (>= k, = k for a perfect ranking). Ties in the score count as found only at the
    end of their block (tied_last_ranks); where the true importance ties at the k-th value, any
    of the tied cells completes the top k."""
    ranks = tied_last_ranks(score, _among(importance))
    costs = []
    for k in ks:
        above, tied, need = _true_top(importance, k)
        last_above = int(ranks[above].max()) if above.any() else 0
        last_tied = int(np.sort(ranks[tied])[need - 1]) if need > 0 else 0
        costs.append(max(last_above, last_tied))
    return np.array(costs)


def random_order_cost(n_cells, ks):
    """Expected cost of verifying in a random order: the expected largest of k positions drawn
    without replacement from 1..M is k (M + 1) / (k + 1)."""
    ks = np.asarray(ks, dtype=float)
    return ks * (n_cells + 1) / (ks + 1)


def recall_within_budget(importance, score, k, budgets):
    """Fraction of the true top k among the cells verified within a budget of b cells in the
    score's order, for each b. A tie block counts only once all of it fits in the budget
    (tied_last_ranks: the estimator cannot say which of its cells to take first)."""
    ranks = tied_last_ranks(score, _among(importance))
    above, tied, need = _true_top(importance, k)
    size = int(above.sum()) + need
    found = [int((above & (ranks <= b)).sum()) + min(int((tied & (ranks <= b)).sum()), need) for b in budgets]
    return np.array(found) / max(size, 1)


def true_ranks(results, how="mean_abs"):
    """Rank of every cell by its exact importance, [N, S] (tied_first_ranks; 0 where NaN)."""
    return tied_first_ranks(cell_importance(results, how))


def estimator_ranks(results, estimator, how="mean_abs"):
    """Rank of every cell by an estimator, [N, S], ties sharing the last rank of their block
    (tied_last_ranks), among the cells with an exact value (estimates-only files: with an
    estimate). 0 elsewhere."""
    score = estimator_score(results, estimator, how)
    among = _among(cell_importance(results, how)) if results.exact is not None else np.isfinite(score)
    return tied_last_ranks(score, among)


def false_negatives(results, estimator, k=20, budget=None, how="mean_abs", limit=15):
    """The estimator's worst misses: cells of the true top k (true rank <= k, so every cell tied
    at the k-th value) that it ranks below `budget` (default 5k; ranks as in estimator_ranks,
    a tie block at its last rank), most important first. Returns dicts with node, position,
    exact (signed mean), importance, true_rank, estimator_rank, estimate (mean). Needs exact
    effects: for a file of estimates only, compare estimators with each other
    (estimator_agreement, estimator_disagreements)."""
    if results.exact is None:
        raise ValueError(f"{results.path}: false negatives need exact effects, and this file holds estimates only "
                         "(\"exact\": false); compare estimators with each other instead "
                         "(analysis.estimator_agreement, analysis.estimator_disagreements)")
    importance = cell_importance(results, how)
    true_rank, est_rank = tied_first_ranks(importance), estimator_ranks(results, estimator, how)
    mean_exact, mean_est = _mean(results.exact), _mean(results.estimates[estimator])
    rows = []
    for n, s in _misses(true_rank, est_rank, k, budget or 5 * k)[:limit]:
        rows.append({"node": results.node_names[n], "position": results.position_names[s],
                     "true_rank": int(true_rank[n, s]), "estimator_rank": int(est_rank[n, s]),
                     "exact": float(mean_exact[n, s]), "importance": float(importance[n, s]),
                     "estimate": float(mean_est[n, s])})
    return rows


def _misses(reference_rank, rank, k, budget):
    """(node, column) of the cells the reference ranks within k and `rank` puts beyond budget,
    in the reference's order."""
    missed = np.flatnonzero(((reference_rank >= 1) & (reference_rank <= k) & (rank > budget)).ravel())
    missed = missed[np.argsort(reference_rank.ravel()[missed], kind="stable")]
    return [divmod(int(c), reference_rank.shape[1]) for c in missed]


def _scores_of_both(results, a, b, how):
    """Two estimators' scores, NaN wherever either lacks one, so both rank the same cells."""
    sa, sb = estimator_score(results, a, how), estimator_score(results, b, how)
    both = np.isfinite(sa) & np.isfinite(sb)
    return np.where(both, sa, np.nan), np.where(both, sb, np.nan), both


def _average_ranks(values):
    """Ranks 1..n from the highest, tied values sharing the mean of their positions (Spearman's
    correction for ties: any order inside a tie block would move rho)."""
    _, inverse, counts = np.unique(-values, return_inverse=True, return_counts=True)
    first = np.cumsum(counts) - counts + 1
    return (first + (counts - 1) / 2.0)[inverse]


def estimator_agreement(results, a, b, k=20, how="mean_abs"):
    """How far two estimators rank the cells alike, with or without exact effects. Over the cells
    both score: spearman (rank correlation, ties at their average rank), top_k_a_in_b (the
    fraction of a's top k within b's first k, ties as in recall_within_budget) and top_k_b_in_a,
    zero_a_not_b / zero_b_not_a (cells one scores exactly 0 and the other does not: AtP* against
    AtP+QK shows where GradDrop removed a node's only path), cells."""
    sa, sb, both = _scores_of_both(results, a, b, how)
    x, y = sa[both], sb[both]
    spearman = float(np.corrcoef(_average_ranks(x), _average_ranks(y))[0, 1]) \
        if x.size > 1 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
    return {"cells": int(both.sum()), "spearman": spearman,
            "top_k_a_in_b": float(recall_within_budget(sa, sb, k, [k])[0]),
            "top_k_b_in_a": float(recall_within_budget(sb, sa, k, [k])[0]),
            "zero_a_not_b": int(((x == 0) & (y != 0)).sum()), "zero_b_not_a": int(((y == 0) & (x != 0)).sum())}


def metric_agreement(results, a, b, k=20, how="mean_abs"):
    """How far two of the file's metrics (results.metrics) rank the cells by exact importance
    alike: spearman (ties at their average rank) and top_k_a_in_b / top_k_b_in_a (the fraction
    of one metric's true top k within the other's first k) over the cells both have, as
    estimator_agreement does for two estimators. Does a circuit found with logit difference
    hold up under KL?"""
    ia = cell_importance(results.for_metric(a), how)
    ib = cell_importance(results.for_metric(b), how)
    both = np.isfinite(ia) & np.isfinite(ib)
    x, y = ia[both], ib[both]
    spearman = float(np.corrcoef(_average_ranks(x), _average_ranks(y))[0, 1]) \
        if x.size > 1 and np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")
    ia, ib = np.where(both, ia, np.nan), np.where(both, ib, np.nan)
    return {"cells": int(both.sum()), "spearman": spearman,
            "top_k_a_in_b": float(recall_within_budget(ia, ib, k, [k])[0]),
            "top_k_b_in_a": float(recall_within_budget(ib, ia, k, [k])[0])}


def estimator_disagreements(results, estimator, reference, k=20, budget=None, how="mean_abs", limit=15):
    """false_negatives with another estimator in place of the exact effects: cells of the
    reference's top k (its rank <= k, ties sharing the first) that `estimator` ranks below
    `budget` (default 5k; ties at the end of their block). Dicts with node, position,
    reference_rank, estimator_rank, reference and estimate (signed means over prompts)."""
    ref, est, both = _scores_of_both(results, reference, estimator, how)
    ref_rank, est_rank = tied_first_ranks(ref), tied_last_ranks(est, both)
    mean_ref, mean_est = _mean(results.effects(reference)), _mean(results.effects(estimator))
    return [{"node": results.node_names[n], "position": results.position_names[s],
             "reference_rank": int(ref_rank[n, s]), "estimator_rank": int(est_rank[n, s]),
             "reference": float(mean_ref[n, s]), "estimate": float(mean_est[n, s])}
            for n, s in _misses(ref_rank, est_rank, k, budget or 5 * k)[:limit]]


def _mean(values):
    """Mean over prompts, ignoring NaN; all-NaN cells stay NaN without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=0)


# An estimator that scores this fraction (or more) of the cells with a nonzero exact effect
# exactly 0 gets a warning in the report: one tie block that large makes its ranking blind there.
ZERO_TIES_WARN = 0.01


def zero_ties(results, estimator, how="mean_abs"):
    """How often an estimator says exactly 0 where the exact effect is not: AtP* does on every
    node whose only path to the output GradDrop cuts. Returns counts of cells: zero (scored 0),
    exact_not_zero, zero_where_exact_is_not; largest_exact (the largest importance among those,
    0 when none); warn (the last is at least ZERO_TIES_WARN of exact_not_zero)."""
    importance = cell_importance(results, how)
    among = _among(importance)
    zero = among & (estimator_score(results, estimator, how) == 0)
    nonzero = among & (importance != 0)
    both = zero & nonzero
    n_both, n_nonzero = int(both.sum()), int(nonzero.sum())
    return {"zero": int(zero.sum()), "exact_not_zero": n_nonzero, "zero_where_exact_is_not": n_both,
            "largest_exact": float(importance[both].max()) if n_both else 0.0,
            "warn": n_both > 0 and n_both >= ZERO_TIES_WARN * n_nonzero}


def _covers(bound, value):
    """value <= bound at float32 precision (NaN: False)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(value, dtype=np.float32) <= np.asarray(bound, dtype=np.float64).astype(np.float32)


def _bound_arrays(results):
    """What a /bound was computed on, for the metric it bounded: (exact [P, N, S] or None, the
    ranking estimates {name: [P, N, S]}, computed cells bool [P, N, S]); N the nodes, or the
    edges for an edge bound (its `cells` attribute "edges", docs/edges.md)."""
    b = results.bound
    r = results.for_metric(b.get("metric", results.metrics[0]))
    if b.get("cells") == "edges":
        exact = r.edges.get("exact")
        return exact, r.edges, (None if exact is None else ~np.isnan(exact))
    return r.exact, r.estimates, results.computed


def bound_check(results):
    """The false-negative bound of `patchsweep bound` against the exact sweep. Per prompt: theta
    (the bound on every unverified cell's |effect|), the largest exact |effect| among those
    cells, and whether the bound held (and theta_sign, held_sign for the sign-symmetric test); per unverified cell: whether its own ucb covers its
    |exact effect|. Returns a dict of arrays (prompt-level: theta, missed, held; cell-level:
    ucb, exact, covered as flat arrays over every unverified computed cell), or None without /bound or
    exact effects. The exact effects are those of the metric the bound was computed for (its
    `metric` attribute; the file's first for a /bound written before it had one), whichever
    metric results was loaded to read. "Held" and "covered" compare at float32, the precision the
    exact effects are stored in."""
    b = results.bound
    if b is None:
        return None
    exact, _, computed = _bound_arrays(results)
    if exact is None:
        return None
    cells = ~np.isnan(b["ucb"]) & computed  # the unverified cells (ucb may be +inf)
    missed = np.array([np.nanmax(np.abs(exact[p][cells[p]])) if cells[p].any() else np.nan
                       for p in range(exact.shape[0])])
    # at the exact effects' float32 precision: a bound equal to a cell's own effect (computed in
    # double) must not miss it by the effect's rounding
    ucb = b["ucb"][cells]
    out = {"theta": b["theta"], "missed": missed, "held": _covers(b["theta"], missed),
           "ucb": ucb, "exact": np.abs(exact[cells]), "covered": _covers(ucb, np.abs(exact[cells]))}
    if "theta_sign" in b:  # the sign-symmetric test's bound, max |subset effect|
        out.update(theta_sign=b["theta_sign"], held_sign=_covers(b["theta_sign"], missed))
    return out


# splitmix64 (docs/methods.md, "Randomness"), on numpy arrays: a stream's i-th draw mixes
# state0 + (i + 1) * GOLDEN, so a subset's uniforms come out in one vectorised step.
_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def _mix64(z):
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def _stream_state(seed, a, b):
    """The state of the stream (seed, a, b) after seeding, as src/core/rng.c leaves it."""
    state = seed & _MASK64
    for stream, factor in ((a, 0x9E3779B97F4A7C15), (b, 0xBF58476D1CE4E5B9)):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        draw = int(_mix64(np.array([state], dtype=np.uint64))[0])
        state ^= (draw + stream * factor) & _MASK64
    return state


def _uniforms(seed, a, b, n):
    """The first n uniform() draws of the stream (seed, a, b)."""
    with np.errstate(over="ignore"):
        states = np.uint64(_stream_state(seed, a, b)) + _GOLDEN * np.arange(1, n + 1, dtype=np.uint64)
    return (_mix64(states) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def bound_subsets(results, prompt):
    """bool [K, N, S]: which cells each of the K subsets of `patchsweep bound` patched on one
    prompt, drawn again from the recipe of docs/methods.md (the file stores the seed, not the
    masks): the unverified cells (those with a ucb) in rank order, by |estimate| of the ranking
    estimator as float32 for the bounded metric, largest first, ties in cell order; subset k
    takes cell u when the u-th uniform of the stream (seed, prompt, k) is below the inclusion.
    K * N * S bytes per prompt. An edge bound (`patchsweep bound --edges`): bool [K, E, S] over
    the edges."""
    b = results.bound
    if b is None:
        raise ValueError(f"{results.path} has no /bound group (run patchsweep bound first)")
    _, estimates, _ = _bound_arrays(results)
    key = np.abs(estimates[b["ranked_by"]][prompt].astype(np.float32)).ravel()
    unverified = ~np.isnan(b["ucb"][prompt].ravel())
    cells = np.flatnonzero(unverified)
    cells = cells[np.argsort(-key[cells], kind="stable")]  # cells ascend, so ties stay in cell order
    K, (N, S) = int(b["subsets"]), b["ucb"].shape[1:]
    masks = np.zeros((K, N * S), dtype=bool)
    for k in range(K):
        masks[k, cells] = _uniforms(int(b["seed"]), prompt, k, cells.size) < b["inclusion"]
    return masks.reshape(K, N, S)


def edge_verification_cost(results, estimator, ks=(10,)):
    """Edges: for each k, how many (edge, position) cells one verifies in `estimator`'s order
    (eap, eap_ig, eap_ig_act; mean |estimate| over prompts, ties at the end of their block)
    before the true top k by mean |exact effect| are all verified (verification_cost)."""
    if "exact" not in results.edges or estimator not in results.edges:
        raise ValueError(f"{results.path} holds edge arrays {sorted(results.edges)}; needs exact and {estimator}")
    importance = _aggregate(results.edges["exact"], "mean_abs")
    score = _aggregate(results.edges[estimator], "mean_abs")
    return verification_cost(importance, score, list(ks))
