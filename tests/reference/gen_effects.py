#!/usr/bin/env python3
"""Exact effects and gradient estimates of the test jobs, computed independently (run with
/usr/bin/python3).

    /usr/bin/python3 tests/reference/gen_effects.py

For every tests/fixtures/jobs/*.json: one full float64 forward pass per patch with the
reference model (transformer_ref.py), following the definitions in docs/job.md and
docs/methods.md, not patchsweep's code. The gaussian noise and the resample permutation are
re-implemented here from their documented recipe (splitmix64, Box-Muller, Fisher-Yates).
Estimates follow their definitions in docs/methods.md: gradients by autograd; the QK fix by
recomputing each changed softmax row in full (no closed form); GradDrop by re-running the
forward pass with layer l's attention and MLP outputs detached from the residual stream.
Writes tests/fixtures/golden/effects-<job>.safetensors with "exact" [P, N, S] (NaN past a
prompt's end), "base" [P], "source" [P] (NaN where there is no source run), and "atp",
"atp_qk", "atp_star" [P, N, S] for the estimates the job asks for.
"""
import glob
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
import transformer_ref as ref  # noqa: E402
from splitmix64 import SplitMix64  # noqa: E402
from job_layout import column_slice, config_dims, nodes_of  # noqa: E402



def derangement(n, seed):
    rng = SplitMix64(seed, 0x7265, 0)
    while True:
        perm = list(range(n))
        for i in range(n - 1, 0, -1):
            j = int(rng.uniform() * (i + 1))
            perm[i], perm[j] = perm[j], perm[i]
        if all(perm[i] != i for i in range(n)):
            return perm


def metric(logits, kind, answer, wrong, clean_lp):
    return float(ref.metric_value(logits, kind, answer, wrong, clean_lp))


def head_cols(index, dh):
    return slice(index * dh, (index + 1) * dh)


def pattern_change(A, G, scores):
    """sum_s (softmax(scores) - A) G over one causal row."""
    return float(((torch.softmax(scores, 0) - A) * G).sum())


def window_layers(job, layer, L):
    """The layers a node of `layer` patches together (docs/job.md, "window"): the node's layer
    and the size - 1 above it, or, with "align": "center", layer - size // 2 onward (ROME's
    causal-tracing window); clipped to the model."""
    window = job.get("window", 1)
    size, align = (window, "start") if isinstance(window, int) else (window["size"], window.get("align", "start"))
    start = layer - size // 2 if align == "center" else layer
    return range(max(start, 0), min(start + size, L))


def node_estimate(node, columns, T, dims, window, base, src, grad, qk):
    """AtP (qk=False) or AtP with the QK fix for one node at every column; grad maps activation
    names to dL/d(activation) (the pattern gradient lower-triangular)."""
    site, layer, index = node
    dh, group = dims["dh"], dims["H"] // dims["Hkv"]
    out = []
    for pos in columns:
        if pos >= T:
            out.append(np.nan)
            continue
        rows = range(T) if pos < 0 else [pos]
        total = 0.0
        for l in window:
            name = f"L{l}.{site}"
            A, G = base[f"L{l}.pattern"], grad[f"L{l}.pattern"]
            qb, kb = base[f"L{l}.q_rot"], base[f"L{l}.k_rot"]
            if qk and site == "q":
                h = index
                for t in rows:
                    q = src[f"L{l}.q_rot"][t, head_cols(h, dh)] if src is not None else torch.zeros(dh)
                    scores = kb[: t + 1, head_cols(h // group, dh)] @ q / math.sqrt(dh)
                    total += pattern_change(A[h, t, : t + 1], G[h, t, : t + 1], scores)
            elif qk and site == "k":
                g = index
                keys = range(T) if pos < 0 else [pos]
                for h in range(g * group, (g + 1) * group):
                    for t in range(T):
                        k = kb[: t + 1, head_cols(g, dh)].clone()
                        changed = [j for j in keys if j <= t]
                        if not changed:
                            continue
                        for j in changed:
                            k[j] = src[f"L{l}.k_rot"][j, head_cols(g, dh)] if src is not None else 0.0
                        scores = k @ qb[t, head_cols(h, dh)] / math.sqrt(dh)
                        total += pattern_change(A[h, t, : t + 1], G[h, t, : t + 1], scores)
            else:
                cols = column_slice(site, index, dims)
                sel = slice(None) if pos < 0 else slice(pos, pos + 1)
                a_src = src[name][sel, cols] if src is not None else torch.zeros_like(base[name][sel, cols])
                total += float(((a_src - base[name][sel, cols]) * grad[name][sel, cols]).sum())
        out.append(total)
    return np.array(out)


COMPONENT_SITES = {"q", "k", "v", "z", "attn_out", "mlp_post", "mlp_out"}


def inside_one_layer(node, job, L):
    """A node of one layer's attention or MLP, its window holding that layer alone: dropping that
    layer cuts its only term (GradDrop)."""
    site, layer, _ = node
    return site in COMPONENT_SITES and len(window_layers(job, layer, L)) == 1


def sample_estimates(W, cfg, dims, job, nodes, columns, T, tok, noise, src, metric_args, wanted):
    """Estimates of one base/source pair: dict estimator -> [N, S]."""
    L = dims["L"]

    def estimate(node, grad, qk):
        return node_estimate(node, columns, T, dims, window_layers(job, node[1], L), base, src, grad, qk)

    def gradients(drop):
        grads, acts = ref.activation_grads(W, cfg, tok, *metric_args, noise=noise, drop=drop)
        grads = {k: v.detach() for k, v in grads.items()}
        for k in grads:
            if k.endswith("pattern"):
                grads[k] = torch.tril(grads[k])  # masked entries are not variables (docs/methods.md)
        return grads, {k: v.detach() for k, v in acts.items()}

    g, base = gradients(-1)
    out = {}
    if "atp" in wanted:
        out["atp"] = np.stack([estimate(n, g, False) for n in nodes])
    if "atp_qk" in wanted or "atp_star" in wanted:
        out["atp_qk"] = np.stack([estimate(n, g, True) for n in nodes])
    if "atp_star" in wanted:
        star = np.zeros((len(nodes), len(columns)))
        for drop in range(L if L > 1 else 0):
            gd, _ = gradients(drop)
            star += np.abs(np.stack([estimate(n, gd, True) for n in nodes]))
        # the mean over the dropped layers whose term can be non-zero: all L of them, except the
        # node's own layer for a node inside one layer's attention or MLP (its writes are cut)
        terms = np.array([[L - 1 if inside_one_layer(n, job, L) else L] for n in nodes])
        out["atp_star"] = star / terms if L > 1 else np.abs(out["atp_qk"])  # one layer: nothing else to drop
    return out


class JobReference:
    """A job as the reference computes it: the model, the nodes and position columns, and per
    prompt the runs of every noise sample (base tokens, base noise, source activations or None
    for zeros) with their base metrics."""

    def __init__(self, path, metric_kind=None):
        job = self.job = json.load(open(path))
        folder = os.path.normpath(os.path.join(os.path.dirname(path), job["model"]))
        self.W, self.cfg = ref.load_model(folder)
        dims = self.dims = config_dims(self.cfg)
        prompts = self.prompts = job["prompts"]
        P = len(prompts)
        corruption = job.get("corruption", "pair")
        kind = self.kind = corruption if isinstance(corruption, str) else next(iter(corruption))
        self.params = {} if isinstance(corruption, str) else corruption[kind]
        self.direction = job.get("direction", "denoise" if kind in ("pair", "gaussian") else "noise")
        self.metric_kind = metric_kind or metrics_of(job)[0]
        positions = job.get("positions", "each")
        max_T = max(len(p["clean"]) for p in prompts)
        self.columns = [-1] if positions == "all" else list(range(max_T)) if positions == "each" else positions
        self.nodes = nodes_of(job, dims)
        self.sever = {None: None, "mlp": "mlp_out", "attn": "attn_out"}[job.get("sever")]
        self.noise_std = self.noise_std_of(path) if kind == "gaussian" else None
        self.mean_acts = None
        if kind == "mean":
            runs = [self.run(p["clean"])[1] for p in prompts]
            self.mean_acts = {k: torch.stack([r[k] for r in runs]).mean(0) for k in runs[0]}
        self.perm = derangement(P, self.params.get("seed", 0)) if kind == "resample" else None

    def run(self, tokens, noise=None, patch=ref._identity):
        return ref.forward(self.W, self.cfg, tokens, noise, patch)

    def noised_positions(self, p):
        """Prompt p's own "noise_positions", else the job's gaussian "positions"."""
        return self.prompts[p].get("noise_positions", self.params.get("positions"))

    def noise_std_of(self, path):
        """The population std of token-embedding entries over the rows docs/job.md names for
        gaussian.std: the whole vocabulary, the job's noised tokens (every prompt, every noised
        position, repeats counted), or the tokens of a corpus file (a JSON list of ids a line)."""
        wte = self.W[self.dims["wte"]].to(torch.float32).double()
        std = self.params.get("std", "vocabulary")
        if std == "vocabulary":
            rows = list(range(wte.shape[0]))
        elif std == "subjects":
            rows = [pr["clean"][t] for p, pr in enumerate(self.prompts) for t in self.noised_positions(p)]
        else:
            lines = open(os.path.join(os.path.dirname(path), std["corpus"])).read().splitlines()
            rows = [t for line in lines if line.strip() for t in json.loads(line)]
        return float(wte[rows].std(unbiased=False))

    def noise_for(self, p, s, T):
        """Noise sample s of prompt p: scale * std * N(0, 1), drawn position by position,
        dimension by dimension, rounded to float32 as patchsweep adds it."""
        rng = SplitMix64(self.params.get("seed", 0), p, s)
        noise = torch.zeros(T, self.dims["d"], dtype=torch.float64)
        for t in self.noised_positions(p):
            for i in range(self.dims["d"]):
                noise[t, i] = float(np.float32(self.params.get("scale", 3.0) * self.noise_std * rng.normal()))
        return noise

    def prompt(self, p):
        """The runs of prompt p: a dict with T, samples, base_metrics, metric_args, base, source."""
        pr, kind, direction, run = self.prompts[p], self.kind, self.direction, self.run
        T = len(pr["clean"])
        clean_logits, clean_acts = run(pr["clean"])
        clean_lp = torch.log_softmax(clean_logits[-1], dim=-1)
        metric_args = (self.metric_kind, pr.get("answer", -1), pr.get("wrong", -1), clean_lp)
        samples = []
        if kind == "pair":
            corrupt_acts = run(pr["corrupt"])[1]
            if direction == "denoise":
                samples.append((pr["corrupt"], None, clean_acts))
            else:
                samples.append((pr["clean"], None, corrupt_acts))
        elif kind == "gaussian":
            for s in range(self.params.get("samples", 10)):
                noise = self.noise_for(p, s, T)
                if direction == "denoise":
                    samples.append((pr["clean"], noise, clean_acts))
                else:
                    samples.append((pr["clean"], None, run(pr["clean"], noise)[1]))
        elif kind == "mean":
            samples.append((pr["clean"], None, self.mean_acts))
        elif kind == "zero":
            samples.append((pr["clean"], None, None))
        else:
            samples.append((pr["clean"], None, run(self.prompts[self.perm[p]]["clean"])[1]))
        base_metrics = [metric(run(tok, noise)[0], *metric_args) for tok, noise, _ in samples]
        # The source run's metric, where there is a source run (not for mean or zero).
        source = np.nan
        if kind == "pair":
            other = pr["corrupt"] if direction == "noise" else pr["clean"]
            source = metric(run(other)[0], *metric_args)
        elif kind == "resample":
            source = metric(run(self.prompts[self.perm[p]]["clean"])[0], *metric_args)
        elif kind == "gaussian" and direction == "denoise":
            source = metric(clean_logits, *metric_args)
        elif kind == "gaussian":
            source = np.mean([metric(run(pr["clean"], self.noise_for(p, s, T))[0], *metric_args)
                              for s in range(len(samples))])
        return dict(T=T, samples=samples, base_metrics=base_metrics, metric_args=metric_args,
                    base=np.mean(base_metrics), source=source)

    def effect(self, runs, cells):
        """Mean over noise samples of metric(patched) - metric(base), with every cell
        (site, layer, index, position; position -1 = all) patched at once: one node alone is
        an exact effect, several are a joint patch. Each node is patched over its window. With
        "sever", the severed site (every layer, the patched positions) keeps the base run's values
        (ROME's severed paths)."""
        L, total = self.dims["L"], 0.0
        for (tok, noise, acts), base_metric in zip(runs["samples"], runs["base_metrics"]):
            base_acts = self.run(tok, noise)[1] if self.sever else None

            def patch(name, x, acts=acts, base_acts=base_acts):
                l, s = name.split(".", 1)
                for site, layer, index, pos in cells:
                    rows = slice(None) if pos < 0 else slice(pos, pos + 1)
                    if s == self.sever:
                        x = x.clone()
                        x[rows] = base_acts[name][rows]
                    if s != site or int(l[1:]) not in window_layers(self.job, layer, L):
                        continue
                    cols = column_slice(site, index, self.dims)
                    x = x.clone()
                    x[rows, cols] = 0.0 if acts is None else acts[name][rows, cols]
                return x
            total += metric(self.run(tok, noise, patch)[0], *runs["metric_args"]) - base_metric
        return total / len(runs["samples"])


def metrics_of(job):
    """The job's metrics: "metric" is one name or a list of names (default logit_diff)."""
    m = job.get("metric", "logit_diff")
    return [m] if isinstance(m, str) else list(m)


def job_effects(path):
    """exact, base, source and the estimates of a job; with a list of metrics each array gains a
    last axis, one entry per metric in the job's order (each metric computed on its own)."""
    job = json.load(open(path))
    if isinstance(job.get("metric"), list):
        per_metric = [job_effects_one(path, m) for m in job["metric"]]
        exact, base, source = (np.stack([r[i] for r in per_metric], axis=-1) for i in range(3))
        estimates = {e: np.stack([r[3][e] for r in per_metric], axis=-1) for e in per_metric[0][3]}
        return exact, base, source, estimates
    return job_effects_one(path, None)


def job_effects_one(path, metric_kind):
    ref_job = JobReference(path, metric_kind)
    job, nodes, columns, dims = ref_job.job, ref_job.nodes, ref_job.columns, ref_job.dims
    P = len(ref_job.prompts)
    wanted = job.get("estimates", [])
    estimates = {e: np.full((P, len(nodes), len(columns)), np.nan) for e in wanted}
    exact = np.full((P, len(nodes), len(columns)), np.nan)
    base_out, source_out = np.full(P, np.nan), np.full(P, np.nan)
    for p in range(P):
        runs = ref_job.prompt(p)
        T = runs["T"]
        base_out[p], source_out[p] = runs["base"], runs["source"]
        if wanted:
            per_sample = [sample_estimates(ref_job.W, ref_job.cfg, dims, job, nodes, columns, T, tok, noise, acts,
                                           runs["metric_args"], wanted)
                          for tok, noise, acts in runs["samples"]]
            for e in wanted:
                estimates[e][p] = np.mean([ps[e] for ps in per_sample], axis=0)
        if job.get("exact", True) is False:
            continue
        for k, (site, layer, index) in enumerate(nodes):
            for j, pos in enumerate(columns):
                if pos < T:
                    exact[p, k, j] = ref_job.effect(runs, [(site, layer, index, pos)])
    return exact, base_out, source_out, estimates


def main():
    out_dir = os.path.join(HERE, "..", "fixtures", "golden")
    for path in sorted(glob.glob(os.path.join(HERE, "..", "fixtures", "jobs", "*.json"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if name.startswith("edges-"):  # edge jobs: gen_edges.py
            continue
        exact, base, source, estimates = job_effects(path)
        tensors = {"exact": ("F64", exact), "base": ("F64", base), "source": ("F64", source)}
        tensors.update({e: ("F64", v) for e, v in estimates.items()})
        st.write(os.path.join(out_dir, f"effects-{name}.safetensors"), tensors)
        shown = exact if not np.isnan(exact).all() else next(iter(estimates.values()))
        print(f"{name}: {exact.shape}, largest |value| {np.nanmax(np.abs(shown)):.4g}, estimates: {sorted(estimates)}")


if __name__ == "__main__":
    main()
