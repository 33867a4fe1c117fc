"""load(): a results file (docs/results.md) as labelled numpy arrays."""
import copy
import json
import os

import h5py
import numpy as np

from . import circuits

ESTIMATORS = ("atp", "atp_qk", "atp_star")
EFFECTS = ("exact",) + ESTIMATORS  # the datasets of /effects, each [P, N, S, M]
EDGE_EFFECTS = ("exact", "eap", "eap_ig", "eap_ig_act")  # the datasets of /edges, each [P, E, S, M]


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def _token_names(model_dir, vocab):
    """id -> display string from the model folder's tokenizer.json, or None."""
    path = os.path.join(model_dir or "", "tokenizer.json")
    if not model_dir or not os.path.exists(path):
        return None
    try:
        tok = json.load(open(path))
    except (OSError, ValueError):
        return None
    names = [None] * vocab
    for text, i in tok.get("model", {}).get("vocab", {}).items():
        if 0 <= i < vocab:
            names[i] = text
    for added in tok.get("added_tokens", []):
        if 0 <= added.get("id", -1) < vocab:
            names[added["id"]] = added.get("content")
    byte_level = (tok.get("decoder") or {}).get("type") == "ByteLevel"
    if byte_level:  # GPT-2's byte-to-unicode map, inverted ("Ġthe" -> " the")
        printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
        others = [b for b in range(256) if b not in printable]
        back = {chr(b): b for b in printable}
        back.update({chr(256 + i): b for i, b in enumerate(others)})
        names = [None if n is None else bytes(back.get(c, ord("?")) for c in n).decode("utf-8", "replace")
                 for n in names]
    return names


def _strings(names, tokens):
    """[P][T] display strings of token ids ("" for -1 pads, the id itself where the vocabulary has
    no name), or None without a tokenizer."""
    if names is None:
        return None
    return [[names[t] if t >= 0 and names[t] is not None else ("" if t < 0 else str(t)) for t in row] for row in tokens]


class Results:
    """Everything in one results file, read as one of its metrics. Arrays are numpy; effects are
    [prompt, node, position] of the selected metric.

    metrics           the file's metrics, in the job's order (format 2 has a metric axis)
    metric            the selected one (load(path, metric=...); default the first)
    for_metric(name)  the same file read as another of its metrics (no second read of the file)
    edges             {"exact": ..., "eap": ..., ...}: the edge arrays the file holds, [P, E, S] of the metric
    edge_names, edge_upstream, edge_downstream: lists of str ("L0.H3->L1.KV2.k", "L0.H3", "L1.KV2.k")
    exact             float32 [P, N, S] (None for an estimates-only job); NaN = not computed
    estimates         {"atp": ..., "atp_qk": ..., "atp_star": ...}: the ones the file holds
    node_names, node_sites: lists of str; node_layers, node_heads, node_neurons: int arrays
    positions         int [S] (-1: all positions at once; -2: differs per prompt, named or from the end)
    position_names    [S] column names: "3", "-1" (the last token), "all", "IO"
    prompt_positions  int [P, S]: where each column sits in each prompt (-1 all, -2 none there)
    base_tokens, source_tokens: int [P, T] (-1 pads); lengths, answer, wrong: int [P]
    token_strings     [P][T] display strings of the base tokens (None without a tokenizer)
    source_token_strings: the same for the source tokens ("" where there are none: mean, zero)
    base, source      float64 [P]: metric of the unpatched base and source runs; gap = source − base
    effects(name)     the [P, N, S] values of "exact" or an estimator, ValueError when absent
    computed          bool [P, N, S]: cells whose work unit is done and position within the prompt
    circuits          /circuits (analysis.circuits.Circuits: rows, choices, faithfulness [C, A, P, M], curves), or None
    job, model_config dicts; attrs: every root attribute
    """

    def __init__(self, path, metric=None):
        self.path = path
        with h5py.File(path, "r") as f:
            self.attrs = {k: (_text(v) if isinstance(v, (bytes, str)) else v.item() if hasattr(v, "item") else v)
                          for k, v in f.attrs.items()}
            if self.attrs.get("format") != "patchsweep":
                raise ValueError(f"{path}: not a patchsweep results file")
            self.job = json.loads(self.attrs["job"])
            self.model_config = json.loads(self.attrs["model_config"])
            self._read_effects(f, metric)
            self.node_names = [_text(n) for n in f["nodes/name"][()]]
            self.node_sites = [_text(n) for n in f["nodes/site"][()]]
            self.node_layers = f["nodes/layer"][()]
            self.node_heads = f["nodes/head"][()]
            self.node_neurons = f["nodes/neuron"][()]
            self.positions = f["positions"][()]
            # where each column sits in each prompt (-1 all, -2 none); older files: the same everywhere
            if "prompts/position" in f:
                self.prompt_positions = f["prompts/position"][()]
                self.position_names = [_text(n) for n in f["position_names"][()]]
            else:
                lengths = f["prompts/length"][()]
                self.prompt_positions = np.where(self.positions[None, :] < lengths[:, None], self.positions[None, :], -2)
                self.position_names = ["all" if pos < 0 else str(pos) for pos in self.positions]
            self.base_tokens = f["prompts/base_tokens"][()]
            self.source_tokens = f["prompts/source_tokens"][()]
            self.lengths = f["prompts/length"][()]
            self.answer = f["prompts/answer"][()]
            self.wrong = f["prompts/wrong"][()]
            self.done = f["progress/done"][()].astype(bool)
            self.unit_kind = f["progress/unit_kind"][()]
            self.unit_prompt = f["progress/unit_prompt"][()]
            self.unit_node0 = f["progress/unit_node0"][()]
            self.unit_nodes = f["progress/unit_nodes"][()]
            self.unit_seconds = f["progress/seconds"][()]
            # written by `patchsweep bound` (docs/results.md); its subsets are drawn again from the seed
            # (metrics.bound_subsets), never stored
            self.bound = None
            if "bound" in f:
                g = f["bound"]
                self.bound = {k: (_text(v) if isinstance(v, (bytes, str)) else v.item()) for k, v in g.attrs.items()}
                self.bound.update({k: g[k][()] for k in ("verified", "estimate", "se", "ucb", "theta", "theta_sign", "subset_effect",
                                                            "boundary_ties")
                                   if k in g})
                self.bound["verified"] = self.bound["verified"].astype(bool)
            # written by `patchsweep circuit` (docs/circuits.md); every metric, selected by name
            self.circuits = circuits.read(f, self.metrics)
        P, N, S = len(self.lengths), len(self.node_names), len(self.positions)
        self.shape = (P, N, S)
        # A cell is computed when its exact unit is done (estimates-only jobs: its estimate unit)
        # and its position lies within the prompt.
        self.computed = np.zeros(self.shape, dtype=bool)
        wanted_kind = 0 if self.exact is not None else 1
        for u in np.flatnonzero(self.done & (self.unit_kind == wanted_kind)):
            p, n0, n = self.unit_prompt[u], self.unit_node0[u], self.unit_nodes[u]
            self.computed[p, n0:n0 + n, :] = True
        self.computed &= (self.prompt_positions != -2)[:, None, :]
        names = _token_names(self.attrs.get("model_dir"), int(self.model_config.get("vocab", 0)))
        self.token_strings = _strings(names, self.base_tokens)
        self.source_token_strings = _strings(names, self.source_tokens)

    def _read_effects(self, f, metric):
        """Every read of /effects and /baseline: all metrics are kept ([..., M]) and one is selected.
        A format-1 file (no metric axis; its metric in the attribute only) reads as M = 1."""
        version = int(self.attrs.get("format_version", 1))
        if version == 1:
            self.metrics = [self.attrs.get("metric", "")]
            axis = (lambda a: a[..., None])
        else:
            self.metrics = [_text(m) for m in f["metrics"][()]]
            axis = (lambda a: a)
        self._all = {e: axis(f[f"effects/{e}"][()]) for e in EFFECTS if f"effects/{e}" in f}
        self._all["base"], self._all["source"] = axis(f["baseline/base"][()]), axis(f["baseline/source"][()])
        # edges (docs/edges.md): names, ends, and their exact effects and estimates [P, E, S, M]
        self.edge_names = [_text(n) for n in f["edges/name"][()]] if "edges/name" in f else []
        self.edge_upstream = [_text(n) for n in f["edges/upstream"][()]] if self.edge_names else []
        self.edge_downstream = [_text(n) for n in f["edges/downstream"][()]] if self.edge_names else []
        self._all_edges = {e: f[f"edges/{e}"][()] for e in EDGE_EFFECTS if f"edges/{e}" in f}
        self._select(metric)

    def _select(self, metric):
        if metric is None:
            metric = self.metrics[0]
        if metric not in self.metrics:
            raise ValueError(f"{self.path} holds no metric {metric!r}; it holds: {', '.join(self.metrics)}")
        k = self.metrics.index(metric)
        self.metric = metric
        self.exact = self._all["exact"][..., k] if "exact" in self._all else None
        self.estimates = {e: self._all[e][..., k] for e in ESTIMATORS if e in self._all}
        self.base, self.source = self._all["base"][..., k], self._all["source"][..., k]
        self.edges = {e: v[..., k] for e, v in self._all_edges.items()}

    def for_metric(self, metric):
        """This file read as another of its metrics: a copy sharing every array but the
        selected metric's views."""
        other = copy.copy(self)
        other._select(metric)
        return other

    # -- effects ------------------------------------------------------------------------------
    def effects(self, name="exact"):
        """The [P, N, S] values of one of EFFECTS: "exact" or an estimator the file holds.
        ValueError, naming what the file does hold, when it is absent."""
        values = self.exact if name == "exact" else self.estimates.get(name)
        if values is not None:
            return values
        held = (["exact"] if self.exact is not None else []) + list(self.estimates)
        why = " (an estimates-only job: \"exact\": false)" if name == "exact" else ""
        raise ValueError(f"{self.path} holds no {name} effects{why}; it holds: {', '.join(held) or 'none'}")

    @property
    def gap(self):
        """source − base per prompt [P]: the whole change a patch could make (NaN for mean and
        zero corruption, which have no source run)."""
        return self.source - self.base

    # -- selections ---------------------------------------------------------------------------
    @property
    def complete(self):
        return bool(self.attrs.get("complete", 0))

    def nodes(self, site=None, layer=None):
        """Indices of the nodes of a site (and layer)."""
        return np.array([i for i, (s, l) in enumerate(zip(self.node_sites, self.node_layers))
                         if (site is None or s == site) and (layer is None or l == layer)], dtype=int)

    @property
    def sites(self):
        """The sites in the file, in file order."""
        return list(dict.fromkeys(self.node_sites))

    def position_labels(self, prompt=0):
        """Column labels: 'name: token' of the given prompt's base run, the name being the
        position, its name ("IO") or its offset from the end ("-1"); 'all' for every position at
        once; the bare name where the prompt has no such position."""
        out = []
        for name, pos in zip(self.position_names, self.prompt_positions[prompt]):
            if pos == -1:
                out.append("all")
            elif pos >= 0 and self.token_strings is not None:
                out.append(f"{name}: {self.token_strings[prompt][pos]}")
            else:
                out.append(name)
        return out

    def seconds_per_patch(self):
        """Mean compute seconds of one exact patched run, from the units' timings."""
        exact_units = self.done & (self.unit_kind == 0)
        cells = sum(int(self.computed[p, n0:n0 + n, :].sum()) for p, n0, n in
                    zip(self.unit_prompt[exact_units], self.unit_node0[exact_units], self.unit_nodes[exact_units]))
        samples = self.job.get("corruption", {}).get("gaussian", {}).get("samples", 1) \
            if isinstance(self.job.get("corruption"), dict) else 1
        seconds = float(np.nansum(self.unit_seconds[exact_units]))
        return seconds / (cells * samples) if cells else float("nan")


def load(path, metric=None):
    """Loads a results file, finished or not (a running or killed sweep: not-yet-computed cells
    are NaN and `computed` says which are), read as `metric` (one of r.metrics; default the
    job's first). r.for_metric(name) gives the others."""
    return Results(path, metric)
