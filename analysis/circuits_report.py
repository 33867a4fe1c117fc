"""The report's circuits section (docs/circuits.md): each circuit's faithfulness under each choice,
the faithfulness curves of each ranking, the per-prompt spread, and circuits drawn as graphs."""
import html

from . import circuit_figures, circuits

MOST_FEATURED = 6  # circuits given a spread panel and a drawing


def reference_set(c):
    """The ranked set the others are compared at: the first ranked by exact edge effects (the
    reference no estimator has), else the first with a k list; None without such sets."""
    ranks = {entry.get("name"): entry.get("rank") for entry in c.job.get("sets", []) if isinstance(entry, dict)}
    exact = [name for name in c.set_names if ranks.get(name) == "edges/exact"]
    return (exact or c.set_names or [None])[0]


def featured_rows(c, m):
    """The circuits the spread and the drawings show: every explicit or threshold circuit, then
    each ranked set's circuit of one common k, the smallest at which the reference set (above)
    reaches 0.8 under the first choice (else its middle k), so that rankings compare at one size;
    at most MOST_FEATURED."""
    rows = [row for row in range(len(c.set)) if c.k[row] < 0]
    reference = reference_set(c)
    if reference is not None:
        common = int(c.k80[c.set_names.index(reference), 0, m])
        if common < 0:
            ks = sorted(c.k[c.rows(reference)])
            common = int(ks[len(ks) // 2])
        rows += [row for name in c.set_names for row in c.rows(name) if c.k[row] == common][:len(c.set_names)]
    return list(dict.fromkeys(rows))[:MOST_FEATURED]


def circuits_section(page, r):
    """Adds the section to the report's page (html_report.Page)."""
    from .html_report import _fmt, _table  # imported here: html_report imports this module
    c = r.circuits
    m = c.metric_index(r.metric)
    page.text("<h2>Circuits and their faithfulness</h2>")
    page.text("<p class='note'>Written by <code>patchsweep circuit</code> (docs/circuits.md). A circuit is a set of "
              "edges; it is evaluated on the <b>clean</b> prompt with everything outside it ablated, under each "
              "choice of granularity (<i>edges</i>: every edge outside carries its upstream node's ablated value; "
              "<i>nodes</i>: every node outside the circuit's nodes outputs its ablated value into every edge, so "
              "edges between circuit nodes that the circuit does not list are kept) and ablation value (<i>pair</i>: "
              "the corrupt prompt's run; <i>mean</i>: the mean clean run; <i>resample</i>: another prompt's clean "
              "run, averaged over seeds; <i>zero</i>). Per prompt, faithfulness = (C − ∅)/(full − ∅): 1 is the full "
              "model, 0 the empty circuit; it can fall below 0 or pass 1. The <b>ratio of means</b> divides the mean "
              "gaps; the <b>mean of ratios</b>, median and quartiles summarise the per-prompt values (prompts with "
              "full = empty left out), which can spread over orders of magnitude while the ratio of means looks "
              f"fine (Miller, Chughtai &amp; Saunders 2024). Metric <b>{html.escape(r.metric)}</b>; "
              f"{c.faithfulness.shape[2]} prompts; {_fmt(c.seconds)} s.</p>")
    if not c.done.all():
        page.text(f"<p class='warn'><b>Incomplete</b>: {int(c.done.sum())} of {c.done.size} (circuit, choice, prompt) "
                  "units are done; the summaries and curves stay NaN until all are (rerun <code>patchsweep circuit</code> "
                  "to resume).</p>")
    headers = ["circuit", "k", "kept"] + [f"{choice}: ratio of means · mean of ratios · median [q1, q3]" for choice in c.choices]
    rows = []
    for row in range(len(c.set)):
        cells = [f"{_fmt(float(c.ratio_of_means[row, a, m]), 3)} · {_fmt(float(c.mean_of_ratios[row, a, m]), 3)} · "
                 f"{_fmt(float(c.median[row, a, m]), 3)} [{_fmt(float(c.q1[row, a, m]), 3)}, {_fmt(float(c.q3[row, a, m]), 3)}]"
                 for a in range(len(c.choices))]
        rows.append([c.set[row], c.k[row] if c.k[row] >= 0 else "", f"{c.size[row]} {_kept_what(c, row)}"] + cells)
    page.text(_table(headers, rows, 1))
    if c.set_names:
        page.text("<h3>Faithfulness curves</h3>")
        page.text(_table(["set", "choice", "auc", "k80", "k90", "k100"],
                        [[name, choice, _fmt(float(c.auc[i, a, m]), 3), c.k80[i, a, m], c.k90[i, a, m], c.k100[i, a, m]]
                         for i, name in enumerate(c.set_names) for a, choice in enumerate(c.choices)], 2))
        page.figure(circuit_figures.curves(r), "circuit_curves", "Faithfulness (ratio of means) against the number "
                    "of edges kept, for each ranking (the sets of the job's <code>circuits</code> key), one panel per "
                    "choice. The exact ranking is the reference; a random ranking is the floor. auc: the area under "
                    "the curve over k/total with (0, 0) added, divided by the largest k/total (1: perfect at every k).")
    featured = featured_rows(c, m)
    values = c.faithfulness[featured][:, :, :, m]
    scale = circuit_figures.spread_scale(values)
    page.text("<h3>Per-prompt spread</h3>")
    page.figure(circuit_figures.spread(r, featured), "circuit_spread", "Per-prompt faithfulness of the same circuit "
                "under each choice (box: quartiles and 1.5 IQR whiskers; dots: prompts; red diamond: ratio of means). "
                + ("The axis is <b>symlog</b> (linear within ±1, logarithmic beyond, signs kept), because some "
                   "values pass ±10." if scale == "symlog" else "The axis is linear (no value passes ±10)."))
    if not circuits.edge_names(r):
        page.text("<p class='note'>The file names no edges (neither <code>/circuits/edge_name</code> nor "
                  "<code>/edges/name</code>): the circuits are not drawn.</p>")
        return
    page.text("<h3>The circuits drawn</h3>")
    for row in featured:
        page.figure(circuit_figures.graph(r, row), f"circuit_graph_{row}", f"Circuit {html.escape(c.row_label(row))} "
                    f"({c.size[row]} {_kept_what(c, row)}) between its components.")


def _kept_what(c, row):
    return "edges" if c.all_positions[row] else "cells"
