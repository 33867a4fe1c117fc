"""Reading and picturing patchsweep results files.

    import analysis
    r = analysis.load("results/induction.h5")      # metric="kl": another of the job's metrics
    r.exact                 # [prompt, node, position], NaN where not computed
    r.metrics, r.metric     # the file's metrics and the one read; r.for_metric("prob") for another
    r.node_names[:4], r.positions, r.token_strings[0]
    analysis.report("results/induction.h5", "results/induction-report")   # index.html + PNGs
    r.circuits              # after `patchsweep circuit`: /circuits (None without), docs/circuits.md
    analysis.faithfulness_curve(r, "exact", "edges mean")   # k, size, faithfulness, auc, k80...

Command line: python3 -m analysis report RESULTS.h5 -o DIR [-k 20] [--metric M] [--hide-trivial] [--prompts 3]
"""
from .results import Results, load
from .circuits import (circuit_edges, circuit_faithfulness, curve_metrics, faithfulness_curve, recompute_curves,
                       recompute_summaries, summaries)
from .metrics import (bound_check, bound_subsets, cell_importance, estimator_agreement, estimator_disagreements, estimator_ranks,
                      edge_verification_cost, estimator_score, false_negatives, metric_agreement, normalized, random_order_cost, recall_within_budget, true_ranks,
                      trivial_cells, verification_cost, zero_ties)

__all__ = ["Results", "load", "normalized", "cell_importance", "estimator_score", "estimator_ranks", "true_ranks",
           "verification_cost", "random_order_cost", "recall_within_budget", "false_negatives", "zero_ties",
           "estimator_agreement", "estimator_disagreements", "metric_agreement", "edge_verification_cost", "trivial_cells",
           "bound_check", "bound_subsets", "faithfulness_curve", "circuit_faithfulness", "circuit_edges", "summaries",
           "recompute_summaries", "curve_metrics", "recompute_curves", "report", "trace_report"]


def report(path, out_dir, **kwargs):
    """Builds out_dir/index.html and its figures from a results file; returns the index path."""
    from .html_report import build_report
    return build_report(path, out_dir, **kwargs)


def trace_report(paths, out_dir, prompts=3):
    """Builds out_dir/index.html with ROME's causal-tracing figures from one or more results files
    of gaussian-noise jobs (analysis/causal_trace.py); returns the index path."""
    from .html_report import build_trace_report
    return build_trace_report(paths, out_dir, prompts=prompts)
