"""Independent float64 reference for edge patching and the EAP / EAP-IG estimators, following
docs/edges.md (the contract), written without reading patchsweep's C code.

The forward pass is factorised the auto-circuit way: every upstream node (`embed`, each head
`L{l}.H{h}`, each MLP `L{l}.mlp`) keeps its own output, and every downstream input (`L{l}.H{h}.q`,
`L{l}.KV{g}.k`, `L{l}.KV{g}.v`, `L{l}.mlp_in`, `logits`) builds its own copy of the residual stream
as the sum of what its incoming edges carry plus the biases that belong to no node (attention
output biases). An edge carries its upstream node's current output unless a `carry` hook says
otherwise, so one hook expresses an edge patch, the interpolated component of EAP-IG
("activations") and a circuit's ablated edges. Gradients with respect to each input's own copy
come from autograd (the copy is read by that input's norm and projection only).

Choices where the contract leaves room (see also tests/reference/EDGES.md):
1. Edge filter: "from_layers" / "to_layers" are inclusive layer ranges [first, last] (docs/edges.md:
   [0, 11] selects layers 0..11). A filtered job's edge arrays hold the kept edges only, in
   contract order (E = number kept).
2. Mean and zero corruption have no source run, only source values; EAP-IG's path then starts at
   the source embedding output (the mean of the clean runs' embeddings, or 0) and ends at B's.
3. Gaussian corruption: each noise sample is its own base/source pair (docs/job.md), and exact
   effects and all three estimates are the means over samples, as for nodes.
4. A column at position t patches row t of v's input only; "all" patches every row at once and
   the estimates then sum over rows.
5. KL in the noise direction: the gradient at B = clean is 0 up to rounding (~1e-17 here), and
   the reference stores what autograd gives rather than forcing 0.
"""
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import transformer_ref as ref  # noqa: E402
from gen_effects import derangement  # noqa: E402  (the node fixtures' resample permutation)
from splitmix64 import SplitMix64  # noqa: E402

torch.set_default_dtype(torch.float64)


# ---------------------------------------------------------------------------------------------
# The graph

def graph_shape(cfg):
    """(layers, query heads, key/value heads, parallel residual) of a Hugging Face config."""
    if cfg["model_type"] == "gpt2":
        return cfg["n_layer"], cfg["n_head"], cfg["n_head"], False
    H = cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads", H)
    parallel = cfg["model_type"] == "gpt_neox" and cfg.get("use_parallel_residual", True)
    return cfg["num_hidden_layers"], H, G, parallel


def upstream_nodes(L, H):
    """Upstream nodes in contract order: embed, then per layer the heads and the MLP."""
    nodes = ["embed"]
    for l in range(L):
        nodes += [f"L{l}.H{h}" for h in range(H)] + [f"L{l}.mlp"]
    return nodes


def downstream_inputs(L, H, G):
    """Downstream inputs in contract order: per layer q of every head, k then v of every
    key/value head, mlp_in; then logits."""
    inputs = []
    for l in range(L):
        inputs += [f"L{l}.H{h}.q" for h in range(H)]
        inputs += [f"L{l}.KV{g}.k" for g in range(G)]
        inputs += [f"L{l}.KV{g}.v" for g in range(G)]
        inputs.append(f"L{l}.mlp_in")
    return inputs + ["logits"]


def parents(v, L, H, parallel):
    """The upstream nodes written before input v reads, in contract order."""
    if v == "logits":
        return upstream_nodes(L, H)
    layer = int(v.split(".")[0][1:])
    earlier = upstream_nodes(layer, H)  # embed and every node of layers < layer
    if v.endswith(".mlp_in") and not parallel:
        earlier += [f"L{layer}.H{h}" for h in range(H)]  # sequential: the MLP reads resid_mid
    return earlier


def edge_graph(cfg):
    """Every edge (upstream, downstream) in contract order: by downstream input, then upstream."""
    L, H, G, parallel = graph_shape(cfg)
    return [(u, v) for v in downstream_inputs(L, H, G) for u in parents(v, L, H, parallel)]


def edge_name(edge):
    return f"{edge[0]}->{edge[1]}"


def kind_and_layer(name):
    """('embed', None), ('head', l), ('mlp', l), ('q'|'k'|'v'|'mlp_in', l) or ('logits', None)."""
    if name in ("embed", "logits"):
        return name, None
    parts = name.split(".")
    layer = int(parts[0][1:])
    if len(parts) == 3:
        return parts[2], layer
    return ("head" if parts[1].startswith("H") else parts[1]), layer


def select_edges(edges, spec):
    """The job's "edges" key: "all", or a filter object whose omitted keys select everything.
    `embed` passes any from_layers and `logits` any to_layers (docs/edges.md)."""
    if spec == "all":
        return list(edges)

    def keep(name, kinds_key, layers_key):
        kind, layer = kind_and_layer(name)
        if kinds_key in spec and kind not in spec[kinds_key]:
            return False
        if layer is None or layers_key not in spec:
            return True
        first, last = spec[layers_key]
        return first <= layer <= last

    return [e for e in edges if keep(e[0], "from", "from_layers") and keep(e[1], "to", "to_layers")]


def component_of(u):
    """The component EAP-IG ("activations") interpolates for edges out of u: embed, the whole
    attention layer of a head, or the MLP."""
    return f"{u.split('.')[0]}.attn" if ".H" in u else u


# ---------------------------------------------------------------------------------------------
# The model, cut into per-head and per-component pieces

class Model:
    """Weights of a GPT-2, Llama or GPT-NeoX folder, sliced per head: query/key/value projections
    [d, dh] (+ bias [dh]) for each head or key/value head, the output projection rows [dh, d]
    of each head, and the layer's attention output bias (0 where the model has none)."""

    def __init__(self, folder):
        W, cfg = ref.load_model(folder)
        self.W, self.cfg, self.family = W, cfg, cfg["model_type"]
        self.L, self.H, self.G, self.parallel = graph_shape(cfg)
        self.d = cfg["n_embd"] if self.family == "gpt2" else cfg["hidden_size"]
        self.dh = self.d // self.H
        if self.family == "gpt2":
            self.pre = "transformer." if "transformer.wte.weight" in W else ""
            self.eps = cfg.get("layer_norm_epsilon", 1e-5)
        elif self.family == "llama":
            self.eps = cfg.get("rms_norm_eps", 1e-6)
        else:
            self.eps = cfg.get("layer_norm_eps", 1e-5)
        self.layers = [self._slice_layer(l) for l in range(self.L)]

    def _slice_layer(self, l):
        W, d, dh, H, G = self.W, self.d, self.dh, self.H, self.G
        cols = lambda i: slice(i * dh, (i + 1) * dh)
        zero = torch.zeros(dh)
        if self.family == "gpt2":
            p = f"{self.pre}h.{l}.attn."
            w, b = W[p + "c_attn.weight"], W[p + "c_attn.bias"]  # Conv1D [in, out]: q | k | v columns
            part = lambda which, i: (w[:, which * d:][:, cols(i)], b[which * d:][cols(i)])
            q = [part(0, h) for h in range(H)]
            k = [part(1, g) for g in range(G)]
            v = [part(2, g) for g in range(G)]
            o = [W[p + "c_proj.weight"][cols(h)] for h in range(H)]
            bo = W[p + "c_proj.bias"]
        elif self.family == "llama":
            p = f"model.layers.{l}.self_attn."
            part = lambda name, i: (W[p + name][cols(i)].T, zero)  # Linear [out, in]
            q = [part("q_proj.weight", h) for h in range(H)]
            k = [part("k_proj.weight", g) for g in range(G)]
            v = [part("v_proj.weight", g) for g in range(G)]
            o = [W[p + "o_proj.weight"][:, cols(h)].T for h in range(H)]
            bo = torch.zeros(d)
        else:
            p = f"gpt_neox.layers.{l}.attention."
            w, b = W[p + "query_key_value.weight"], W[p + "query_key_value.bias"]
            # Hugging Face's fused layout: output rows head by head, each head's q | k | v.
            rows = lambda which, i: slice(i * 3 * dh + which * dh, i * 3 * dh + (which + 1) * dh)
            part = lambda which, i: (w[rows(which, i)].T, b[rows(which, i)])
            q = [part(0, h) for h in range(H)]
            k = [part(1, g) for g in range(G)]
            v = [part(2, g) for g in range(G)]
            o = [W[p + "dense.weight"][:, cols(h)].T for h in range(H)]
            bo = W[p + "dense.bias"]
        return dict(q=q, k=k, v=v, o=o, bo=bo)

    # -- reading the embeddings and the unembedding
    def embed_matrix(self):
        if self.family == "gpt2":
            return self.W[self.pre + "wte.weight"]
        return self.W["model.embed_tokens.weight" if self.family == "llama" else "gpt_neox.embed_in.weight"]

    def embed(self, tokens, noise=None):
        """The `embed` node's output: token (+ learned position) embedding (+ gaussian noise)."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        e = self.embed_matrix()[tokens]
        if self.family == "gpt2":
            e = e + self.W[self.pre + "wpe.weight"][: len(tokens)]
        return e if noise is None else e + noise

    def unembed(self, x):
        W = self.W
        if self.family == "gpt2":
            return ref.layer_norm(x, W[self.pre + "ln_f.weight"], W[self.pre + "ln_f.bias"], self.eps) @ \
                W.get("lm_head.weight", self.embed_matrix()).T
        if self.family == "llama":
            return ref.rms_norm(x, W["model.norm.weight"], self.eps) @ W.get("lm_head.weight", self.embed_matrix()).T
        x = ref.layer_norm(x, W["gpt_neox.final_layer_norm.weight"], W["gpt_neox.final_layer_norm.bias"], self.eps)
        return x @ W.get("embed_out.weight", self.embed_matrix()).T

    # -- one layer's pieces
    def norm(self, l, which, x):
        """ln1 (which=1, before attention) or ln2 (which=2, before the MLP) of layer l."""
        W = self.W
        if self.family == "gpt2":
            p = f"{self.pre}h.{l}.ln_{which}."
            return ref.layer_norm(x, W[p + "weight"], W[p + "bias"], self.eps)
        name = "input_layernorm" if which == 1 else "post_attention_layernorm"
        if self.family == "llama":
            return ref.rms_norm(x, W[f"model.layers.{l}.{name}.weight"], self.eps)
        p = f"gpt_neox.layers.{l}.{name}."
        return ref.layer_norm(x, W[p + "weight"], W[p + "bias"], self.eps)

    def rotary(self, x):
        """Rotary embedding of one head's queries or keys [T, dh] at positions 0..T-1."""
        if self.family == "gpt2":
            return x
        positions = torch.arange(x.shape[0])
        if self.family == "llama":
            return ref.rotate_half(x[None], positions, self.cfg.get("rope_theta", 10000.0), self.dh)[0]
        rot = int(self.dh * self.cfg.get("rotary_pct", 0.25))
        return ref.rotate_half(x[None], positions, self.cfg.get("rotary_emb_base", 10000.0), rot)[0]

    def mlp(self, l, x):
        """The `L{l}.mlp` node's output (with its output bias) from the normed input."""
        W = self.W
        if self.family == "gpt2":
            p = f"{self.pre}h.{l}.mlp."
            hidden = ref.gelu_new(x @ W[p + "c_fc.weight"] + W[p + "c_fc.bias"])
            return hidden @ W[p + "c_proj.weight"] + W[p + "c_proj.bias"]
        if self.family == "llama":
            p = f"model.layers.{l}.mlp."
            hidden = torch.nn.functional.silu(x @ W[p + "gate_proj.weight"].T) * (x @ W[p + "up_proj.weight"].T)
            return hidden @ W[p + "down_proj.weight"].T
        p = f"gpt_neox.layers.{l}.mlp."
        act = ref.gelu_erf if self.cfg.get("hidden_act", "gelu") == "gelu" else ref.gelu_new
        hidden = act(x @ W[p + "dense_h_to_4h.weight"].T + W[p + "dense_h_to_4h.bias"])
        return hidden @ W[p + "dense_4h_to_h.weight"].T + W[p + "dense_4h_to_h.bias"]


# ---------------------------------------------------------------------------------------------
# The factorised forward pass

def _current(u, v, value):
    return value


def run(model, e, carry=_current, grad=False):
    """Forward pass from the `embed` output e [T, d].

    carry(u, v, value) -> what edge u -> v carries, given u's output `value` in this run.
    Returns (logits [T, V], outs: upstream name -> output [T, d], xs: input name -> its copy of
    the stream [T, d]). With grad=True, xs[v] is instead a zero leaf added to v's copy: after a
    backward pass its .grad is d metric / d x_v through v's own norm and projection only, the
    one place the copy goes."""
    L, H, G, parallel = model.L, model.H, model.G, model.parallel
    group = H // G  # query head h reads key/value head h // group
    outs, xs = {"embed": e}, {}
    constant = torch.zeros(model.d)  # the attention output biases written so far

    def read(v, bias):
        x = bias + sum(carry(u, v, outs[u]) for u in parents(v, L, H, parallel))
        if grad:
            xs[v] = torch.zeros_like(x, requires_grad=True)
            return x + xs[v]
        xs[v] = x
        return x

    for l in range(L):
        w = model.layers[l]
        project = lambda x, wb: model.norm(l, 1, x) @ wb[0] + wb[1]
        q = [model.rotary(project(read(f"L{l}.H{h}.q", constant), w["q"][h])) for h in range(H)]
        k = [model.rotary(project(read(f"L{l}.KV{g}.k", constant), w["k"][g])) for g in range(G)]
        v = [project(read(f"L{l}.KV{g}.v", constant), w["v"][g]) for g in range(G)]
        for h in range(H):
            z, _ = ref.causal_attention(q[h][None], k[h // group][None], v[h // group][None], 1)
            outs[f"L{l}.H{h}"] = z @ w["o"][h]
        # Sequential blocks: the MLP reads resid_mid, which holds this layer's attention bias;
        # the parallel residual's MLP reads the block input, which does not.
        after_attention = constant + w["bo"]
        outs[f"L{l}.mlp"] = model.mlp(l, model.norm(l, 2, read(f"L{l}.mlp_in", constant if parallel else after_attention)))
        constant = after_attention
    return model.unembed(read("logits", constant)), outs, xs


# ---------------------------------------------------------------------------------------------
# One base/source pair: exact edge effects and the estimates

def rows_of(position, T):
    """[T, 1] mask of the rows a column patches (position -1: all)."""
    mask = torch.zeros(T, 1, dtype=torch.bool)
    mask[slice(None) if position < 0 else position] = True
    return mask


class Pair:
    """One base run B and its source S for one prompt (one noise sample).

    base: upstream name -> B's output; source: upstream name -> S's output (S's run, or the mean
    over prompts, or zeros). B's run is the forward pass from base["embed"]. metric_args are
    transformer_ref.metric_value's (kind, answer, wrong, clean log-probs)."""

    def __init__(self, model, base_embed, source, metric_args):
        self.model, self.source, self.metric_args = model, source, metric_args
        logits, self.base, _ = run(model, base_embed)
        self.base_metric = self.metric(logits)
        self.T = base_embed.shape[0]

    def metric(self, logits):
        return float(ref.metric_value(logits, *self.metric_args))

    def patched(self, carry):
        """metric(run from B's embedding with the given carry) - metric(B)."""
        return self.metric(run(self.model, self.base["embed"], carry)[0]) - self.base_metric

    def exact(self, edge, position):
        """Exact effect of patching edge u -> v at one position (-1: all): v's copy of the stream
        gets u^S instead of u^B on those rows. B's run is unchanged up to v's layer, so the copy
        is x_v^B - u^B + u^S there, and everything that reads v's output is recomputed."""
        mask = rows_of(position, self.T)

        def carry(u, v, value):
            return torch.where(mask, self.source[u], value) if (u, v) == edge else value

        return self.patched(carry)

    def gradients(self, e, carry=_current):
        """g_v for every input v at the run from embedding e (detached tensors)."""
        logits, _, zeros = run(self.model, e, carry, grad=True)
        ref.metric_value(logits, *self.metric_args).backward()
        # An input with no path to the metric gets no .grad: the inputs of a component whose
        # output a carry hook has replaced by constants (activation IG).
        return {v: zero.grad if zero.grad is not None else torch.zeros_like(zero) for v, zero in zeros.items()}

    def input_ig_gradients(self, steps):
        """EAP-IG ("inputs"): the mean over k = 1..m of g_v at the run whose embedding is
        e^S + (k/m)(e^B - e^S)."""
        eS, eB = self.source["embed"], self.base["embed"]
        runs = [self.gradients(eS + (k / steps) * (eB - eS)) for k in range(1, steps + 1)]
        return {v: sum(r[v] for r in runs) / steps for v in runs[0]}

    def activation_ig_gradients(self, component, steps):
        """EAP-IG ("activations") for the edges out of `component`: the mean over k = 1..m of g_v
        at B's run with every node of the component outputting u^S + (k/m)(u^B - u^S). The nodes
        feed the rest of the model only through their edges, so replacing what every edge out of
        them carries replaces their output."""
        def interpolated(alpha):
            def carry(u, v, value):
                if component_of(u) != component:
                    return value
                return self.source[u] + alpha * (self.base[u] - self.source[u])
            return carry

        runs = [self.gradients(self.base["embed"], interpolated(k / steps)) for k in range(1, steps + 1)]
        return {v: sum(r[v] for r in runs) / steps for v in runs[0]}

    def estimate(self, edge, position, grads):
        """sum over the column's rows of (u^S - u^B) . g_v, with g_v from `grads`."""
        u, v = edge
        product = (self.source[u] - self.base[u]) * grads[v]
        return float(product.sum() if position < 0 else product[position].sum())


def all_estimates(pair, edges, columns, wanted, steps):
    """{estimate: [[value per column] per edge]} for the estimates in `wanted` (NaN past the end)."""
    grads, per_component = {}, {}
    if "eap" in wanted:
        grads["eap"] = pair.gradients(pair.base["embed"])
    if "eap_ig" in wanted:
        grads["eap_ig"] = pair.input_ig_gradients(steps)
    if "eap_ig_act" in wanted:
        components = sorted({component_of(u) for u, _ in edges})
        per_component = {c: pair.activation_ig_gradients(c, steps) for c in components}
    out = {}
    for name in wanted:
        table = []
        for edge in edges:
            g = per_component[component_of(edge[0])] if name == "eap_ig_act" else grads[name]
            table.append([pair.estimate(edge, t, g) if t < pair.T else math.nan for t in columns])
        out[name] = table
    return out


def exact_effects(pair, edges, columns):
    """[[exact effect per column] per edge] (NaN past the end)."""
    return [[pair.exact(edge, t) if t < pair.T else math.nan for t in columns] for edge in edges]


# ---------------------------------------------------------------------------------------------
# A job: its edges, columns and base/source pairs (docs/job.md, docs/edges.md)

ESTIMATES = ("eap", "eap_ig", "eap_ig_act")


class EdgeJob:
    """An edge job as the reference computes it: model, kept edges, position columns, and per
    prompt its base/source pairs (one per noise sample; one otherwise)."""

    def __init__(self, job, folder):
        """job: the job's JSON object; folder: where its relative paths start."""
        self.model = Model(os.path.normpath(os.path.join(folder, job["model"])))
        self.edges = select_edges(edge_graph(self.model.cfg), job.get("edges", "all"))
        self.prompts = job["prompts"]
        corruption = job.get("corruption", "pair")
        self.kind = corruption if isinstance(corruption, str) else next(iter(corruption))
        self.params = {} if isinstance(corruption, str) else corruption[self.kind]
        self.direction = job.get("direction", "denoise" if self.kind in ("pair", "gaussian") else "noise")
        self.metric_kind = job.get("metric", "logit_diff")
        self.estimates = [e for e in ESTIMATES if e in job.get("estimates", [])]
        self.steps = job.get("ig_steps", 5)
        self.exact = job.get("exact", True)
        positions = job.get("positions", "each")
        longest = max(len(p["clean"]) for p in self.prompts)
        self.columns = [-1] if positions == "all" else list(range(longest)) if positions == "each" else positions
        self.mean = None
        if self.kind == "mean":  # the mean over prompts of each node's output in the clean runs
            runs = [run(self.model, self.model.embed(p["clean"]))[1] for p in self.prompts]
            self.mean = {u: torch.stack([r[u] for r in runs]).mean(0) for u in runs[0]}
        self.perm = derangement(len(self.prompts), self.params.get("seed", 0)) if self.kind == "resample" else None

    @classmethod
    def from_file(cls, path):
        with open(path) as f:
            return cls(json.load(f), os.path.dirname(path))

    def noise(self, p, s, T):
        """Noise sample s of prompt p (docs/methods.md): stream (seed, p, s); per listed position,
        per dimension, float32(scale * sigma * normal()), sigma the population standard deviation
        of the token-embedding matrix."""
        rng = SplitMix64(self.params.get("seed", 0), p, s)
        sigma = float(self.model.embed_matrix().std(unbiased=False))
        noise = torch.zeros(T, self.model.d)
        for t in self.params["positions"]:
            for i in range(self.model.d):
                noise[t, i] = float(np.float32(self.params.get("scale", 3.0) * sigma * rng.normal()))
        return noise

    def pairs(self, p):
        """The base/source pairs of prompt p (docs/job.md's table)."""
        model, prompt = self.model, self.prompts[p]
        clean = model.embed(prompt["clean"])
        clean_logits, clean_outs, _ = run(model, clean)
        args = (self.metric_kind, prompt.get("answer", -1), prompt.get("wrong", -1),
                torch.log_softmax(clean_logits[-1], dim=-1))
        source_of = lambda e: run(model, e)[1]
        if self.kind == "pair":
            corrupt = model.embed(prompt["corrupt"])
            if self.direction == "denoise":
                return [Pair(model, corrupt, clean_outs, args)]
            return [Pair(model, clean, source_of(corrupt), args)]
        if self.kind == "gaussian":
            T, pairs = len(prompt["clean"]), []
            for s in range(self.params.get("samples", 10)):
                noised = model.embed(prompt["clean"], self.noise(p, s, T))
                if self.direction == "denoise":
                    pairs.append(Pair(model, noised, clean_outs, args))
                else:
                    pairs.append(Pair(model, clean, source_of(noised), args))
            return pairs
        if self.kind == "mean":
            return [Pair(model, clean, self.mean, args)]
        if self.kind == "zero":
            return [Pair(model, clean, {u: torch.zeros_like(x) for u, x in clean_outs.items()}, args)]
        other = model.embed(self.prompts[self.perm[p]]["clean"])
        return [Pair(model, clean, source_of(other), args)]

    def prompt_results(self, p):
        """(base metric, {"exact" and each estimate: [E, S] array}) of prompt p, the means over
        the prompt's pairs."""
        pairs = self.pairs(p)
        tables = []
        for pair in pairs:
            table = all_estimates(pair, self.edges, self.columns, self.estimates, self.steps)
            if self.exact:
                table["exact"] = exact_effects(pair, self.edges, self.columns)
            tables.append(table)
        mean = {k: np.mean([np.array(t[k]) for t in tables], axis=0) for k in tables[0]}
        return float(np.mean([pair.base_metric for pair in pairs])), mean
