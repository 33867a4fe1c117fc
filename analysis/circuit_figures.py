"""The report's circuit figures (docs/circuits.md): faithfulness curves per ranking, the per-prompt
spread of a circuit's faithfulness under each choice, and a circuit drawn as a graph."""
import numpy as np

from . import circuits
from .figures import draw_edges, effect_unit, mean_over_prompts, plt

SYMLOG_ABOVE = 10.0  # per-prompt values beyond ±10 (1000%) span decades: the axis turns symlog


def curves(r):
    """Faithfulness (ratio of means) against k, one panel per choice, one line per set with a k
    list (each ranking), with (0, 0) where the curve starts; None without such sets."""
    c = r.circuits
    if c is None or not c.set_names:
        return None
    m = c.metric_index(r.metric)
    A = len(c.choices)
    cols = min(A, 3)
    rows = (A + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[A:]:
        ax.axis("off")
    for a, ax in enumerate(axes.ravel()[:A]):
        for i, name in enumerate(c.set_names):
            curve = circuits.faithfulness_curve(r, name, c.choices[a], r.metric)
            ax.plot(curve["k"], curve["faithfulness"], marker="o", ms=3,
                    label=f"{name} (auc {float(c.auc[i, a, m]):.2f}, k80 {int(c.k80[i, a, m])})")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.8, color="grey", lw=0.8, ls=":")
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(c.choices[a], fontsize=10)
        ax.set_xlabel("k (edges or cells kept, log scale)")
        ax.set_ylabel("faithfulness (ratio of means; 1 = full model)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Faithfulness curves per ranking ({r.metric}; auc over k/total with (0, 0) added; k80: smallest k "
                 "reaching 0.8, −1 none)", fontsize=9)
    fig.tight_layout()
    return fig


def spread_scale(values):
    """'symlog' when the finite per-prompt values reach beyond ±SYMLOG_ABOVE, else 'linear'."""
    finite = values[np.isfinite(values)]
    return "symlog" if finite.size and float(np.abs(finite).max()) > SYMLOG_ABOVE else "linear"


def spread(r, rows):
    """Per-prompt faithfulness of the given circuit rows under each choice: one panel per row, a
    box and the prompts as points per choice, the ratio of means as a red diamond. Values can be
    negative and reach tens of thousands of percent (Miller et al. 2024), so an axis whose values
    pass ±10 is symlog (linear within ±1, logarithmic beyond, the sign kept), else linear."""
    c = r.circuits
    if c is None or not rows:
        return None
    m = c.metric_index(r.metric)
    A = len(c.choices)
    cols = min(len(rows), 2)
    lines = (len(rows) + cols - 1) // cols
    fig, axes = plt.subplots(lines, cols, figsize=(max(4.0, 0.9 * A + 2.2) * cols, 4.6 * lines), squeeze=False)
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    jitter = np.random.default_rng(0)  # a fixed spread of the points, the same figure every time
    for ax, row in zip(axes.ravel(), rows):
        values = c.faithfulness[row, :, :, m]  # [A, P]
        data = [v[np.isfinite(v)] for v in values]
        ax.boxplot(data, positions=range(A), widths=0.5, showfliers=False)
        for a, points in enumerate(data):
            ax.scatter(a + jitter.uniform(-0.15, 0.15, len(points)), points, s=8, alpha=0.5, color="black")
        ax.scatter(range(A), c.ratio_of_means[row, :, m], marker="D", s=30, color="crimson", zorder=3,
                   label="ratio of means")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.axhline(0.0, color="grey", lw=0.8)
        scale = spread_scale(values)
        if scale == "symlog":
            ax.set_yscale("symlog", linthresh=1.0)
        ax.set_xticks(range(A))
        ax.set_xticklabels(c.choices, rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{c.row_label(row)} ({c.size[row]} kept)", fontsize=10)
        ax.set_xlabel("choice (granularity, ablation)")
        ax.set_ylabel("faithfulness per prompt ((C − ∅)/(full − ∅)" + (", symlog)" if scale == "symlog" else ")"))
        ax.legend(fontsize=7)
    fig.suptitle(f"Per-prompt faithfulness of the same circuit under each choice ({r.metric}; "
                 f"{c.faithfulness.shape[2]} prompts, NaN ones — full = empty — left out)", fontsize=9)
    fig.tight_layout()
    return fig


def graph(r, row, most=40):
    """One circuit row drawn as an edge graph: its edges (the `most` of largest |mean exact edge
    effect| summed over its kept columns when the file has exact edges, else the first `most`),
    width and colour the effect; grey and alike without exact edges. None without edge names."""
    c = r.circuits
    names = circuits.edge_names(r) if c is not None else []
    kept = circuits.circuit_edges(r, row) if names else []
    if not kept:
        return None
    edges = np.array([e for e, _ in kept])
    values = None
    if "exact" in r.edges and names == r.edge_names:
        mean = mean_over_prompts(r.edges["exact"])  # [E, S]
        values = np.array([np.nansum(mean[e, columns]) for e, columns in kept])
        order = np.argsort(-np.abs(values), kind="stable")[:most]
        edges, values = edges[order], values[order]
    else:
        edges = edges[:most]
    ends = [tuple(names[e].split("->")) for e in edges]
    shown = f"the {len(edges)} of largest |effect| of its {len(kept)} edges" if len(edges) < len(kept) else f"its {len(kept)} edges"
    what = f";\nwidth ∝ mean exact edge effect over its kept positions ({effect_unit(r)})" if values is not None else ""
    return draw_edges(r, ends, values, f"Circuit {c.row_label(row)}: {shown}{what}")
