"""The report's figures. Each function takes a Results and returns a matplotlib Figure (or None
when the file has nothing to show), with titles, axis labels and units on every axis."""
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from . import metrics  # noqa: E402

LAYER_SITES = ("resid_pre", "attn_out", "resid_mid", "mlp_out", "resid_post")
HEAD_SITES = ("z", "q", "k", "v")


def mean_over_prompts(values):
    """The mean over prompts (axis 0), ignoring NaN; all-NaN cells stay NaN, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return np.nanmean(values, axis=0)


def effect_unit(r):
    return f"Δ {r.metric}"


def what_of(of):
    """How a figure names the values it shows: the exact effect, or an estimator's estimate of it."""
    return "effect" if of == "exact" else f"{of} estimate"


def _diverging(ax, data, fig, label):
    """A heatmap centred on 0 (blue negative, red positive) with a labelled colour bar."""
    finite = data[np.isfinite(data)]
    span = float(np.max(np.abs(finite))) if finite.size else 1.0
    span = span or 1.0
    image = ax.imshow(data, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span), aspect="auto", interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label(label, fontsize=8 if "\n" in label else None)
    return image


def _position_axis(ax, r, prompt=None):
    """Position columns labelled with prompt 0's tokens (means over prompts), or with the given
    prompt's own, where a source token that differs follows an arrow."""
    labels = r.position_labels() if prompt is None else prompt_position_labels(r, prompt)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_xlabel("position: token (prompt 0's base run)" if prompt is None else
                  f"position: token of prompt {prompt} (base → source where they differ)")


def prompt_position_labels(r, prompt):
    """'position: base token', or 'position: base→source' where the source run's token differs
    (a corrupted position of a pair or resample job), 'position: token +noise' at a gaussian
    job's noised positions; the bare position past the prompt's end."""
    labels = r.position_labels(prompt)
    differs = metrics.corrupted_positions(r)[prompt]
    for s, pos in enumerate(r.prompt_positions[prompt]):
        if not (pos >= 0 and differs[pos]):
            continue
        if r.source_tokens[prompt, pos] == r.base_tokens[prompt, pos]:
            labels[s] += " +noise"  # gaussian: the same token, noised in one of the runs
        else:
            labels[s] += "→" + (r.source_token_strings[prompt][pos] if r.source_token_strings else str(r.source_tokens[prompt, pos]))
    return labels


def _has(r, of, normalized=False):
    """Whether the file has the values: the effects named, and for normalised ones a source run."""
    if (r.exact if of == "exact" else r.estimates.get(of)) is None:
        return False
    return not normalized or (of == "exact" and not np.isnan(r.gap).all())


def cell_values(r, of="exact", normalized=False, prompt=None):
    """[N, S]: what a heatmap shows, the mean over prompts of the exact effect (or of an
    estimator's estimate); normalized: of each prompt's effect divided by its own gap
    (source − base), the mean of ratios, so that every prompt weighs alike. prompt: that
    prompt's values instead of the mean."""
    values = metrics.normalized(r, "per_prompt") if normalized else r.effects(of)
    return mean_over_prompts(values) if prompt is None else values[prompt]


def value_label(r, of="exact", normalized=False, prompt=None):
    """A colour bar's label, with its unit."""
    if normalized and prompt is None:
        return "mean normalised effect\n((patched − base)/(source − base)\nper prompt, then averaged)"  # 3 lines: fits a bar
    if normalized:
        return "normalised effect\n((patched − base)/(source − base))"
    if of == "exact":
        return f"{'mean ' if prompt is None else ''}effect ({effect_unit(r)})"
    magnitude = ", a magnitude" if of == "atp_star" else ""
    return f"{'mean ' if prompt is None else ''}{of} estimate\n({effect_unit(r)}{magnitude})"  # 2 lines: fits a bar


def _what(of, normalized, prompt=None):
    if prompt is not None:
        return ("normalised " if normalized else "") + what_of(of) + f" on prompt {prompt}"
    return "mean normalised effect (per prompt, then averaged)" if normalized else "mean " + what_of(of)


def layer_sites(r, of="exact", normalized=False, prompt=None):
    """Residual stream, attention output, MLP output: layer x position heatmaps of the mean effect
    (of="exact") or of an estimator's mean estimate; normalized, prompt: as in cell_values (one
    prompt's values, on that prompt's tokens)."""
    sites = [s for s in LAYER_SITES if s in r.sites]
    if not sites or not _has(r, of, normalized):
        return None
    L = int(r.model_config["n_layer"])
    mean = cell_values(r, of, normalized, prompt)
    fig, axes = plt.subplots(len(sites), 1, figsize=(max(6, 0.45 * len(r.positions) + 3), 1.2 + 0.45 * L * len(sites) + 1.2 * len(sites)),
                             squeeze=False)
    for ax, site in zip(axes[:, 0], sites):
        nodes = r.nodes(site)
        grid = mean[nodes][np.argsort(r.node_layers[nodes])]
        _diverging(ax, grid, fig, value_label(r, of, normalized, prompt))
        over = f" ({len(r.lengths)} prompts)" if prompt is None else ""
        ax.set_title(f"{site}: {_what(of, normalized, prompt)} per layer and position{over}", fontsize=9)
        ax.set_ylabel("layer")
        ax.set_yticks(range(L))
        _position_axis(ax, r, prompt)
    fig.tight_layout()
    return fig


def heads_summed(r, of="exact", normalized=False):
    """Attention heads: layer x head heatmaps of the mean effect (or estimate, or normalised
    effect) summed over positions, per site."""
    sites = [s for s in HEAD_SITES if s in r.sites]
    if not sites or not _has(r, of, normalized):
        return None
    summed = np.nansum(cell_values(r, of, normalized), axis=1)  # [node]
    fig, axes = plt.subplots(1, len(sites), figsize=(3.6 * len(sites) + 1, 3.4), squeeze=False)
    for ax, site in zip(axes[0], sites):
        nodes = r.nodes(site)
        L, H = int(r.node_layers[nodes].max()) + 1, int(r.node_heads[nodes].max()) + 1
        grid = np.full((L, H), np.nan)
        grid[r.node_layers[nodes], r.node_heads[nodes]] = summed[nodes]
        _diverging(ax, grid, fig, "summed " + value_label(r, of, normalized))
        ax.set_title(f"{site}: summed over positions" + (", normalised" if normalized else ""))
        ax.set_xlabel("key/value head" if site in ("k", "v") else "head")
        ax.set_ylabel("layer")
        ax.set_xticks(range(H))
        ax.set_yticks(range(L))
    fig.tight_layout()
    return fig


def heads_by_position(r, site, of="exact", normalized=False, prompt=None):
    """One site's heads at each position: a (layer, head) x position heatmap of the mean effect
    (or estimate, or normalised effect; or one prompt's)."""
    if site not in r.sites or not _has(r, of, normalized):
        return None
    nodes = r.nodes(site)
    order = nodes[np.lexsort((r.node_heads[nodes], r.node_layers[nodes]))]
    mean = cell_values(r, of, normalized, prompt)[order]
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(r.positions) + 3), 1.5 + 0.28 * len(order)))
    _diverging(ax, mean, fig, value_label(r, of, normalized, prompt))
    ax.set_title(f"{site}: {_what(of, normalized, prompt)} per head and position", fontsize=9)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels([r.node_names[i] for i in order], fontsize=7)
    ax.set_ylabel("layer.head")
    _position_axis(ax, r, prompt)
    fig.tight_layout()
    return fig


def neuron_distribution(r):
    """MLP neurons: per layer, the distribution of each neuron's largest |mean effect| over positions."""
    if "mlp_post" not in r.sites or r.exact is None:
        return None
    nodes = r.nodes("mlp_post")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        peak = np.nanmax(np.abs(mean_over_prompts(r.exact)[nodes]), axis=1)
    layers = sorted(set(r.node_layers[nodes].tolist()))
    data = [peak[r.node_layers[nodes] == l] for l in layers]
    data = [d[np.isfinite(d)] for d in data]
    fig, ax = plt.subplots(figsize=(1.2 * len(layers) + 3, 3.6))
    ax.boxplot(data, labels=[f"L{l}" for l in layers], showfliers=True)
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title("MLP neurons: largest |mean effect| over positions, per neuron")
    ax.set_xlabel("layer")
    ax.set_ylabel(f"|mean effect| ({effect_unit(r)})")
    fig.tight_layout()
    return fig


def top_cells(r, k=12, of="exact", hide=None):
    """The k cells with the largest mean |effect| (or an estimator's score): (node index,
    position column) pairs, leaving out the cells `hide` ([N, S] bool) marks. Ties at the k-th
    place are cut in cell order: this picks what to show; the ranks shown beside it share ties
    (metrics.true_ranks, estimator_ranks)."""
    importance = metrics.cell_importance(r) if of == "exact" else metrics.estimator_score(r, of)
    if hide is not None:
        importance = np.where(hide, np.nan, importance)
    flat = np.where(np.isnan(importance.ravel()), -np.inf, importance.ravel())
    S = importance.shape[1]
    return [divmod(int(c), S) for c in np.argsort(-flat, kind="stable")[:k] if np.isfinite(flat[c])]


def prompt_spread(r, k=12, hide=None):
    """Per-prompt effects of the top cells (top_cells: without those `hide` marks): box plots, so
    a mean that hides a wild spread shows."""
    if r.exact is None:
        return None
    cells = top_cells(r, k, hide=hide)
    labels = [f"{r.node_names[n]} @{r.position_names[s]}" for n, s in cells]
    data = [r.exact[:, n, s][np.isfinite(r.exact[:, n, s])] for n, s in cells]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(cells) + 2), 4))
    ax.boxplot(data, labels=labels)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_title(f"Per-prompt effects of the {len(cells)} largest cells ({len(r.lengths)} prompts each)")
    ax.set_xlabel("node @ position")
    ax.set_ylabel(f"effect ({effect_unit(r)})")
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right", fontsize=8)
    fig.tight_layout()
    return fig


def _scatter_with_diagonal(ax, x, y):
    """The cells where both are finite, with the line y = x; returns their correlation."""
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    ax.scatter(x, y, s=5, alpha=0.5)
    lo, hi = (min(x.min(), y.min()), max(x.max(), y.max())) if len(x) else (0, 1)
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
    return np.corrcoef(x, y)[0, 1] if len(x) > 1 and np.std(x) > 0 and np.std(y) > 0 else float("nan")


def estimate_scatter(r, estimator):
    """Estimate against exact effect, one point per cell (means over prompts), one panel per site,
    with the correlation. AtP* is a magnitude: it is plotted against |exact|."""
    if estimator not in r.estimates or r.exact is None:
        return None
    sites = r.sites
    exact, est = mean_over_prompts(r.exact), mean_over_prompts(r.estimates[estimator])
    unsigned = estimator == "atp_star"
    if unsigned:
        exact = metrics.cell_importance(r)
    misses = {(m["node"], m["position"]) for m in metrics.false_negatives(r, estimator, k=20)}  # position: column name
    cols = min(4, len(sites))
    rows = (len(sites) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(sites):]:
        ax.axis("off")
    for ax, site in zip(axes.ravel(), sites):
        nodes = r.nodes(site)
        corr = _scatter_with_diagonal(ax, exact[nodes].ravel(), est[nodes].ravel())
        for n in nodes:  # name the worst misses: large exact effects this estimator ranks low
            for s_col, pos in enumerate(r.position_names):
                if (r.node_names[n], pos) in misses and np.isfinite(exact[n, s_col]):
                    ax.annotate(f"{r.node_names[n]}@{pos}", (exact[n, s_col], est[n, s_col]), fontsize=7, color="crimson",
                                xytext=(-4, 6), textcoords="offset points", ha="right")
        ax.set_title(f"{site}: r = {corr:.3f}", fontsize=10)
        ax.set_xlabel(f"{'|exact|' if unsigned else 'exact'} effect ({effect_unit(r)})")
        ax.set_ylabel(f"{estimator} ({effect_unit(r)})")
    fig.suptitle(f"{estimator} against the exact effect, per (node, position) cell, means over prompts")
    fig.tight_layout()
    return fig


def estimator_pairs(r):
    """Every pair of estimators the file holds, in file order."""
    names = list(r.estimates)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def estimators_against_each_other(r):
    """Each pair of estimators, one point per cell (each one's score: mean |estimate| over prompts,
    AtP*'s mean), log scales with 0 drawn at the axis's floor so exact zeros show; the rank
    correlation in the title. For files with or without exact effects."""
    pairs = estimator_pairs(r)
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    for ax, (a, b) in zip(axes[0], pairs):
        x, y = metrics.estimator_score(r, a).ravel(), metrics.estimator_score(r, b).ravel()
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        positive = np.concatenate([x[x > 0], y[y > 0]])
        floor = float(positive.min()) / 10 if positive.size else 1e-12
        ax.scatter(np.maximum(x, floor), np.maximum(y, floor), s=5, alpha=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        agreement = metrics.estimator_agreement(r, a, b)
        ax.set_title(f"{a} vs {b}: Spearman {agreement['spearman']:.3f}", fontsize=10)
        ax.set_xlabel(f"mean |{a}| ({effect_unit(r)}; 0 drawn at {floor:.1g})")
        ax.set_ylabel(f"mean |{b}| ({effect_unit(r)})")
    fig.suptitle("Estimators against each other, per (node, position) cell")
    fig.tight_layout()
    return fig


def _ks(n_cells):
    ks, k = [], 1
    while k <= min(n_cells, 1024):
        ks.append(k)
        k *= 2
    return ks


def verification_curve(r):
    """The false-negative curve: verifying cells in each estimator's order, how many exact patches
    until the true top k are all found, against the oracle (k) and a random order; in patches and,
    from the file's compute-time records, in seconds (estimation + verification)."""
    if not r.estimates or r.exact is None:
        return None
    importance = metrics.cell_importance(r)
    n_cells = int(np.isfinite(importance).sum())
    ks = _ks(n_cells)
    per_patch = r.seconds_per_patch() * len(r.lengths)  # verifying a cell = one patch per prompt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in r.estimates:
        cost = metrics.verification_cost(importance, metrics.estimator_score(r, name), ks)
        left.plot(ks, cost, marker="o", ms=3, label=name)
        estimation = float(r.attrs.get(f"seconds_{name}", 0.0))
        right.plot(ks, estimation + cost * per_patch, marker="o", ms=3, label=name)
    random = metrics.random_order_cost(n_cells, ks)
    for ax, scale, start in ((left, 1.0, 0.0), (right, per_patch, 0.0)):
        ax.plot(ks, np.array(ks) * scale + start, "k--", lw=1, label="oracle (cost = k)")
        ax.plot(ks, random * scale, color="grey", lw=1, label="random order")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("k (size of the true top-k, cells)")
        ax.legend(fontsize=8)
    left.set_ylabel("exact patches verified (cells)")
    left.set_title("Cost to find the true top-k")
    right.set_ylabel("seconds (estimation + verification)")
    right.set_title("The same, in compute seconds")
    fig.tight_layout()
    return fig


def recall_curve(r, k=None):
    """Recall of the true top-k within a verification budget, per estimator."""
    if not r.estimates or r.exact is None:
        return None
    importance = metrics.cell_importance(r)
    n_cells = int(np.isfinite(importance).sum())
    k = k or max(1, min(20, n_cells // 20))
    budgets = sorted(set(np.unique(np.geomspace(1, n_cells, 40).astype(int)).tolist()))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name in r.estimates:
        ax.plot(budgets, metrics.recall_within_budget(importance, metrics.estimator_score(r, name), k, budgets), label=name)
    ax.plot(budgets, np.minimum(1.0, np.array(budgets) / k), "k--", lw=1, label="oracle")
    ax.plot(budgets, np.array(budgets) / n_cells, color="grey", lw=1, label="random order")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("budget b (cells verified, in the estimator's order)")
    ax.set_ylabel(f"recall of the true top {k} (fraction)")
    ax.set_title(f"How much of the true top {k} each estimator's top b holds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def bound_figure(r):
    """`patchsweep bound`: per prompt, the bound theta on every unverified cell's |effect| against
    the largest exact |effect| among them (above the diagonal: the bound held); per unverified
    cell, its own upper bound against its |exact effect|. Without exact effects, theta alone."""
    b = r.bound
    if b is None:
        return None
    check = metrics.bound_check(r)
    site, by, conf = b.get("site"), b.get("ranked_by"), b.get("confidence")
    where = "edges" if b.get("cells") == "edges" else f"site {site}"
    what = f"{where}, top {b.get('n_verified')} by {by} verified, {b.get('subsets')} subsets, confidence {conf}"
    if check is None:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        theta = np.where(np.isinf(b["theta"]), np.nan, b["theta"])
        ax.bar(range(len(theta)), theta)
        ax.set_xlabel("prompt")
        ax.set_ylabel(f"theta: bound on every unverified |effect| ({effect_unit(r)})")
        ax.set_title(f"The bound per prompt ({what})", fontsize=9)
        fig.tight_layout()
        return fig
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4))
    theta, missed = check["theta"], check["missed"]
    finite = np.isfinite(theta)
    top = float(np.nanmax(np.concatenate([missed, theta[finite]]))) if finite.any() else float(np.nanmax(missed))
    top = top * 1.1 if top > 0 else 1.0
    held = check["held"]
    left.scatter(missed[finite & held], theta[finite & held], s=14, label="bound held")
    left.scatter(missed[finite & ~held], theta[finite & ~held], s=14, color="crimson", label="bound failed")
    if (~finite).any():
        left.scatter(missed[~finite], np.full((~finite).sum(), top), marker="^", color="grey", s=14, label="no bound (inf)")
    if "theta_sign" in check:
        left.scatter(missed, check["theta_sign"], marker="x", s=14, color="darkorange",
                     label=f"sign test: held on {int(check['held_sign'].sum())}")
        top = max(top, float(np.nanmax(check["theta_sign"])) * 1.1)
    left.plot([0, top], [0, top], color="grey", lw=0.8)
    left.set_xlim(0, top), left.set_ylim(0, top * 1.05)
    left.set_xlabel(f"largest exact |effect| among unverified cells ({effect_unit(r)})")
    left.set_ylabel(f"theta, the bound on all of them ({effect_unit(r)})")
    left.set_title(f"Per prompt: held on {int(held.sum())} of {len(held)}", fontsize=10)
    left.legend(fontsize=8)
    ucb, exact = check["ucb"], check["exact"]
    ok = np.isfinite(ucb)
    covered = float(np.mean(check["covered"][ok])) if ok.any() else float("nan")
    right.scatter(exact[ok], ucb[ok], s=4, alpha=0.4)
    hi = float(max(exact[ok].max(), ucb[ok].max())) if ok.any() else 1.0
    right.plot([0, hi], [0, hi], color="grey", lw=0.8)
    right.set_xlabel(f"|exact effect| of an unverified cell ({effect_unit(r)})")
    right.set_ylabel(f"its upper confidence bound ({effect_unit(r)})")
    right.set_title(f"Per cell: the bound covers {100 * covered:.1f}% of {int(ok.sum())} cells", fontsize=10)
    fig.suptitle(f"Bounding what the ranking missed ({what})", fontsize=10)
    fig.tight_layout()
    return fig


EDGE_ESTIMATORS = ("eap", "eap_ig", "eap_ig_act")


def edge_scatter(r):
    """Each edge estimator against the exact edge effect, one point per (edge, position) cell
    (means over prompts), with the correlation; None without exact edges or estimates."""
    estimators = [e for e in EDGE_ESTIMATORS if e in r.edges]
    if "exact" not in r.edges or not estimators:
        return None
    exact = mean_over_prompts(r.edges["exact"]).ravel()
    fig, axes = plt.subplots(1, len(estimators), figsize=(3.6 * len(estimators), 3.4), squeeze=False)
    for ax, e in zip(axes[0], estimators):
        corr = _scatter_with_diagonal(ax, exact, mean_over_prompts(r.edges[e]).ravel())
        ax.set_title(f"{e}: r = {corr:.3f}", fontsize=10)
        ax.set_xlabel(f"exact edge effect ({effect_unit(r)})")
        ax.set_ylabel(f"{e} ({effect_unit(r)})")
    fig.suptitle("Edge estimates against the exact edge effect, per (edge, position) cell, means over prompts")
    fig.tight_layout()
    return fig


def _component(name, n_layer):
    """Where an edge end sits in the drawing: (x, y) of its component. Upstream nodes are
    themselves ("embed", "L1.H3", "L1.mlp"); an input goes to the component that reads it
    ("L1.H3.q" -> head 3, "L1.KV2.k" -> head 2, "L1.mlp_in" -> L1.mlp, "logits" past the last layer)."""
    if name == "embed":
        return (-1.0, 0.0)
    if name == "logits":
        return (float(n_layer), 0.0)
    layer, part = name.split(".", 1)
    layer = int(layer[1:])
    if part.startswith("mlp"):
        return (layer + 0.5, 0.0)
    index = int(part.split(".")[0].lstrip("HKV"))
    return (float(layer), float(index + 1))


def edge_graph(r, k=20):
    """The k edges of largest mean |exact effect| (summed over positions), drawn between their
    components, width and label the effect, red raising the metric and blue lowering it."""
    if "exact" not in r.edges or not r.edge_names:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        signed = np.nansum(np.nanmean(r.edges["exact"], axis=0), axis=1)
    order = np.argsort(-np.abs(signed))[:k]
    ends = [(r.edge_upstream[e], r.edge_downstream[e]) for e in order]
    return draw_edges(r, ends, signed[order], f"The {len(order)} edges of largest |exact effect| (mean over prompts, "
                      f"summed over positions; {effect_unit(r)}); width ∝ |effect|")


def draw_edges(r, ends, values, title):
    """Edges, as (upstream, downstream) names, drawn between their components: with values
    (signed, one per edge) width and label say the value, red raising the metric and blue lowering
    it; values None draws them alike, in grey."""
    n_layer = int(r.model_config.get("n_layer", 1))
    largest = float(np.abs(values).max()) if values is not None and len(values) else 1.0
    fig, ax = plt.subplots(figsize=(2.2 * (n_layer + 2), 5))
    points = {}  # (x, y) -> the component's label
    for i, (upstream, downstream) in enumerate(ends):
        a, b = _component(upstream, n_layer), _component(downstream, n_layer)
        for x, y in (a, b):
            points[(x, y)] = ("embed" if x < 0 else "logits" if x >= n_layer else f"L{int(x)}.mlp" if x % 1 else
                              f"L{int(x)}.H{int(y) - 1}")
        value = None if values is None else float(values[i])
        width = 1.5 if value is None else 0.5 + 6.0 * abs(value) / (largest or 1.0)
        color = "grey" if value is None else "crimson" if value > 0 else "royalblue"
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", lw=width, alpha=0.6, color=color,
                                                        connectionstyle="arc3,rad=0.15"))
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2, downstream.split('.')[-1]
                + ("" if value is None else f" {value:.2g}"), fontsize=6, ha="center")
    for (x, y), name in points.items():
        ax.scatter([x], [y], s=60, color="black", zorder=3)
        ax.text(x, y - 0.15, name, fontsize=7, ha="center", va="top")
    ax.set_xlim(-1.6, n_layer + 0.6)
    ax.set_ylim(-0.8, max([y for _, y in points] + [1]) + 0.6)
    ax.set_xlabel("layer (embeddings left, logits right; MLPs between layers)")
    ax.set_ylabel("head + 1 (0: MLP, embeddings, logits)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
