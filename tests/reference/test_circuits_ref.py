"""Checks of the circuit evaluator (circuits_ref.py) against the edge reference and
transformer_ref's node patches:

    /usr/bin/python3 -m pytest tests/reference/test_circuits_ref.py
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import circuits_ref as cr  # noqa: E402
import edges_ref as er  # noqa: E402
import transformer_ref as ref  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")
JOBS = os.path.join(FIXTURES, "jobs")
PAIR_JOB = {"model": "../models/llama-tiny", "metric": "logit_diff",
            "prompts": [{"clean": [1, 7, 33, 2, 9], "corrupt": [1, 7, 12, 2, 9], "answer": 18, "wrong": 4},
                        {"clean": [1, 3, 18, 44, 30], "corrupt": [1, 3, 18, 5, 30], "answer": 10, "wrong": 27}]}


def runs_metric(job, tokens_key):
    """metric of each prompt's plain run of `tokens_key` (clean or corrupt)."""
    out = []
    for p, prompt in enumerate(job.prompts):
        pair = job.pairs(p)[0]
        out.append(pair.metric(er.run(job.model, job.model.embed(prompt[tokens_key]))[0]))
    return np.array(out)


def test_full_and_empty_circuits_are_the_clean_and_corrupt_runs():
    job = cr.circuit_job(PAIR_JOB, JOBS)
    everything = er.edge_graph(job.model.cfg)
    assert np.allclose(cr.evaluate(job, edges=everything), runs_metric(job, "clean"), atol=1e-10, rtol=0)
    assert np.allclose(cr.evaluate(job, edges=[]), runs_metric(job, "corrupt"), atol=1e-10, rtol=0)
    assert np.allclose(cr.evaluate(job, nodes=[]), runs_metric(job, "corrupt"), atol=1e-10, rtol=0)


@pytest.mark.parametrize("corruption", ["pair", "mean", "zero", {"resample": {"seed": 2}}])
def test_circuit_without_one_edge_is_that_edge_patched(corruption):
    """Everything but one edge kept: the clean run with that one edge ablated at every position,
    which is the exact edge effect of the noise direction."""
    job = cr.circuit_job(dict(PAIR_JOB, corruption=corruption), JOBS)
    everything = er.edge_graph(job.model.cfg)
    pairs = [job.pairs(p)[0] for p in range(len(job.prompts))]
    for edge in (("embed", "L0.KV1.v"), ("L0.H2", "L1.H3.q"), ("L0.mlp", "L1.mlp_in"), ("L1.H0", "logits")):
        got = cr.evaluate(job, edges=[e for e in everything if e != edge])
        want = [pair.base_metric + pair.exact(edge, -1) for pair in pairs]
        assert np.allclose(got, want, atol=1e-10, rtol=0), edge


def test_node_circuit_without_a_head_is_the_head_patched():
    """Every node but one head kept: transformer_ref's clean run with that head's z replaced by
    the corrupt run's at every position."""
    job = cr.circuit_job(PAIR_JOB, JOBS)
    model, dh = job.model, job.model.dh
    nodes = [u for u in er.upstream_nodes(model.L, model.H) if u != "L0.H1"]
    got = cr.evaluate(job, nodes=nodes)
    for p, prompt in enumerate(job.prompts):
        corrupt = ref.forward(model.W, model.cfg, prompt["corrupt"])[1]

        def patch(name, x):
            if name != "L0.z":
                return x
            x = x.clone()
            x[:, dh:2 * dh] = corrupt[name][:, dh:2 * dh]
            return x

        logits = ref.forward(model.W, model.cfg, prompt["clean"], patch=patch)[0]
        want = float(ref.metric_value(logits, *job.pairs(p)[0].metric_args))
        assert abs(got[p] - want) < 1e-10


def test_in_circuit_edges_carry_current_values():
    """With every edge into head L0.H0 ablated (GPT-2: no grouping, so KV0 is that head's alone),
    the head computes exactly its corrupt-run output, so its out-edges carry the corrupt value
    whether they are in the circuit or not: in-circuit edges carry the current value, not the
    clean one."""
    job = cr.circuit_job(dict(PAIR_JOB, model="../models/gpt2-tiny",
                              prompts=[{"clean": [5, 17, 3, 9, 60, 2], "corrupt": [5, 17, 8, 9, 60, 2],
                                        "answer": 33, "wrong": 55}]), JOBS)
    everything = er.edge_graph(job.model.cfg)
    into_head = {("embed", "L0.H0.q"), ("embed", "L0.KV0.k"), ("embed", "L0.KV0.v")}
    out_of_head = {e for e in everything if e[0] == "L0.H0"}
    starved = [e for e in everything if e not in into_head]
    assert np.allclose(cr.evaluate(job, edges=starved),
                       cr.evaluate(job, edges=[e for e in starved if e not in out_of_head]), atol=1e-12, rtol=0)
    # ... while ablating the out-edges of a head that does see the clean prompt changes the metric.
    assert abs(cr.evaluate(job, edges=everything)[0] -
               cr.evaluate(job, edges=[e for e in everything if e not in out_of_head])[0]) > 1e-3


# ---- evaluate_choices: every choice of docs/circuits.md ---------------------------------------------
ONE_LENGTH = dict(PAIR_JOB, positions="each",
                  prompts=PAIR_JOB["prompts"] + [{"clean": [1, 9, 9, 2, 50], "corrupt": [1, 9, 4, 2, 50], "answer": 3, "wrong": 8}])
HAND = ["embed->L0.H1.q", "embed->L0.KV1.k", "L0.H2->L1.KV0.v", "L0.mlp->L1.mlp_in", "L1.H3->logits", "L1.mlp->logits"]


def names_of(edges):
    return [er.edge_name(e) for e in edges]


def test_full_and_empty_under_every_choice():
    job = ONE_LENGTH
    everything = names_of(er.edge_graph(er.Model(os.path.join(FIXTURES, "models", "llama-tiny")).cfg))
    choices = [(g, a) for g in ("edges", "nodes") for a in ("pair", "mean", "zero", {"resample": {"seeds": 2}})]
    full, empty, values = cr.evaluate_choices(job, JOBS, [{"edges": everything}, {"edges": []}], choices)
    assert np.allclose(values[0], full[None], atol=1e-10, rtol=0)
    assert np.allclose(values[1], empty, atol=1e-10, rtol=0)
    assert np.allclose(empty[0, :, 0], runs_metric(cr.circuit_job(job, JOBS), "corrupt"), atol=1e-10, rtol=0)


def test_specific_at_every_position_is_position_independent():
    job = ONE_LENGTH
    every = [f"{n}@{t}" for n in HAND for t in range(5)]
    _, _, values = cr.evaluate_choices(job, JOBS, [{"edges": HAND}, {"edges": every, "specific": True}],
                                       [("edges", "pair"), ("edges", "zero"), ("nodes", "pair")])
    assert np.allclose(values[0], values[1], atol=1e-10, rtol=0)


def test_specific_differs_from_independent():
    """Values of the corrupted position read at the last one: kept there or not."""
    job = ONE_LENGTH
    reads = ["embed->L0.KV1.v", "L0.H2->logits", "L0.H3->logits"]
    _, _, values = cr.evaluate_choices(job, JOBS, [{"edges": reads}, {"edges": [n + "@4" for n in reads], "specific": True}],
                                       [("edges", "pair")])
    assert np.abs(values[0] - values[1]).max() > 1e-3


def test_node_granularity_is_the_derived_node_circuit():
    """Nodes of an edge circuit: its upstream ends and the owners of its downstream ends
    (embed->L0.KV1.k makes L0.H2 and L0.H3 nodes under GQA with two query heads per group)."""
    job = ONE_LENGTH
    derived = ["embed", "L0.H1", "L0.H2", "L0.H3", "L0.mlp", "L1.H0", "L1.H1", "L1.mlp", "L1.H3"]
    _, _, values = cr.evaluate_choices(job, JOBS, [{"edges": HAND}, {"nodes": derived}], [("nodes", "mean"), ("edges", "mean")])
    assert np.allclose(values[0, 0], values[1, 0], atol=1e-10, rtol=0)
    assert np.allclose(values[1, 0], values[1, 1], atol=1e-10, rtol=0)  # a node set is the same at both granularities
    assert np.abs(values[0, 0] - values[0, 1]).max() > 1e-3  # Miller's node/edge gap


def test_resample_seeds_average_single_seeds():
    job = ONE_LENGTH
    _, empty, values = cr.evaluate_choices(job, JOBS, [{"edges": HAND}],
                                           [("edges", {"resample": {"seeds": 3, "seed": 1}})] +
                                           [("edges", {"resample": {"seed": s}}) for s in (1, 2, 3)])
    assert np.allclose(values[0, 0], values[0, 1:].mean(0), atol=1e-10, rtol=0)
    assert np.allclose(empty[0], empty[1:].mean(0), atol=1e-10, rtol=0)


def test_mean_over_a_prompt_set():
    job = ONE_LENGTH
    same = {"mean": {"prompts_file": "same.jsonl", "prompts": [{"clean": p["clean"]} for p in job["prompts"]]}}
    other = {"mean": {"prompts_file": "abc.jsonl", "prompts": [{"clean": [2, 5, 40, 11, 9]}, {"clean": [1, 30, 12, 6, 21]}]}}
    _, _, values = cr.evaluate_choices(job, JOBS, [{"edges": HAND}], [("edges", "mean"), ("edges", same), ("edges", other)])
    assert np.allclose(values[0, 0], values[0, 1], atol=1e-10, rtol=0)
    assert np.abs(values[0, 0] - values[0, 2]).max() > 1e-3
