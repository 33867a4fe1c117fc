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
import torch  # noqa: E402
from gen_effects import derangement  # noqa: E402


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


# ---------------------------------------------------------------------------------------------
# Every choice of docs/circuits.md: position-specific circuits, node granularity from an edge
# circuit, and the ablated values of pair, mean (the job's prompts or a separate set), resample
# with several seeds, and zero. A circuit is {(u, v): rows}, rows None for every position or a
# set of positions; a node circuit is {u: rows}.

def column_positions(job, prompt):
    """Where each position column of the job sits in one prompt (None: the prompt has none;
    -1: every position at once), as docs/job.md resolves them."""
    T = len(prompt["clean"])
    positions = job.get("positions", "each")
    if positions == "all":
        return [-1]
    longest = max(len(p["clean"]) for p in job["prompts"])
    if positions == "each":
        return [t if t < T else None for t in range(longest)]
    out = []
    for v in positions:
        if isinstance(v, str):
            v = prompt.get("positions", {}).get(v)
            if v is None:
                out.append(None)
                continue
        v = v + T if v < 0 else v
        out.append(v if 0 <= v < T else None)
    return out


def column_names(job):
    positions = job.get("positions", "each")
    if positions == "all":
        return ["all"]
    if positions == "each":
        return [str(t) for t in range(max(len(p["clean"]) for p in job["prompts"]))]
    return [str(v) for v in positions]


def circuit_of_names(job, names, prompt, specific):
    """{(u, v): rows} of an explicit edge list (names "u->v" or "u->v@COL") in one prompt."""
    circuit = {}
    at_columns = column_positions(job, prompt)
    cols = column_names(job)
    for name in names:
        edge_text, _, col = name.partition("@")
        u, v = edge_text.split("->")
        if not col:
            circuit[(u, v)] = None
            continue
        assert specific, name
        pos = at_columns[cols.index(col)]
        if pos is None or circuit.get((u, v), set()) is None:
            continue
        rows = circuit.setdefault((u, v), set())
        rows |= set(range(len(prompt["clean"]))) if pos == -1 else {pos}
    return circuit


def owners(v, H, G):
    """The nodes owning downstream input v: its query head; every query head of a key/value
    group; the layer's MLP; none for the logits."""
    if v == "logits":
        return []
    layer, part = v.split(".")[0], v.split(".")[1]
    if part == "mlp_in":
        return [f"{layer}.mlp"]
    if part.startswith("KV"):
        g, group = int(part[2:]), H // G
        return [f"{layer}.H{h}" for h in range(g * group, (g + 1) * group)]
    return [f"{layer}.{part}"]


def node_circuit(circuit, H, G):
    """{u: rows}: the upstream ends of the circuit's edges and the nodes owning their downstream
    ends, where those edges are kept."""
    nodes = {}
    for (u, v), rows in circuit.items():
        for n in [u] + owners(v, H, G):
            if rows is None or nodes.get(n, set()) is None:
                nodes[n] = None
            else:
                nodes.setdefault(n, set()).update(rows)
    return nodes


def mask(rows, T):
    """[T, 1] bool: the rows kept (None: all; absent: none)."""
    m = torch.zeros(T, 1, dtype=torch.bool)
    if rows is None:
        m[:] = True
    else:
        for t in rows:
            m[t] = True
    return m


def metric_of(model, tokens, ablated, keep, metric_args):
    """metric of the clean run of tokens where edge u -> v carries u's current output on the
    rows keep(u, v) gives ([T, 1] bool) and ablated[u] elsewhere."""
    T = len(tokens)

    def carry(u, v, value):
        return torch.where(keep(u, v), value, ablated[u])

    logits = er.run(model, model.embed(tokens), carry)[0]
    return float(er.ref.metric_value(logits, *metric_args))


def outputs_of(model, tokens):
    return er.run(model, model.embed(tokens))[1]


def mean_outputs(model, prompts):
    runs = [outputs_of(model, p["clean"]) for p in prompts]
    return {u: torch.stack([r[u] for r in runs]).mean(0) for u in runs[0]}


def choice_sources(model, job, p, ablation, mean_cache):
    """The ablated node outputs of prompt p under one ablation, one dict per seed."""
    prompt = job["prompts"][p]
    if ablation == "pair":
        return [outputs_of(model, prompt["corrupt"])]
    if ablation == "zero":
        return [{u: torch.zeros_like(x) for u, x in outputs_of(model, prompt["clean"]).items()}]
    kind = ablation if isinstance(ablation, str) else next(iter(ablation))
    body = {} if isinstance(ablation, str) else ablation[kind]
    if kind == "mean":
        key = body.get("prompts_file")
        if key not in mean_cache:
            mean_cache[key] = mean_outputs(model, body["prompts"] if key else job["prompts"])
        return [mean_cache[key]]
    seed, seeds = body.get("seed", 0), body.get("seeds", 1)
    return [outputs_of(model, job["prompts"][derangement(len(job["prompts"]), seed + s)[p]]["clean"])
            for s in range(seeds)]


def evaluate_choices(job, folder, circuits, choices):
    """Per prompt: full [P, M], empty [A, P, M], metric [C, A, P, M] for circuits (dicts with
    "edges" (names) and "specific", or "nodes") under choices ((granularity, ablation) pairs;
    mean over a prompts file: {"mean": {"prompts_file": F, "prompts": [...]}})."""
    model = er.Model(os.path.normpath(os.path.join(folder, job["model"])))
    metrics = job.get("metric", "logit_diff")
    metrics = [metrics] if isinstance(metrics, str) else metrics
    P, graph = len(job["prompts"]), er.edge_graph(model.cfg)
    full = np.zeros((P, len(metrics)))
    empty = np.zeros((len(choices), P, len(metrics)))
    values = np.zeros((len(circuits), len(choices), P, len(metrics)))
    mean_cache = {}
    for p, prompt in enumerate(job["prompts"]):
        tokens, T = prompt["clean"], len(prompt["clean"])
        clean_logits = er.run(model, model.embed(tokens))[0]
        clean_lp = torch.log_softmax(clean_logits[-1], dim=-1)
        args = [(m, prompt.get("answer", -1), prompt.get("wrong", -1), clean_lp) for m in metrics]
        full[p] = [float(er.ref.metric_value(clean_logits, *a)) for a in args]
        keeps = []
        for circuit in circuits:
            if "nodes" in circuit:
                nodes = {u: None for u in circuit["nodes"]}
                keeps.append((nodes, nodes))
            else:
                edges = circuit_of_names(job, circuit["edges"], prompt, circuit.get("specific", False))
                keeps.append((edges, node_circuit(edges, model.H, model.G)))
        for a, (granularity, ablation) in enumerate(choices):
            sources = choice_sources(model, job, p, ablation, mean_cache)
            for s, ablated in enumerate(sources):
                for i, arg in enumerate(args):
                    empty[a, p, i] += metric_of(model, tokens, ablated, lambda u, v: mask(set(), T), arg) / len(sources)
                for c, (edges, nodes) in enumerate(keeps):
                    if granularity == "nodes" or "nodes" in circuits[c]:
                        keep = lambda u, v, n=nodes: mask(n[u], T) if u in n else mask(set(), T)
                    else:
                        keep = lambda u, v, e=edges: mask(e[(u, v)], T) if (u, v) in e else mask(set(), T)
                    for i, arg in enumerate(args):
                        values[c, a, p, i] += metric_of(model, tokens, ablated, keep, arg) / len(sources)
    return full, empty, values
