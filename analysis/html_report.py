"""The HTML report: one page (index.html) with the figures as PNGs beside it, readable by someone
who has never used patchsweep: each section says what it shows and how to read it."""
import html
import json
import os

import matplotlib.pyplot as plt
import numpy as np

from . import causal_trace, circuits_report, figures, metrics
from .results import load

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.note{color:#555;font-size:.95em}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
.row{display:flex;gap:1em;align-items:flex-start}.row figure{flex:1;margin:0}
.warn{background:#fff4d6;border-left:4px solid #e0a800;padding:.4em .8em}"""


TIES = ("Ranks by an estimator give tied cells the last rank of their block (1, 3, 3 for scores 5, 2, 2): "
        "the estimator cannot order them, so a tie block is found for certain only once all of it is verified, "
        "the worst case for the estimator. True ranks give tied cells the first (1, 2, 2).")


def _table(headers, rows, left=1):
    head = "".join(f"<th class='{'l' if i < left else ''}'>{html.escape(str(h))}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td class='{'l' if i < left else ''}'>{html.escape(str(c))}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _stats(values):
    """[mean, min, max] over the finite values, formatted; NaN when there are none (a source run
    that does not exist), computed without numpy's empty-slice warnings."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        return ["NaN"] * 3
    return [_fmt(float(finite.mean())), _fmt(float(finite.min())), _fmt(float(finite.max()))]


def _fmt(x, digits=4):
    return "NaN" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}g}"


class Page:
    def __init__(self, out_dir):
        self.out_dir, self.parts, self.figures = out_dir, [], []

    def text(self, markup):
        self.parts.append(markup)

    def _save(self, fig, name):
        fig.savefig(os.path.join(self.out_dir, name + ".png"), dpi=110)
        plt.close(fig)
        self.figures.append(name + ".png")

    def figure(self, fig, name, caption):
        if fig is None:
            return
        self._save(fig, name)
        self.parts.append(f"<img src='{name}.png' alt='{html.escape(caption)}'><p class='note'>{caption}</p>")

    def side_by_side(self, items):
        """Figures in one row, each with its caption: [(fig, name, caption)]; a missing figure is
        left out, and one alone is an ordinary figure."""
        items = [(fig, name, caption) for fig, name, caption in items if fig is not None]
        if len(items) < 2:
            for item in items:
                self.figure(*item)
            return
        cells = []
        for fig, name, caption in items:
            self._save(fig, name)
            cells.append(f"<figure><img src='{name}.png' alt='{html.escape(caption)}'><figcaption class='note'>"
                         f"{caption}</figcaption></figure>")
        self.parts.append("<div class='row'>" + "".join(cells) + "</div>")

    def write(self, title):
        index = os.path.join(self.out_dir, "index.html")
        with open(index, "w") as f:
            f.write(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style></head><body>")
            f.write("\n".join(self.parts))
            f.write("</body></html>\n")
        return index


class Top:
    """What the top tables show: k cells, leaving out the trivial ones when asked (hidden is then
    the [N, S] mask of metrics.trivial_cells over any prompt, else None)."""

    def __init__(self, r, k, hide_trivial):
        self.k = k
        self.trivial = metrics.trivial_cells(r).any(axis=0)
        self.hidden = self.trivial if hide_trivial else None

    def cells(self, r, k=None, of="exact"):
        return figures.top_cells(r, k or self.k, of=of, hide=self.hidden)

    def label(self, n, s, labels):
        """'position: token', with a dagger on a trivial cell."""
        return labels[s] + (" †" if self.trivial[n, s] else "")


def build_report(path, out_dir, k=20, hide_trivial=False, prompts=3, metric=None):
    """Writes out_dir/index.html and its figures; returns the index path. k: size of the top
    tables; hide_trivial: leave trivial residual-stream cells out of them (metrics.trivial_cells:
    a residual-stream site at a position where the base and source inputs differ); prompts: how
    many prompts, from the first, get a section of their own; metric: which of the file's metrics
    the report reads (default the job's first)."""
    r = load(path, metric)
    os.makedirs(out_dir, exist_ok=True)
    page = Page(out_dir)
    title = html.escape(r.job.get("description") or os.path.basename(path))
    if not r.node_names:  # a job of edges alone
        page.text(f"<h1>patchsweep report: {title}</h1>")
        page.text(f"<p><b>{html.escape(path)}</b>: {len(r.lengths)} prompts × {len(r.edge_names)} edges × "
                  f"{len(r.positions)} positions; metric <b>{html.escape(r.metric)}</b>, corruption "
                  f"<b>{html.escape(_corruption(r))}</b>, direction <b>{html.escape(str(r.attrs.get('direction')))}</b>.</p>")
        _edges_section(page, r, k)
        if r.bound is not None:
            _bound_section(page, r)
        if r.circuits is not None:
            circuits_report.circuits_section(page, r)
        _provenance(page, r, path)
        return page.write(title)
    top = Top(r, k, hide_trivial)
    _header(page, r, path, title)
    if r.exact is not None:
        _summary(page, r, top)
    elif r.estimates:
        _estimates_summary(page, r, top)
    _baselines(page, r, top)
    if r.exact is not None:
        _largest_effects(page, r, top)
    if len(r.metrics) > 1:
        _metrics_section(page, r, k)
    if causal_trace.traceable(r):
        causal_trace_section(page, [r], prompts)
    _layers_section(page, r)
    _heads_section(page, r)
    if "mlp_post" in r.sites and r.exact is not None:
        _neurons_section(page, r, k)
    if r.estimates and r.exact is not None:
        _estimates_against_exact(page, r, k)
    if len(r.estimates) > 1:
        _estimators_against_each_other(page, r, k)
    if r.bound is not None:
        _bound_section(page, r)
    if r.edge_names:
        _edges_section(page, r, k)
    if r.circuits is not None:
        circuits_report.circuits_section(page, r)
    if prompts > 0 and (r.exact is not None or r.estimates):
        _prompt_by_prompt(page, r, top, prompts)
    _provenance(page, r, path)
    return page.write(title)


def build_trace_report(paths, out_dir, prompts=3):
    """index.html with the causal-tracing figures of several files of one experiment (e.g. the
    hidden-state, MLP/attention and severed jobs of jobs/causal_trace/); returns its path."""
    results = [load(path) for path in paths]
    for r in results:
        if not causal_trace.traceable(r):
            raise ValueError(f"{r.path}: not a causal-tracing file (gaussian noise, exact effects, positions one by one, "
                             f"a hidden-state, mlp_out or attn_out site)")
    os.makedirs(out_dir, exist_ok=True)
    page = Page(out_dir)
    title = "Causal tracing"
    page.text(f"<h1>{title}</h1>")
    rows = [[os.path.basename(r.path), ", ".join(causal_trace.traced_sites(r)), r.attrs.get("window"),
             r.attrs.get("window_align"), r.attrs.get("sever"), r.metric, len(r.lengths),
             _fmt(float(np.nanmean(r.base))), _fmt(float(np.nanmean(r.source)))] for r in results]
    page.text(_table(["file", "sites", "window", "align", "severed", "metric", "prompts", "mean base (noised)",
                      "mean source (clean)"], rows, left=2))
    causal_trace_section(page, results, prompts)
    return page.write(title)


def _header(page, r, path, title):
    P, N, S = r.shape
    done = float(r.computed[r.computed | ~r.computed].mean()) if r.computed.size else 0.0
    page.text(f"<h1>patchsweep report: {title}</h1>")
    window = r.attrs.get("window", 1)
    page.text(f"<p><b>{html.escape(path)}</b>: {P} prompts × {N} nodes × {S} positions; metric "
              f"<b>{html.escape(r.metric)}</b>, corruption <b>{html.escape(_corruption(r))}</b>, direction "
              f"<b>{html.escape(str(r.attrs.get('direction')))}</b>, window <b>{window}</b> "
              f"({'one layer per node' if window == 1 else f'each node patches {window} consecutive layers together'}). "
              f"{'Complete.' if r.complete else f'<b>Incomplete</b>: {100 * done:.1f}% of the cells are computed so far.'}</p>")
    if r.exact is None:
        _estimates_only_note(page, r)
        return
    page.text("<p class='note'>Every number is an <b>exact</b> activation-patching effect: metric(patched run) − "
              "metric(base run), the patch replacing one node's activation (a layer's residual stream, attention or MLP "
              "output, one head's query/key/value/output, or one MLP neuron) at one position with its activation from "
              f"the source run. In the <i>{html.escape(str(r.attrs.get('direction')))}</i> direction the base run is the "
              f"{'corrupted' if r.attrs.get('direction') == 'denoise' else 'clean'} prompt. Red: the patch raises the metric; "
              "blue: it lowers it.</p>")


def _corruption(r):
    """The corruption with its settings from the job (gaussian positions and scale, resample seed)."""
    name, spec = str(r.attrs.get("corruption")), r.job.get("corruption")
    if not isinstance(spec, dict) or not isinstance(spec.get(name), dict):
        return name
    return name + " (" + ", ".join(f"{key} {value}" for key, value in spec[name].items()) + ")"


def _estimates_only_note(page, r):
    page.text("<p class='warn'><b>This file holds estimates only</b> (the job said <code>\"exact\": false</code>): "
              "no number in this report is an exact activation-patching effect. The estimators "
              f"({html.escape(', '.join(r.estimates))}) are gradient approximations of metric(patched run) − "
              "metric(base run) for each node and position, cheap enough to rank every cell; they can miss large "
              "effects (a saturated attention softmax, GradDrop cutting a node's only path), which only exact "
              "patches of the cells they rank high — or a rerun with exact effects — can check. Without exact "
              "effects there are no false negatives to count; the estimators are compared with each other "
              "instead.</p>")


def _lead_estimator(r):
    """The estimator the estimates-only tables rank by: AtP+QK when present (signed, and it keeps
    queries and keys that saturated softmaxes hide from AtP), else AtP, else AtP*."""
    return next(e for e in ("atp_qk", "atp", "atp_star") if e in r.estimates)


def _estimates_summary(page, r, top):
    """A file without exact effects: its largest cells by the lead estimator, every estimator's
    rank of them beside."""
    unit = figures.effect_unit(r)
    lead = _lead_estimator(r)
    means = {e: figures.mean_over_prompts(r.effects(e)) for e in r.estimates}
    ranks = {e: metrics.estimator_ranks(r, e) for e in r.estimates}
    labels = r.position_labels()
    cells = top.cells(r, of=lead)
    rows = [[ranks[lead][n, s], r.node_names[n], top.label(n, s, labels)] + [_fmt(float(means[e][n, s])) for e in r.estimates]
            + [ranks[e][n, s] for e in r.estimates if e != lead] for n, s in cells]
    page.text(f"<h2>Largest estimates</h2><p>The {len(cells)} cells {lead} scores highest (mean |{lead}| over prompts):</p>")
    page.text(_table(["rank", "node", "position: token"] + [f"mean {e} ({unit})" for e in r.estimates]
                     + [f"rank by {e}" for e in r.estimates if e != lead], rows, left=3))
    page.text(f"<p class='note'>{TIES} {_trivial_note(top, cells)}</p>")


def _summary(page, r, top):
    k = top.k
    page.text("<h2>Summary</h2>")
    labels = r.position_labels()
    mean = figures.mean_over_prompts(r.exact)
    page.text("<p>Largest effects (mean over prompts" + (", trivial cells hidden" if top.hidden is not None else "")
              + "): " + ", ".join(f"<b>{html.escape(r.node_names[n])}</b> at {html.escape(top.label(n, s, labels))} "
                                  f"({_fmt(float(mean[n, s]), 3)})" for n, s in top.cells(r, 5)) + ".</p>")
    if r.estimates:
        importance = metrics.cell_importance(r)
        n_cells = int(np.isfinite(importance).sum())
        kk = min(10, n_cells)
        rows = [[e, int(metrics.verification_cost(importance, metrics.estimator_score(r, e), [kk])[0]),
                 len(metrics.false_negatives(r, e, k=k, limit=k))] for e in r.estimates]
        rows += [["oracle", kk, 0], ["random order (expected)", int(round(metrics.random_order_cost(n_cells, [kk])[0])), ""]]
        page.text(f"<p>To find the true top {kk} of {n_cells} cells by verifying in an estimator's order, one exact "
                  f"patch per cell, it takes:</p>")
        page.text(_table(["order", f"patches to find the true top {kk}", f"false negatives in the true top {k}"], rows))
        _zero_tie_warnings(page, r)


def _zero_tie_warnings(page, r):
    """A visible warning for each estimator that says exactly 0 on many cells whose exact effect
    is not: one tie block that large leaves its ranking blind there."""
    for e in r.estimates:
        ties = metrics.zero_ties(r, e)
        if ties["warn"]:
            page.text(f"<p class='warn'><b>Warning: {e} is exactly 0 on {ties['zero_where_exact_is_not']} cells whose "
                      f"exact effect is not 0</b> ({100 * ties['zero_where_exact_is_not'] / ties['exact_not_zero']:.0f}% of "
                      f"the {ties['exact_not_zero']} such cells; the largest mean |exact effect| among them is "
                      f"{_fmt(ties['largest_exact'], 3)}). Its {ties['zero']} zeros tie, so it cannot say which of them to "
                      "verify first: every rank, cost and recall here counts the block as found only once all of it "
                      "is verified." + (" AtP* gives 0 wherever GradDrop cuts a node's only path to the output "
                      "(in a two-layer model, a layer-0 node at a position before the last, whose only route to the "
                      "output is layer 1's attention)." if e == "atp_star" else "") + "</p>")


def _baselines(page, r, top):
    gap = r.gap
    page.text("<h2>Baselines</h2>")
    page.text(_table(["", "mean", "min", "max"],
                     [[f"metric of the base run ({r.metric})"] + _stats(r.base),
                      [f"metric of the source run ({r.metric})"] + _stats(r.source),
                      ["source − base (the whole gap a patch could close)", _stats(gap)[0], "", ""]]))
    if np.isnan(gap).all():
        page.text("<p class='note'>No source run (mean or zero corruption: the patch writes mean or zero "
                  "activations): its metric and the gap are undefined, and so are normalised effects.</p>")
    elif r.exact is not None:
        ratio_of_means = metrics.normalized(r, "ratio_of_means")
        mean_of_ratios = metrics.normalized(r, "mean_of_ratios")
        cells = top.cells(r, 5)
        page.text("<p class='note'>Normalised effects divide by that gap (1 = the patch alone closes it), as the "
                  "literature does it both ways: the ratio of means (mean effect / mean gap) and the mean of per-prompt "
                  "ratios, which differ when prompts' gaps differ.</p>")
        page.text(_table(["cell", "ratio of means", "mean of ratios"],
                         [[f"{r.node_names[n]} @ position {r.position_names[s]}", _fmt(ratio_of_means[n, s], 3), _fmt(mean_of_ratios[n, s], 3)]
                          for n, s in cells]))


def _metrics_section(page, r, k):
    """The job's metrics side by side: each one's baselines and largest cells, and how far its
    ranking of the cells agrees with the metric this report reads."""
    page.text("<h2>Metrics compared</h2>")
    page.text(f"<p>The job read every patched run as {len(r.metrics)} metrics; this report reads "
              f"<b>{html.escape(r.metric)}</b> (<code>--metric</code> picks another). Below, each metric's mean "
              f"baselines, its five largest cells by mean |effect| over prompts, and the agreement of its ranking of "
              f"the cells with {html.escape(r.metric)}'s: Spearman's rho and the fraction of {html.escape(r.metric)}'s "
              f"true top {k} within the other's first {k}.</p>")
    rows = []
    for m in r.metrics:
        other = r.for_metric(m)
        row = [m, _fmt(float(np.nanmean(other.base))), _fmt(float(np.nanmean(other.source)))]
        if r.exact is None:
            rows.append(row + ["", "", ""])
            continue
        importance = metrics.cell_importance(other)
        order = np.argsort(-np.where(np.isfinite(importance), importance, -np.inf), axis=None, kind="stable")[:5]
        cells = [np.unravel_index(i, importance.shape) for i in order]
        row.append(", ".join(f"{r.node_names[n]}@{r.position_names[s]}" for n, s in cells))
        agree = metrics.metric_agreement(r, r.metric, m, k=k)
        row += [_fmt(agree["spearman"], 3), _fmt(agree["top_k_a_in_b"], 3)]
        rows.append(row)
    page.text(_table(["metric", "mean base", "mean source", "largest cells (node@position)", f"rho with {r.metric}",
                      f"{r.metric}'s top {k} in its first {k}"], rows))


def _largest_effects(page, r, top):
    unit = figures.effect_unit(r)
    page.text("<h2>Largest effects</h2>")
    importance = metrics.cell_importance(r)
    mean = figures.mean_over_prompts(r.exact)
    true_ranks = metrics.true_ranks(r)
    ranks = {e: metrics.estimator_ranks(r, e) for e in r.estimates}
    rows = []
    labels = r.position_labels()
    cells = top.cells(r)
    for n, s in cells:
        rows.append([true_ranks[n, s], r.node_names[n], top.label(n, s, labels), _fmt(float(mean[n, s])),
                     _fmt(float(importance[n, s]))] + [ranks[e][n, s] for e in r.estimates])
    page.text(_table(["rank", "node", "position: token", f"mean effect ({unit})", f"mean |effect| ({unit})"] +
                     [f"rank by {e}" for e in r.estimates], rows, left=3))
    page.text(f"<p class='note'>{TIES if r.estimates else ''} {_trivial_note(top, cells)}</p>")
    page.figure(figures.prompt_spread(r, hide=top.hidden), "spread", "Per-prompt spread of the largest cells: a box is the middle "
                "half of the prompts, whiskers the rest; a large mean with a wide box is not a uniform effect.")


def _trivial_note(top, cells):
    """What "trivial" means, and how many of the table's cells are trivial or were hidden."""
    definition = ("A cell is <i>trivial</i> (†) when its node is a residual-stream site (resid_pre, resid_mid, "
                  "resid_post) and it patches a position where the base and source inputs differ (their tokens; for "
                  "gaussian corruption the noised positions; none for mean and zero; the 'all' column when any "
                  "position differs), for at "
                  "least one prompt: the patch writes the corruption itself back, so its effect is expected, not "
                  "found (at layer 0 with one position corrupted it is the whole gap).")
    if top.hidden is not None:
        return f"{definition} {int(top.hidden.sum())} trivial cells hidden from this table (hide_trivial)."
    shown = sum(bool(top.trivial[n, s]) for n, s in cells)
    return definition + (f" {shown} of these {len(cells)} are; hide them with <code>--hide-trivial</code> "
                         "(<code>hide_trivial=True</code>)." if shown else "")


NORMALISED = ("Right: the same, normalised: each prompt's effect divided by its own gap (source − base), then "
              "averaged over prompts (1 = the patch alone moves the metric all the way to the source run's).")


def _with_normalised(page, r, draw, name, caption):
    """The raw heatmap of the exact effects and, beside it, the normalised one; a file of
    estimates only gets the raw heatmap of each estimator instead."""
    if r.exact is None:
        for of in r.estimates:
            page.figure(draw(of=of), f"{name}_{of}", caption.replace("effect", f"{of} estimate", 1))
        return
    page.side_by_side([(draw(), name, caption), (draw(normalized=True), f"{name}_normalized", NORMALISED)])


def _no_normalised_note(page, r):
    if r.exact is not None and np.isnan(r.gap).all():
        page.text("<p class='note'>No normalised heatmaps: without a source run (mean or zero corruption) there is "
                  "no gap to divide by, and normalised effects are undefined.</p>")


def causal_trace_section(page, results, prompts=1):
    """ROME's figures (analysis/causal_trace.py) from one or more gaussian-noise files."""
    page.text("<h2>Causal tracing</h2><p class='note'>As ROME (Meng et al. 2022) reports it: the effect of restoring one "
              "clean state in the noised run, averaged over prompts by the position's role relative to the noised subject "
              "(a role spanning several positions is first averaged within each prompt; the number beside a role is how "
              "many prompts have it). Positions before the subject are left out. Blue cells are negative effects.</p>")
    page.figure(causal_trace.figure(results), "causal_trace", "Restoring the hidden state, the MLP output or the "
                "attention output at one layer (or a window of layers) and one position, by the token's role.")
    page.figure(causal_trace.severed_figure(results), "causal_trace_severed", "The hidden state restored at the last "
                "subject token as is, and with every MLP or attention output at that position held at the noised run "
                "(ROME's Figure 2): what the severed bars lose is carried by those sublayers.")
    first = next((r for r in results if r.attrs.get("sever", "none") == "none"), results[0])
    for p in range(min(prompts, len(first.lengths))):
        page.figure(causal_trace.prompt_figure(first, p), f"causal_trace_prompt{p}", f"Prompt {p} on its own tokens.")


def _layers_section(page, r):
    page.text("<h2>Residual stream, attention and MLP outputs</h2>")
    _no_normalised_note(page, r)
    _with_normalised(page, r, lambda **view: figures.layer_sites(r, **view), "layers", "Mean effect of patching a "
                     "whole layer's residual stream, attention output or MLP output at one position. Where the stream "
                     "carries the information that matters shows as a path from the corrupted positions to the last one.")


def _heads_section(page, r):
    head_sites = [s for s in figures.HEAD_SITES if s in r.sites]
    if not head_sites:
        return
    page.text("<h2>Attention heads</h2>")
    _with_normalised(page, r, lambda **view: figures.heads_summed(r, **view), "heads", "Each head's mean effect "
                     "summed over positions, for its output (z), query (q), key (k) and value (v). k and v are per "
                     "key/value head under grouped-query attention.")
    for site in head_sites:
        if r.exact is not None:
            _with_normalised(page, r, lambda **view: figures.heads_by_position(r, site, **view), f"heads_{site}",
                             f"{site}: each head's mean effect at each position.")
        else:  # one estimator is enough per position
            lead = _lead_estimator(r)
            page.figure(figures.heads_by_position(r, site, lead), f"heads_{site}_{lead}",
                        f"{site}: each head at each position ({lead} estimate).")


def _neurons_section(page, r, k):
    S = r.shape[2]
    unit = figures.effect_unit(r)
    page.text("<h2>MLP neurons</h2>")
    nodes = r.nodes("mlp_post")
    importance = metrics.cell_importance(r)
    sub = importance[nodes]
    flat = np.where(np.isnan(sub.ravel()), -np.inf, sub.ravel())
    rows = []
    mean = figures.mean_over_prompts(r.exact)
    for c in np.argsort(-flat)[:k]:
        i, s = divmod(int(c), S)
        n = nodes[i]
        rows.append([r.node_names[n], r.position_labels()[s], _fmt(float(mean[n, s])), _fmt(float(importance[n, s]))])
    page.text(_table(["neuron", "position: token", f"mean effect ({unit})", f"mean |effect| ({unit})"], rows, left=2))
    page.figure(figures.neuron_distribution(r), "neurons", "Per layer, the distribution over neurons of each "
                "neuron's largest |mean effect|: most neurons do little, a few carry the effect.")


def _estimates_against_exact(page, r, k):
    unit = figures.effect_unit(r)
    page.text("<h2>Gradient estimates against the exact effects</h2>")
    page.text("<p class='note'>AtP is the first-order estimate (a_source − a_base)·∂metric/∂a; AtP+QK fix recomputes "
              "the attention softmax exactly for queries and keys; AtP* adds GradDrop and is a magnitude. The cheap "
              "estimates are meant to rank nodes for verification: what they rank low but is large is what they "
              "miss. Two known ways to miss: a saturated attention softmax hides a query or key's effect from AtP "
              "(the QK fix recovers it); and AtP* averages gradients with one layer's writes cut, so a node whose "
              "only route to the output runs through one later layer keeps little of its estimate (in a two-layer "
              "model, every layer-0 node feeding layer 1's attention). Misses are named in red.</p>")
    for e in r.estimates:
        page.figure(figures.estimate_scatter(r, e), f"scatter_{e}", f"{e} against the exact effect per cell, "
                    "with the correlation per site; points far from the diagonal are mis-estimated.")
        misses = metrics.false_negatives(r, e, k=k)
        if misses:
            page.text(f"<p><b>{e}: worst false negatives</b> — cells of the true top {k} that {e} ranks below "
                      f"{5 * k}:</p>")
            page.text(_table(["node", "position", "true rank", f"rank by {e}", f"mean exact ({unit})", f"mean {e}"],
                             [[m["node"], m["position"], m["true_rank"], m["estimator_rank"], _fmt(m["exact"]), _fmt(m["estimate"])]
                              for m in misses]))
        else:
            page.text(f"<p><b>{e}</b> ranks every cell of the true top {k} within its top {5 * k}.</p>")
    page.text("<h2>What verifying in an estimator's order costs</h2>")
    page.text(f"<p class='note'>{TIES}</p>")
    page.figure(figures.verification_curve(r), "verification", "Verifying cells one exact patch at a time in "
                "each estimator's order: how many patches until all of the true top k are found. The oracle needs "
                "k; a random order about k(M+1)/(k+1) of M cells. Right: the same in seconds, the estimator's own "
                "compute time plus the verification patches, from the file's timing records.")
    page.figure(figures.recall_curve(r), "recall", "Recall of the true top k within a budget of b cells taken "
                "in the estimator's order.")


def _estimators_against_each_other(page, r, k):
    """How alike the estimators rank the cells; in a file of estimates only, also where one ranks
    high what another ranks low, and a warning for one estimator's zeros where another is not 0."""
    page.text("<h2>Estimators against each other</h2>")
    agreements = {(a, b): metrics.estimator_agreement(r, a, b, k=k) for a, b in figures.estimator_pairs(r)}
    rows = [[a, b, g["cells"], _fmt(g["spearman"], 3), _fmt(g["top_k_a_in_b"], 3), _fmt(g["top_k_b_in_a"], 3),
             g["zero_a_not_b"], g["zero_b_not_a"]] for (a, b), g in agreements.items()]
    page.text(_table(["a", "b", "cells", "Spearman rank correlation", f"a's top {k} within b's top {k}",
                      f"b's top {k} within a's top {k}", "0 by a, not by b", "0 by b, not by a"], rows, left=2))
    if r.exact is None:
        for (a, b), agree in agreements.items():
            _zero_where_other_is_not(page, a, b, agree)
    page.text("<p class='note'>Each estimator scores a cell by its mean |estimate| over prompts (AtP* by its mean). The "
              "rank correlation gives tied cells their average rank; the top-k overlaps count a tie block only once "
              "all of it fits (see the ranks' note above).</p>")
    page.figure(figures.estimators_against_each_other(r), "estimators", "Each pair of estimators, one point per "
                "cell; a cell one of them scores exactly 0 sits on the axis's floor.")
    if r.exact is None:
        lead = _lead_estimator(r)
        for e in r.estimates:
            if e != lead:
                _disagreements(page, r, e, lead, k)


def _zero_where_other_is_not(page, a, b, agree):
    """Without exact effects, the nearest thing to the zero-tie warning: one estimator exactly 0
    on many cells another estimator scores."""
    for zero, other, count in ((a, b, agree["zero_a_not_b"]), (b, a, agree["zero_b_not_a"])):
        if count and count >= metrics.ZERO_TIES_WARN * agree["cells"]:
            page.text(f"<p class='warn'><b>Warning: {zero} is exactly 0 on {count} of {agree['cells']} cells where "
                      f"{other} is not</b>: those zeros tie, and {zero} cannot say which of them to verify first "
                      "(ranks count the block as found only once all of it is verified).</p>")


def _disagreements(page, r, estimator, reference, k):
    unit = figures.effect_unit(r)
    rows = metrics.estimator_disagreements(r, estimator, reference, k=k)
    if not rows:
        page.text(f"<p><b>{estimator}</b> ranks every cell of {reference}'s top {k} within its top {5 * k}.</p>")
        return
    page.text(f"<p><b>{estimator} against {reference}</b>: cells of {reference}'s top {k} that {estimator} ranks "
              f"below {5 * k} (without exact effects, nothing says which of the two is right):</p>")
    page.text(_table(["node", "position", f"rank by {reference}", f"rank by {estimator}", f"mean {reference} ({unit})",
                      f"mean {estimator} ({unit})"],
                     [[m["node"], m["position"], m["reference_rank"], m["estimator_rank"], _fmt(m["reference"]),
                       _fmt(m["estimate"])] for m in rows]))


def _bound_section(page, r):
    unit = figures.effect_unit(r)
    b = r.bound
    page.text("<h2>Bounding what verifying the top missed</h2>")
    what = "edge (edge × position)" if b.get("cells") == "edges" else html.escape(str(b.get("site")))
    page.text(f"<p class='note'>Written by <code>patchsweep bound</code>: for each prompt the {what} "
              f"cells were ranked by {html.escape(str(b.get('ranked_by')))} (metric {html.escape(str(b.get('metric', r.metrics[0])))}"
              f"{'; ' + html.escape(str(b['ranked_by_reason'])) if 'ranked_by_reason' in b else ''}), the top {b.get('n_verified')} taken as verified "
              "(fewer, or more, where a tie block straddles that place), "
              f"and the rest patched jointly in {b.get('subsets')} random subsets (each cell in with probability "
              f"{b.get('inclusion')}). A cell's effect is estimated as the mean subset effect with it minus without "
              f"it; theta, the largest upper confidence bound, bounds every unverified cell's |effect| at once with "
              f"confidence {b.get('confidence')} <i>if patch effects add up</i>. Where a cell and another are "
              "sub-additive (together less than the sum: two nodes doing the same job), the subsets see less of the "
              "cell than it does alone, its estimate shrinks toward 0 and the bound can fail; the exact sweep shows "
              "where it did. "
              f"{b.get('forward_passes')} forward passes, {_fmt(float(b.get('seconds', float('nan'))))} s.</p>")
    ties = b.get("boundary_ties")
    if ties is not None and ties.any():
        verb = "verified whole" if b.get("ties") == "verify" else "left unverified, to the bound"
        n = int((ties > 0).sum())
        page.text(f"<p class='note'>On {n} prompt{'' if n == 1 else 's'} a block of cells tied on |{html.escape(str(b.get('ranked_by')))}| "
                  f"straddled the {b.get('n_verified')}-cell budget ({int(ties.max())} cells at most); the ranking "
                  f"cannot choose among them, so each block was {verb} (docs/methods.md, ties across the boundary).</p>")
    check = metrics.bound_check(r)
    if "theta_sign" in b:
        page.text(f"<p class='note'>A second, cheaper bound makes a different assumption (what a subset adds to a "
                  f"cell's own effect, the other cells' effects and their interactions with it, is as likely to have the "
                  f"cell's sign as not): no unverified cell's |effect| exceeds the largest "
                  f"|subset effect| (theta_sign), except with probability at most {_fmt(float(b.get('delta_sign', float('nan'))), 2)}.</p>")
    if check is not None:
        sign = "theta_sign" in check
        rows = [[p, _fmt(float(check["theta"][p])), _fmt(float(check["missed"][p])), "yes" if check["held"][p] else "no"]
                + ([_fmt(float(check["theta_sign"][p])), "yes" if check["held_sign"][p] else "no"] if sign else [])
                for p in range(len(check["theta"]))]
        page.text(_table(["prompt", f"theta ({unit})", f"largest missed |exact| ({unit})", "held"]
                         + ([f"theta_sign ({unit})", "held"] if sign else []), rows[:40]))
    page.figure(figures.bound_figure(r), "bound", "Left: per prompt, the bound against the largest exact "
                "|effect| the verified top left out; above the diagonal it held. Right: each unverified cell's own "
                "upper confidence bound against its |exact effect|.")


def _prompt_by_prompt(page, r, top, count):
    """The first prompts one by one: tokens, baselines, largest cells, and a heatmap on the
    prompt's own tokens (the means above can hide what single prompts do)."""
    P = r.shape[0]
    count = min(count, P)
    of = "exact" if r.exact is not None else _lead_estimator(r)
    page.text("<h2>Prompt by prompt</h2>")
    page.text(f"<p class='note'>The first {count} of {P} prompts, each on its own tokens: a mean over prompts can "
              f"hide what single prompts do. Positions where the source run's input differs read base→source. "
              f"{'Exact effects' if of == 'exact' else f'{of} estimates (this file holds no exact effects)'}.</p>")
    trivial = metrics.trivial_cells(r)
    for p in range(count):
        _one_prompt(page, r, p, of, trivial[p] if top.hidden is not None else None, top.k)


def _prompt_text(r, p):
    """The prompt's tokens as text, corrupted positions in bold as base→source."""
    differs = metrics.corrupted_positions(r)[p]
    base = r.token_strings[p] if r.token_strings else [str(t) for t in r.base_tokens[p]]
    source = r.source_token_strings[p] if r.source_token_strings else [str(t) for t in r.source_tokens[p]]
    words = []
    for t in range(int(r.lengths[p])):
        word = html.escape(base[t])
        if differs[t]:
            word = f"<b>{word}→{html.escape(source[t])}</b>" if r.source_tokens[p, t] != r.base_tokens[p, t] else f"<b>{word}+noise</b>"
        words.append(word)
    return "⟨" + "⟩⟨".join(words) + "⟩"


def _one_prompt(page, r, p, of, hidden, k):
    unit = figures.effect_unit(r)
    values = r.effects(of)[p]
    page.text(f"<h3>Prompt {p}</h3><p>{_prompt_text(r, p)}</p>")
    source = (f"of the source run {_fmt(float(r.source[p]))}, gap {_fmt(float(r.gap[p]))}" if np.isfinite(r.source[p])
              else "no source run")
    page.text(f"<p class='note'>{int(r.lengths[p])} tokens; metric of the base run {_fmt(float(r.base[p]))}, {source}.</p>")
    magnitude = np.abs(values) if hidden is None else np.where(hidden, np.nan, np.abs(values))
    flat = np.where(np.isnan(magnitude.ravel()), -np.inf, magnitude.ravel())
    cells = [divmod(int(c), values.shape[1]) for c in np.argsort(-flat, kind="stable")[:min(k, 8)] if np.isfinite(flat[c])]
    labels = figures.prompt_position_labels(r, p)
    gap = r.gap[p]
    rows = [[r.node_names[n], labels[s], _fmt(float(values[n, s]))] +
            ([_fmt(float(values[n, s] / gap)) if gap else "NaN"] if of == "exact" and np.isfinite(gap) else [])
            for n, s in cells]
    page.text(_table(["node", "position: token", f"{'effect' if of == 'exact' else of} ({unit})"] +
                     (["normalised (effect / gap)"] if of == "exact" and np.isfinite(gap) else []), rows, left=2))
    fig = figures.layer_sites(r, of, prompt=p)
    if fig is None:
        site = next((s for s in figures.HEAD_SITES if s in r.sites), None)
        fig = figures.heads_by_position(r, site, of, prompt=p) if site else None
    page.figure(fig, f"prompt{p}_layers", f"Prompt {p} alone, on its own tokens.")


def _edges_section(page, r, k):
    """Edges (docs/edges.md): the largest exact edge effects with each estimator's rank of them,
    the cost of finding the true top edges in each estimator's order, scatter and graph."""
    page.text("<h2>Edges</h2>")
    if "exact" not in r.edges:
        page.text("<p class='note'>The file holds edge estimates only: no exact edge effect to compare them with.</p>")
        return
    page.text("<p class='note'>An edge u→v is patched by giving input v (a head's query, key or value, an MLP's input, "
              "or the logits) the base run's stream with u's base output replaced by its source output; everything "
              "else reads the unpatched stream. EAP and EAP-IG estimate the same quantity from gradients.</p>")
    importance = metrics._aggregate(r.edges["exact"], "mean_abs")
    mean = figures.mean_over_prompts(r.edges["exact"])
    estimators = [e for e in figures.EDGE_ESTIMATORS if e in r.edges]
    ranks = {e: metrics.tied_last_ranks(metrics._aggregate(r.edges[e], "mean_abs"), np.isfinite(importance))
             for e in estimators}
    order = np.argsort(-np.where(np.isfinite(importance), importance, -np.inf), axis=None, kind="stable")[:k]
    rows = []
    for i, flat in enumerate(order):
        e_index, s = np.unravel_index(flat, importance.shape)
        rows.append([i + 1, r.edge_names[e_index], r.position_names[s], _fmt(float(mean[e_index, s]), 3)]
                    + [int(ranks[e][e_index, s]) for e in estimators])
    page.text(_table(["rank", "edge", "position", f"mean exact ({figures.effect_unit(r)})"]
                     + [f"rank by {e}" for e in estimators], rows, left=2))
    if estimators:
        n_cells = int(np.isfinite(importance).sum())
        ks = [x for x in (5, 10, 20) if x <= n_cells]
        cost_rows = [[e] + [int(c) for c in metrics.edge_verification_cost(r, e, ks)] for e in estimators]
        cost_rows.append(["random order (expected)"] + [int(round(c)) for c in metrics.random_order_cost(n_cells, ks)])
        page.text(f"<p>Verifying (edge, position) cells in an estimator's order, one exact edge patch each, finding the "
                  f"true top k of {n_cells} cells takes:</p>")
        page.text(_table(["order"] + [f"top {x}" for x in ks], cost_rows))
        page.figure(figures.edge_scatter(r), "edge_scatter", "Each edge estimator against the exact edge effect.")
    page.figure(figures.edge_graph(r), "edge_graph", "The largest exact edges between their components.")


def _provenance(page, r, path):
    job = r.job
    page.text("<h2>Provenance</h2>")
    attrs = r.attrs
    rows = [["results file", path], ["complete", "yes" if r.complete else "no"], ["tool", attrs.get("tool_version")],
            ["model", attrs.get("model_dir")], ["created (UTC)", attrs.get("created")], ["MPI ranks (last run)", attrs.get("n_ranks")],
            ["job fingerprint", attrs.get("job_fingerprint")], ["window", attrs.get("window")]]
    rows += [[key.replace("seconds_", "compute seconds: "), _fmt(float(attrs[key]))] for key in
             ("seconds_runs", "seconds_exact", "seconds_atp", "seconds_atp_qk", "seconds_atp_star") if key in attrs]
    page.text(_table(["", ""], rows, left=2))
    page.text("<details><summary>model configuration</summary><pre>" + html.escape(json.dumps(r.model_config, indent=1)) + "</pre></details>")
    shown = dict(job, prompts=f"{len(job.get('prompts', []))} prompts (in the file's job attribute)")
    page.text("<details><summary>job</summary><pre>" + html.escape(json.dumps(shown, indent=1)) + "</pre></details>")
