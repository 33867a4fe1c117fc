"""Self-checks of the edge reference (edges_ref.py) and its committed fixtures:

    /usr/bin/python3 -m pytest tests/reference/test_edges_ref.py

Each check holds for a reason independent of how edges_ref.py computes it: the graph counts of
docs/edges.md; transformer_ref.py's ordinary forward pass and node patches (a different
formulation of the same model); the source run itself; first-order Taylor expansion; and the
completeness of integrated gradients.
"""
import glob
import json
import os
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import edges_ref as er  # noqa: E402
import safetensors_io as st  # noqa: E402
import transformer_ref as ref  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")
MODELS = ["gpt2-tiny", "llama-tiny", "neox-tiny"]
# (clean, corrupt, answer, wrong): the prompts differ at position 2 only.
PROMPTS = {"gpt2-tiny": ([5, 17, 3, 9, 60, 2], [5, 17, 8, 9, 60, 2], 33, 55),
           "llama-tiny": ([1, 7, 33, 2, 9], [1, 7, 12, 2, 9], 18, 4),
           "neox-tiny": ([3, 17, 41, 2, 9, 60], [3, 17, 12, 2, 9, 60], 5, 25)}


def load(name):
    return er.Model(os.path.join(FIXTURES, "models", name))


def pair_of(model, name, direction="denoise", metric="logit_diff"):
    """The pair-corruption Pair of the model's test prompt."""
    clean, corrupt, answer, wrong = PROMPTS[name]
    clean_logits = er.run(model, model.embed(clean))[0]
    args = (metric, answer, wrong, torch.log_softmax(clean_logits[-1], dim=-1))
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    return er.Pair(model, model.embed(base), er.run(model, model.embed(source))[1], args)


def node_patch(model, tokens, site, rows, source_acts, args):
    """metric of transformer_ref's ordinary forward with `site` = (activation name, column
    slice) replaced on `rows` by the source run's."""
    site, cols = site

    def patch(act, x):
        if act != site:
            return x
        x = x.clone()
        x[rows, cols] = source_acts[act][rows, cols]
        return x

    return float(ref.metric_value(ref.forward(model.W, model.cfg, tokens, patch=patch)[0], *args))


# (d) the graph -------------------------------------------------------------------------------

def closed_form(L, H, G, parallel):
    """docs/edges.md: sum_l [(H + 2G)(1 + l(H+1)) + 1 + l(H+1) + H] + 1 + L(H+1), without the
    + H (same-layer heads into the MLP) under the parallel residual."""
    same_layer = 0 if parallel else H
    return sum((H + 2 * G) * (1 + l * (H + 1)) + 1 + l * (H + 1) + same_layer for l in range(L)) + 1 + L * (H + 1)


def test_edge_counts():
    gpt2_small = {"model_type": "gpt2", "n_layer": 12, "n_head": 12}
    llama3_8b = {"model_type": "llama", "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8}
    pythia_160m = {"model_type": "gpt_neox", "num_hidden_layers": 12, "num_attention_heads": 12}
    assert len(er.edge_graph(gpt2_small)) == 32491
    assert len(er.edge_graph(llama3_8b)) == 805681
    # EAP-IG's graph of Pythia-160m (edges-and-faithfulness.md, section 1.2) has 32,347 edges.
    assert len(er.edge_graph(pythia_160m)) == 32347 == closed_form(12, 12, 12, True)
    for cfg, shape in ((gpt2_small, (12, 12, 12, False)), (llama3_8b, (32, 32, 8, False))):
        assert len(er.edge_graph(cfg)) == closed_form(*shape)
    for name, count in zip(MODELS, (110, 82, 102)):
        assert len(er.edge_graph(load(name).cfg)) == count == closed_form(*er.graph_shape(load(name).cfg))


def test_parallel_residual_drops_same_layer_heads_into_mlp():
    edges = er.edge_graph(load("neox-tiny").cfg)
    assert ("L1.H0", "L1.mlp_in") not in edges and ("L0.H3", "L1.mlp_in") in edges
    assert ("L1.H0", "L1.mlp_in") in er.edge_graph(load("gpt2-tiny").cfg)


def test_edge_order_and_names():
    edges = er.edge_graph({"model_type": "gpt2", "n_layer": 12, "n_head": 12})
    names = [er.edge_name(e) for e in edges]
    assert names[:3] == ["embed->L0.H0.q", "embed->L0.H1.q", "embed->L0.H2.q"]
    assert names[12:14] == ["embed->L0.KV0.k", "embed->L0.KV1.k"]
    assert names[36:42] == ["embed->L0.mlp_in", "L0.H0->L0.mlp_in", "L0.H1->L0.mlp_in",
                            "L0.H2->L0.mlp_in", "L0.H3->L0.mlp_in", "L0.H4->L0.mlp_in"]
    assert names[-2:] == ["L11.H11->logits", "L11.mlp->logits"]
    for example in ("L3.H5->L5.H2.q", "embed->L0.KV1.k", "L4.H1->L4.mlp_in", "L2.mlp->logits"):
        assert example in names
    assert len(set(names)) == len(names)
    # Inputs in contract order, each one's upstream nodes in contract order.
    inputs = list(dict.fromkeys(v for _, v in edges))
    assert inputs == er.downstream_inputs(12, 12, 12)
    upstream = er.upstream_nodes(12, 12)
    for v in inputs:
        mine = [u for u, w in edges if w == v]
        assert mine == sorted(mine, key=upstream.index)


def test_filter_reads_kinds_and_layer_sets():
    edges = er.edge_graph(load("gpt2-tiny").cfg)
    spec = {"from": ["head", "mlp"], "to": ["q", "k", "logits"], "from_layers": [0], "to_layers": [1]}
    kept = er.select_edges(edges, spec)
    # layer-0 heads and MLP (5 nodes) into layer-1 queries and keys (8 inputs), and into logits
    assert len(kept) == 5 * 8 + 5
    assert ("L0.H2", "L1.KV3.k") in kept and ("L0.mlp", "logits") in kept
    assert ("embed", "logits") not in kept and ("L1.H0", "logits") not in kept and ("L0.H0", "L1.KV0.v") not in kept
    assert er.select_edges(edges, {"from": ["embed"], "to_layers": [0]}) == \
        [e for e in edges if e[0] == "embed" and not e[1].startswith("L1") and e[1] != "logits"] + [("embed", "logits")]
    assert er.select_edges(edges, {}) == edges == er.select_edges(edges, "all")


# the factorised forward pass -------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_factorised_forward_is_the_model(name):
    """Summing the upstream nodes' outputs per input gives transformer_ref's forward pass, and the
    heads' outputs add up to its attention output."""
    model = load(name)
    tokens = PROMPTS[name][0]
    logits, outs, xs = er.run(model, model.embed(tokens))
    want, acts = ref.forward(model.W, model.cfg, tokens)
    assert torch.allclose(logits, want, atol=1e-12, rtol=0)
    for l in range(model.L):
        heads = sum(outs[f"L{l}.H{h}"] for h in range(model.H))
        assert torch.allclose(heads + model.layers[l]["bo"], acts[f"L{l}.attn_out"], atol=1e-12, rtol=0)
        assert torch.allclose(outs[f"L{l}.mlp"], acts[f"L{l}.mlp_out"], atol=1e-12, rtol=0)
        assert torch.allclose(xs[f"L{l}.H0.q"], acts[f"L{l}.resid_pre"], atol=1e-12, rtol=0)
        mlp_reads = acts[f"L{l}.resid_pre"] if model.parallel else acts[f"L{l}.resid_mid"]
        assert torch.allclose(xs[f"L{l}.mlp_in"], mlp_reads, atol=1e-12, rtol=0)


# (a) completeness of the decomposition -------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_every_edge_patched_is_the_source_run(name, direction):
    """With every edge into every input carrying S's value at every position, every input reads
    S's stream: the metric is the source run's."""
    model, pair = load(name), pair_of(load(name), name, direction)
    clean, corrupt = PROMPTS[name][:2]
    source_tokens = clean if direction == "denoise" else corrupt
    source_metric = pair.metric(er.run(model, model.embed(source_tokens))[0])
    effect = pair.patched(lambda u, v, value: pair.source[u])
    assert abs(pair.base_metric + effect - source_metric) < 1e-10
    assert abs(source_metric - pair.base_metric) > 0.1  # and the check is not vacuous


@pytest.mark.parametrize("name", MODELS)
def test_all_edges_out_of_a_node_is_the_node_patch(name):
    """Patching every edge out of u (at one position or all) is transformer_ref's node patch of
    u's output: a head's z (its W_O slice is the head's output), an MLP's output, the embedding
    (= resid_pre of layer 0)."""
    model, pair = load(name), pair_of(load(name), name)
    clean, corrupt, answer, wrong = PROMPTS[name]
    source_acts = ref.forward(model.W, model.cfg, clean)[1]
    dh, children = model.dh, {}
    for u, v in er.edge_graph(model.cfg):
        children.setdefault(u, []).append(v)
    sites = {"embed": ("L0.resid_pre", slice(None)), "L0.H1": ("L0.z", slice(dh, 2 * dh)),
             f"L{model.L - 1}.H3": (f"L{model.L - 1}.z", slice(3 * dh, 4 * dh)), "L0.mlp": ("L0.mlp_out", slice(None))}
    for u, site in sites.items():
        for position in (-1, 2, 4):
            rows = slice(None) if position < 0 else slice(position, position + 1)
            want = node_patch(model, corrupt, site, rows, source_acts, pair.metric_args) - pair.base_metric
            mask = er.rows_of(position, pair.T)
            got = pair.patched(lambda w, v, value: torch.where(mask, pair.source[w], value) if w == u else value)
            assert abs(got - want) < 1e-10, (u, position)


@pytest.mark.parametrize("name", MODELS)
def test_all_edges_into_an_input_is_the_node_patch(name):
    """Patching every edge into v makes v read S's stream, so v's projection outputs S's value:
    transformer_ref's node patch of a head's query, a key/value head's keys or values (seen by
    every query head of its group), the MLP's output, or the logits."""
    model, pair = load(name), pair_of(load(name), name)
    clean, corrupt, answer, wrong = PROMPTS[name]
    source_acts = ref.forward(model.W, model.cfg, clean)[1]
    dh, last = model.dh, model.L - 1
    sites = {"L0.H2.q": ("L0.q", slice(2 * dh, 3 * dh)), f"L{last}.KV1.k": (f"L{last}.k", slice(dh, 2 * dh)),
             "L0.KV0.v": ("L0.v", slice(0, dh)), f"L{last}.mlp_in": (f"L{last}.mlp_out", slice(None)),
             "logits": (f"L{last}.resid_post", slice(None))}
    for v, site in sites.items():
        for position in (-1, 2, len(corrupt) - 1):
            rows = slice(None) if position < 0 else slice(position, position + 1)
            want = node_patch(model, corrupt, site, rows, source_acts, pair.metric_args) - pair.base_metric
            mask = er.rows_of(position, pair.T)
            got = pair.patched(lambda u, w, value: torch.where(mask, pair.source[u], value) if w == v else value)
            assert abs(got - want) < 1e-10, (v, position)


# (e) an unchanged upstream output has no effect ------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_unchanged_upstream_output_has_zero_effect(name):
    """The prompts differ at position 2, so at positions 0 and 1 every upstream output is the same
    in B and S (causal attention): every edge's exact effect and estimates there are 0."""
    model = load(name)
    pair = pair_of(model, name)
    edges = er.edge_graph(model.cfg)
    exact = np.array(er.exact_effects(pair, edges, [0, 1, 2]))
    estimates = er.all_estimates(pair, edges, [0, 1, 2], er.ESTIMATES, 3)
    assert np.abs(exact[:, :2]).max() < 1e-12
    for table in estimates.values():
        assert np.abs(np.array(table)[:, :2]).max() < 1e-12
    assert np.abs(exact[:, 2]).max() > 0.1  # position 2 does change things


# (b) EAP is the first-order term of the exact effect -------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("metric", ["logit_diff", "kl"])
def test_eap_is_the_linearisation(name, metric):
    """S = the run from B's embedding + eps * noise: each exact edge effect is the EAP estimate
    plus O(eps^2). (For kl the base is the corrupt run, so the gradient is not 0.)"""
    model = load(name)
    base = pair_of(model, name, "denoise", metric)
    eps = 1e-5
    noise = torch.randn(base.T, model.d, generator=torch.Generator().manual_seed(1))
    source = er.run(model, base.base["embed"] + eps * noise)[1]
    pair = er.Pair(model, base.base["embed"], source, base.metric_args)
    edges = er.edge_graph(model.cfg)
    columns = [-1, 3]
    exact = np.array(er.exact_effects(pair, edges, columns))
    eap = np.array(er.all_estimates(pair, edges, columns, ["eap"], 1)["eap"])
    scale = np.abs(eap).max()
    assert scale > 1e-6  # first order in eps: a visible signal
    assert np.abs(exact - eap).max() < 1e-3 * scale


# (c) integrated gradients are complete ---------------------------------------------------------

def ig_total(pair, edges, estimate, steps):
    """Sum of an IG estimate over `edges`, every position at once."""
    return sum(row[0] for row in er.all_estimates(pair, edges, [-1], [estimate], steps)[estimate])


@pytest.mark.parametrize("name", MODELS)
def test_integrated_gradients_are_complete(name):
    """For a component c (embed, an attention layer, an MLP), f(alpha) = metric with c's output
    c^S + alpha (c^B - c^S) has f'(alpha) = sum over edges out of c of (c^B - c^S) . g_v: c reaches
    the rest only through its edges. So the sum of eap_ig_act over the edges out of c is a right
    Riemann sum for f(0) - f(1), the exact effect of patching all those edges at once, with error
    a/m + O(1/m^2) (Euler-Maclaurin); Richardson's 2 I(2m) - I(m) removes the a/m. For embed the
    runs are those of eap_ig (the embedding is the input), so eap_ig is checked too."""
    model, pair = load(name), pair_of(load(name), name)
    edges = er.edge_graph(model.cfg)
    last = model.L - 1
    for component in ("embed", "L0.attn", "L0.mlp", f"L{last}.attn", f"L{last}.mlp"):
        out = [e for e in edges if er.component_of(e[0]) == component]
        target = pair.patched(lambda u, v, value: pair.source[u] if er.component_of(u) == component else value)
        estimates = ["eap_ig_act", "eap_ig"] if component == "embed" else ["eap_ig_act"]
        for estimate in estimates:
            extrapolated = 2 * ig_total(pair, out, estimate, 100) - ig_total(pair, out, estimate, 50)
            assert abs(extrapolated - target) < 2e-3 * (1 + abs(target)), (component, estimate)
    out_of_embed = [e for e in edges if e[0] == "embed"]
    five = er.all_estimates(pair, out_of_embed, [-1, 1], ["eap_ig", "eap_ig_act"], 5)
    assert np.allclose(five["eap_ig"], five["eap_ig_act"], atol=1e-12, rtol=0)


def test_kl_noise_gradient_is_zero():
    """Noise direction with kl: B is the clean run, where KL(clean || .) has its minimum."""
    model = load("llama-tiny")
    pair = pair_of(model, "llama-tiny", "noise", "kl")
    eap = np.array(er.all_estimates(pair, er.edge_graph(model.cfg), [-1], ["eap"], 1)["eap"])
    assert np.abs(eap).max() < 1e-12


# the committed fixtures ------------------------------------------------------------------------

JOBS = sorted(glob.glob(os.path.join(FIXTURES, "jobs", "edges-*.json")))


@pytest.mark.parametrize("path", JOBS, ids=[os.path.basename(p) for p in JOBS])
def test_fixture_is_current(path):
    """The committed golden file is what gen_edges.py computes now, names and all."""
    import gen_edges

    name = os.path.splitext(os.path.basename(path))[0]
    golden_path = os.path.join(FIXTURES, "golden", f"{name}.safetensors")
    golden = st.read(golden_path)
    with open(golden_path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    job = er.EdgeJob.from_file(path)
    assert json.loads(header["__metadata__"]["edges"]) == [er.edge_name(e) for e in job.edges]
    assert json.loads(header["__metadata__"]["positions"]) == job.columns
    tables = gen_edges.job_tables(job)
    assert sorted(golden) == sorted(tables)
    for key, want in tables.items():
        got = golden[key]
        assert got.dtype == np.float32 and got.shape == want.shape, key
        assert (np.isnan(got) == np.isnan(want)).all(), key
        ok = ~np.isnan(want)
        assert np.allclose(got[ok], want[ok], rtol=1e-6, atol=1e-6), key


def test_gaussian_noise_is_the_node_fixtures_noise():
    """The edge jobs draw the noise the node sweep's reference draws (gen_effects.py)."""
    import gen_effects

    edge_job = er.EdgeJob.from_file(os.path.join(FIXTURES, "jobs", "edges-gpt2-gaussian.json"))
    node_job = gen_effects.JobReference(os.path.join(FIXTURES, "jobs", "gpt2-gaussian.json"))
    node_job.params = edge_job.params
    for p, s in ((0, 0), (1, 1)):
        assert torch.equal(edge_job.noise(p, s, 6), node_job.noise_for(p, s, 6))
