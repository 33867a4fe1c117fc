"""Circuits and their faithfulness: the /circuits group that `patchsweep circuit` writes
(docs/circuits.md), read as labelled arrays, and its summaries recomputed from the per-prompt
values by the contract's definitions (so a test can hold the file to them).

    c = r.circuits                        # None when the file has no /circuits
    c.set, c.k, c.size                    # one entry per circuit row
    c.choices                             # "edges pair", "nodes mean", "edges resample:3", ...
    c.faithfulness[row, choice, prompt, metric]
    faithfulness_curve(r, "exact", "edges mean")   # k, size, ratio of means, auc, k80, k90, k100
"""
import json

import numpy as np

SUMMARIES = ("ratio_of_means", "mean_of_ratios", "median", "q1", "q3")
REACHES = (("k80", 0.8), ("k90", 0.9), ("k100", 1.0))  # the curve's thresholds (docs/circuits.md)
CURVE_NUMBERS = ("auc", "k80", "k90", "k100")


def _shapes(C, A, P, M, E, S, K):
    """Every dataset of /circuits and its shape (docs/circuits.md); sets/* only with a k list."""
    out = {"set": (C,), "k": (C,), "size": (C,), "members": (C, E, S), "all_positions": (C,), "choice": (A,),
           "full": (P, M), "empty": (A, P, M), "metric": (C, A, P, M), "faithfulness": (C, A, P, M), "done": (C, A, P)}
    out.update({name: (C, A, M) for name in SUMMARIES})
    if K is not None:
        out["sets/name"] = (K,)
        out.update({f"sets/{name}": (K, A, M) for name in CURVE_NUMBERS})
    return out


def _check_shapes(g, M, P, E, S):
    """Refuses a /circuits group whose datasets are missing or disagree with the file and each
    other, naming the first such dataset. E is None when the file names no edges."""
    for name in ("set", "choice"):
        if name not in g:
            raise ValueError(f"/circuits/{name} is missing")
    C, A = len(g["set"]), len(g["choice"])
    K = len(g["sets/name"]) if "sets/name" in g else None
    if "edge_name" in g:  # a node job has no /edges/name; with both, they name the same edges
        if E is not None and g["edge_name"].shape != (E,):
            raise ValueError(f"/circuits/edge_name has shape {list(g['edge_name'].shape)}, expected [{E}] (the edges of /edges/name)")
        E = len(g["edge_name"])
    for name, shape in _shapes(C, A, P, M, E, S, K).items():
        if name not in g:
            raise ValueError(f"/circuits/{name} is missing")
        got = g[name].shape
        if name == "members" and E is None:
            shape = (C, got[1] if len(got) == 3 else -1, S)
        if got != shape:
            raise ValueError(f"/circuits/{name} has shape {list(got)}, expected {list(shape)} "
                             "(circuits, choices, prompts, metrics, edges, columns of the file)")


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


class Circuits:
    """Everything in /circuits. Rows are circuits (C), choices A, prompts P, metrics M (the
    file's /metrics, all of them: pick one with metric_index), edges E, position columns S.

    set, k, size      [C]: each row's set name, the k asked for (-1 explicit or threshold), edges or cells kept
    members           bool [C, E, S]: edge e kept at column s
    all_positions     bool [C]: kept at every position, not only at the columns
    choices           [A]: "edges pair", "nodes mean", "edges mean:abc.jsonl", "edges resample:3"
    full              [P, M]: the clean run's metric; empty [A, P, M]: everything ablated
    metric            [C, A, P, M]: the circuit's metric; faithfulness [C, A, P, M]: per prompt
    ratio_of_means, mean_of_ratios, median, q1, q3: [C, A, M] as the file stores them
    set_names         [K]: the sets with a k list; auc [K, A, M], k80, k90, k100 int [K, A, M]
    edge_names        [E]: the members' edges ("u->v"), from /circuits/edge_name; None when the
                      file has only /edges/name (the same edges)
    done              bool [C, A, P]
    job               the "circuits" job key (dict); fingerprint, seconds: attributes of /circuits
    """

    def __init__(self, g, metrics, prompts, edges, columns, node_items=0, node_cells=0):
        """g: the /circuits group; the file's metric names and its counts of prompts, edges (None
        when it names none) and position columns, which the group's shapes must agree with
        (ValueError naming the dataset); the items a ranking of node effects has (nodes, and
        cells in columns some prompt has)."""
        self.metrics = list(metrics)
        _check_shapes(g, len(self.metrics), prompts, edges, columns)
        # the members' edge axis: /circuits/edge_name (its layout's addition), else /edges/name's
        self.edge_names = [_text(s) for s in g["edge_name"][()]] if "edge_name" in g else None
        self.node_items, self.node_cells = node_items, node_cells
        self.set = [_text(s) for s in g["set"][()]]
        self.k = g["k"][()].astype(int)
        self.size = g["size"][()].astype(int)
        self.members = g["members"][()].astype(bool)
        self.all_positions = g["all_positions"][()].astype(bool)
        self.choices = [_text(s) for s in g["choice"][()]]
        self.full = g["full"][()]
        self.empty = g["empty"][()]
        self.metric = g["metric"][()]
        self.faithfulness = g["faithfulness"][()]
        for name in SUMMARIES:
            setattr(self, name, g[name][()])
        self.set_names = [_text(s) for s in g["sets/name"][()]] if "sets/name" in g else []
        for name in CURVE_NUMBERS:
            setattr(self, name, g[f"sets/{name}"][()] if f"sets/{name}" in g else np.zeros((0,) + self.ratio_of_means.shape[1:]))
        self.done = g["done"][()].astype(bool)
        attrs = {key: (_text(v) if isinstance(v, (bytes, str)) else v.item()) for key, v in g.attrs.items()}
        self.job = json.loads(attrs["job"]) if attrs.get("job") else {}
        self.fingerprint, self.seconds = attrs.get("fingerprint"), attrs.get("seconds")

    def rows(self, set_name):
        """The rows of one set, in file order; ValueError naming the sets when there is none."""
        rows = [i for i, s in enumerate(self.set) if s == set_name]
        if not rows:
            raise ValueError(f"no circuit set {set_name!r}; the file has: {', '.join(dict.fromkeys(self.set))}")
        return rows

    def choice_index(self, choice):
        if choice not in self.choices:
            raise ValueError(f"no choice {choice!r}; the file has: {', '.join(self.choices)}")
        return self.choices.index(choice)

    def metric_index(self, metric):
        if metric not in self.metrics:
            raise ValueError(f"no metric {metric!r}; the file has: {', '.join(self.metrics)}")
        return self.metrics.index(metric)

    def row_label(self, row):
        return self.set[row] if self.k[row] < 0 else f"{self.set[row]} k={self.k[row]}"


def read(f, metrics):
    """The /circuits group of an open results file, or None when it has none."""
    if "circuits" not in f:
        return None
    edges = len(f["edges/name"]) if "edges/name" in f else None
    sites = [_text(s) for s in f["nodes/site"][()]] if "nodes/site" in f else []
    nodes = sum(site in ("z", "mlp_out") for site in sites)
    columns = f["prompts/position"][()] if "prompts/position" in f else np.zeros((1, len(f["positions"])))
    cells = nodes * int((columns != -2).any(axis=0).sum())
    return Circuits(f["circuits"], metrics, len(f["prompts/length"]), edges, len(f["positions"]), nodes, cells)


def per_prompt(circuit, empty, full):
    """(C − empty) / (full − empty) per prompt, NaN where full = empty (or a value is missing)."""
    out = np.full(len(circuit), np.nan)
    for p in range(len(circuit)):
        if full[p] != empty[p]:
            out[p] = (circuit[p] - empty[p]) / (full[p] - empty[p])
    return out


def summaries(circuit, empty, full):
    """The five summaries of one circuit under one choice and metric, from its per-prompt values
    [P]: ratio of means (mean C − mean empty) / (mean full − mean empty) over the prompts where
    all three are finite; mean of ratios, median and the quartiles of the per-prompt faithfulness,
    its NaN prompts left out (quartiles by linear interpolation between order statistics, numpy's
    default). A dict of floats, NaN where there is nothing to summarise."""
    circuit, empty, full = (np.asarray(a, dtype=np.float64) for a in (circuit, empty, full))
    has = np.isfinite(circuit) & np.isfinite(empty) & np.isfinite(full)
    out = dict.fromkeys(SUMMARIES, float("nan"))
    if has.any():
        gap = full[has].mean() - empty[has].mean()
        if gap != 0:
            out["ratio_of_means"] = float((circuit[has].mean() - empty[has].mean()) / gap)
    ratios = per_prompt(circuit, empty, full)
    ratios = ratios[np.isfinite(ratios)]
    if ratios.size:
        out["mean_of_ratios"] = float(ratios.mean())
        out["q1"], out["median"], out["q3"] = (float(q) for q in np.percentile(ratios, [25, 50, 75]))
    return out


def recompute_summaries(c):
    """Every summary [C, A, M] recomputed from c.metric, c.empty and c.full (docs/circuits.md), to
    hold the file's stored summaries to the definitions."""
    C, A, _, M = c.metric.shape
    out = {name: np.full((C, A, M), np.nan) for name in SUMMARIES}
    for row in range(C):
        for a in range(A):
            for m in range(M):
                values = summaries(c.metric[row, a, :, m], c.empty[a, :, m], c.full[:, m])
                for name in SUMMARIES:
                    out[name][row, a, m] = values[name]
    return out


def curve_metrics(ks, kept, faithfulness):
    """A faithfulness curve's numbers (docs/circuits.md): auc, the trapezoid area under the
    faithfulness against x = kept / items with (0, 0) added, divided by the largest x; k80, k90,
    k100, the smallest k whose faithfulness reaches 0.8, 0.9, 1.0 (-1: none). kept: the items each
    circuit took of its ranking, min(k, items) (items_kept). The number of items scales the area
    and the largest x alike, so it cancels: x = kept will do. Points are taken in order of kept
    (then k); a NaN faithfulness makes auc NaN and reaches nothing."""
    order = np.lexsort((np.asarray(ks), np.asarray(kept)))
    ks, x, y = np.asarray(ks)[order], np.asarray(kept, dtype=np.float64)[order], np.asarray(faithfulness, dtype=np.float64)[order]
    out = {}
    if len(x) == 0 or x[-1] <= 0:
        out["auc"] = float("nan")
    else:
        x, y_all = np.concatenate([[0.0], x]), np.concatenate([[0.0], y])
        area = 0.0
        for i in range(1, len(x)):
            area += (x[i] - x[i - 1]) * (y_all[i] + y_all[i - 1]) / 2
        out["auc"] = float(area / x[-1])
    for name, level in REACHES:
        reached = [int(k) for k, f in zip(ks, y) if f >= level]
        out[name] = min(reached) if reached else -1
    return out


def items_kept(c, row):
    """How many items of its ranking a ranked circuit row took: min(k, items). A ranking of edges
    (or random) takes edges or cells, which `size` counts; a ranking of node effects
    ("effects/...") takes nodes, the file's z and mlp_out nodes (their cells, when position-
    specific, in columns some prompt has), while `size` counts the edges out of them."""
    rank = next((entry.get("rank", "") for entry in c.job.get("sets", []) if entry.get("name") == c.set[row]), "")
    if not str(rank).startswith("effects/"):
        return int(c.size[row])
    items = c.node_items if c.all_positions[row] else c.node_cells
    return min(int(c.k[row]), items)


def recompute_curves(c):
    """auc, k80, k90, k100 [K, A, M] of every set with a k list, from the ratios of means the file
    stores; the sets in c.set_names order."""
    A, M = c.ratio_of_means.shape[1:]
    out = {"auc": np.full((len(c.set_names), A, M), np.nan)}
    out.update({name: np.full((len(c.set_names), A, M), -1, dtype=int) for name, _ in REACHES})
    for i, name in enumerate(c.set_names):
        rows = c.rows(name)
        for a in range(A):
            for m in range(M):
                numbers = curve_metrics(c.k[rows], [items_kept(c, row) for row in rows], c.ratio_of_means[rows, a, m])
                for key, value in numbers.items():
                    out[key][i, a, m] = value
    return out


def faithfulness_curve(r, set_name, choice, metric=None):
    """One set's faithfulness curve under one choice, for a metric (default r.metric): a dict of
    k (as asked), size (edges or cells kept), faithfulness (ratio of means), in order of k, and
    the file's auc, k80, k90, k100 for it."""
    c = _circuits_of(r)
    rows = c.rows(set_name)
    a, m = c.choice_index(choice), c.metric_index(metric or r.metric)
    order = [rows[i] for i in np.argsort(c.k[rows], kind="stable")]
    curve = {"k": c.k[order], "size": c.size[order], "faithfulness": c.ratio_of_means[order, a, m]}
    if set_name in c.set_names:
        i = c.set_names.index(set_name)
        curve.update({name: getattr(c, name)[i, a, m].item() for name in CURVE_NUMBERS})
    return curve


def circuit_faithfulness(r, row, choice, metric=None):
    """One circuit row under one choice: its per-prompt faithfulness [P] and the file's five
    summaries, for a metric (default r.metric)."""
    c = _circuits_of(r)
    a, m = c.choice_index(choice), c.metric_index(metric or r.metric)
    out = {name: float(getattr(c, name)[row, a, m]) for name in SUMMARIES}
    out["per_prompt"] = c.faithfulness[row, a, :, m]
    return out


def edge_names(r):
    """The names of the members' edge axis: /circuits/edge_name, else the file's /edges/name."""
    c = _circuits_of(r)
    return c.edge_names if c.edge_names is not None else r.edge_names


def circuit_edges(r, row):
    """The edges of one circuit row: (edge index, [columns kept]) for every kept edge; edge_names(r)
    names the indices."""
    c = _circuits_of(r)
    return [(e, list(np.flatnonzero(c.members[row, e]))) for e in np.flatnonzero(c.members[row].any(axis=1))]


def _circuits_of(r):
    if r.circuits is None:
        raise ValueError(f"{r.path} has no /circuits: run `patchsweep circuit` on its job first")
    return r.circuits
