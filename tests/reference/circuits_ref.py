"""Circuit evaluation on the edge reference (edges_ref.py): the metric of a model in which
everything outside a circuit is ablated, per prompt.

The input is the clean prompt. Edge granularity (ACDC, EAP-IG's evaluation, auto-circuit's
tree patch): an edge u -> v inside the circuit carries u's *current* output (which may itself
carry ablated information from further up), an edge outside it carries u's ablated value. Node
granularity: a node outside the circuit outputs its ablated value, i.e. every edge out of it is
outside; `embed` is a node like the others, so keep it to keep the prompt. Patches apply at
every position.

Ablated values come from the job's corruption, with the clean run as the base:
  pair      the corrupt prompt's run (the job's direction is ignored: the input is clean)
  mean      the mean over the job's prompts of the clean runs' outputs
  zero      0
  resample  the clean run of another prompt (gen_effects.py's derangement)
  gaussian  the run of the clean prompt + noise, averaged over samples
With every edge kept the metric is the clean run's; with none, the pair-corrupted run's.
"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import edges_ref as er  # noqa: E402


def circuit_job(job, folder):
    """The EdgeJob whose base runs are the clean prompts: a pair job in the noise direction."""
    return er.EdgeJob(dict(job, direction="noise"), folder)


def metric_with_circuit(pair, kept):
    """metric of B's input with every edge outside `kept` carrying its upstream node's source
    (ablated) value."""
    def carry(u, v, value):
        return value if (u, v) in kept else pair.source[u]

    return pair.metric(er.run(pair.model, pair.base["embed"], carry)[0])


def evaluate(edge_job, edges=None, nodes=None):
    """Metric per prompt [P] (mean over noise samples) with the circuit given by the edges kept,
    or by the upstream nodes kept (exactly one of the two)."""
    assert (edges is None) != (nodes is None), "give the circuit's edges or its nodes"
    if nodes is not None:
        nodes = set(nodes)
        edges = [e for e in er.edge_graph(edge_job.model.cfg) if e[0] in nodes]
    kept = set(edges)
    return np.array([np.mean([metric_with_circuit(pair, kept) for pair in edge_job.pairs(p)])
                     for p in range(len(edge_job.prompts))])
