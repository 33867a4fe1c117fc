"""Numbers computed from a results file: normalised effects, and how well an estimator's ranking
finds the exact effects (verification cost, recall, false negatives).

Conventions. A *cell* is a (node, position) pair. Its true importance aggregates the exact
effect over prompts, either |mean| ("abs_mean", the |E[I]| of Kramar et al.) or mean |.|
("mean_abs", E|I|). An estimator scores a cell the same way from its estimates (AtP* values are
already magnitudes). Verifying cells in the estimator's order, one exact patch each, the cost to
find the true top k is the position of the last of them in that order (Kramar et al. 2024, 1.6).
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
    """True importance of every cell, [N, S] (NaN where never computed)."""
    return _aggregate(results.exact, how)


def estimator_score(results, estimator, how="mean_abs"):
    """An estimator's score of every cell, [N, S] (for atp_star, its mean: already unsigned)."""
    values = results.estimates[estimator]
    return _aggregate(values, "mean_abs" if estimator == "atp_star" else how)


def _order(score):
    """Cell indices (flattened) from the highest score down; NaN last."""
    flat = np.where(np.isnan(score.ravel()), -np.inf, score.ravel())
    return np.argsort(-flat, kind="stable")


def verification_cost(importance, score, ks):
    """For each k: how many cells one verifies, in the score's order, before all of the true top k
    are verified (the position of the last of them; >= k, = k for a perfect ranking)."""
    valid = ~np.isnan(importance.ravel())
    true_order = _order(importance)
    position = np.empty(importance.size, dtype=int)
    position[_order(np.where(np.isnan(importance), np.nan, score))] = np.arange(1, importance.size + 1)
    costs = []
    for k in ks:
        top = true_order[:k]
        top = top[valid[top]]
        costs.append(int(position[top].max()) if len(top) else 0)
    return np.array(costs)


def random_order_cost(n_cells, ks):
    """Expected cost of verifying in a random order: the expected largest of k positions drawn
    without replacement from 1..M is k (M + 1) / (k + 1)."""
    ks = np.asarray(ks, dtype=float)
    return ks * (n_cells + 1) / (ks + 1)


def recall_within_budget(importance, score, k, budgets):
    """Fraction of the true top k among the score's top b cells, for each budget b."""
    true_top = set(_order(importance)[:k].tolist())
    by_score = _order(np.where(np.isnan(importance), np.nan, score))
    return np.array([len(true_top & set(by_score[:b].tolist())) / k for b in budgets])


def false_negatives(results, estimator, k=20, budget=None, how="mean_abs", limit=15):
    """The estimator's worst misses: cells of the true top k that it ranks below `budget`
    (default 5k), largest first. Returns dicts with node, position, exact (signed mean),
    importance, true_rank, estimator_rank, estimate (mean)."""
    importance = cell_importance(results, how)
    score = estimator_score(results, estimator, how)
    budget = budget or 5 * k
    S = importance.shape[1]
    true_order = _order(importance)
    est_rank = np.empty(importance.size, dtype=int)
    est_rank[_order(np.where(np.isnan(importance), np.nan, score))] = np.arange(1, importance.size + 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean_exact = np.nanmean(results.exact, axis=0).ravel()
        mean_est = np.nanmean(results.estimates[estimator], axis=0).ravel()
    rows = []
    for rank, cell in enumerate(true_order[:k], start=1):
        if np.isnan(importance.ravel()[cell]) or est_rank[cell] <= budget:
            continue
        n, s = divmod(int(cell), S)
        rows.append({"node": results.node_names[n], "position": int(results.positions[s]), "true_rank": rank,
                     "estimator_rank": int(est_rank[cell]), "exact": float(mean_exact[cell]),
                     "importance": float(importance.ravel()[cell]), "estimate": float(mean_est[cell])})
    return rows[:limit]


def bound_check(results):
    """The false-negative bound of `patchsweep bound` against the exact sweep. Per prompt: theta
    (the bound on every unverified cell's |effect|), the largest exact |effect| among those
    cells, and whether the bound held (and theta_sign, held_sign for the sign-symmetric test); per unverified cell: whether its own ucb covers its
    |exact effect|. Returns a dict of arrays (prompt-level: theta, missed, held; cell-level:
    ucb, exact as flat arrays over every unverified computed cell), or None without /bound or
    exact effects."""
    b = results.bound
    if b is None or results.exact is None:
        return None
    cells = ~np.isnan(b["ucb"]) & results.computed  # the unverified cells (ucb may be +inf)
    missed = np.array([np.nanmax(np.abs(results.exact[p][cells[p]])) if cells[p].any() else np.nan
                       for p in range(results.shape[0])])
    out = {"theta": b["theta"], "missed": missed, "held": missed <= b["theta"],
           "ucb": b["ucb"][cells], "exact": np.abs(results.exact[cells])}
    if "theta_sign" in b:  # the sign-symmetric test's bound, max |subset effect|
        out.update(theta_sign=b["theta_sign"], held_sign=missed <= b["theta_sign"])
    return out
