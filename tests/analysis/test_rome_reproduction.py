"""The causal-tracing reproduction of the README ("Causal tracing, as ROME"): the four jobs of
jobs/causal_trace/ on the embedded fact-recall model models/facts-6l, ROME's findings checked on
the numbers, and the figures drawn by `python3 -m analysis trace`.

What is checked, and why each can fail:
- the facts are known (clean p(answer) > 0.5) and the noise destroys most of them (ROME's setup);
- restoring the hidden state of the last position in the last layer restores the clean run
  exactly (effect = source - base per prompt, to float32 round-off): the patching is right;
- ROME's early site: in the first three layers, the hidden state at the last subject token
  carries more than any other position's; the MLP outputs there matter in the first layers and
  little later;
- ROME's late site: the hidden state and the attention output at the last token dominate in the
  late layers;
- severing: in the last two layers, holding a sublayer at the subject position changes nothing,
  bit for bit (nothing downstream reads it); in the first layers, severing attention lowers the
  early site's effect while severing the MLPs does not (this model finishes its lookup inside
  layer 0's MLP; the README reports it as this model's finding, not ROME's).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import analysis
from analysis import causal_trace as ct
from conftest import BINARY, ROOT

JOBS = ("hidden", "mlp_attn", "sever_mlp", "sever_attn")
LAST_SUBJECT, LAST = ct.ROLES.index("last subject token"), ct.ROLES.index("last token")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("rome"))
    out = {}
    for name in JOBS:
        source = os.path.join(ROOT, "jobs", "causal_trace", name + ".json")
        job = json.load(open(source))
        here = os.path.dirname(source)
        job["model"] = os.path.normpath(os.path.join(here, job["model"]))
        job["prompts_file"] = os.path.normpath(os.path.join(here, job["prompts_file"]))
        job["output"] = os.path.join(tmp, name + ".h5")
        path = os.path.join(tmp, name + ".json")
        json.dump(job, open(path, "w"))
        subprocess.run([BINARY, "run", path, "--quiet"], check=True, timeout=600)
        out[name] = analysis.load(job["output"])
    out["tmp"] = tmp
    return out


def test_the_facts_are_known_and_the_noise_hides_them(traced):
    r = traced["hidden"]
    assert len(r.lengths) == 40 and r.metric == "prob"
    assert (r.source > 0.5).all()  # ROME traces facts the model knows
    assert np.mean(r.base) < 0.5 * np.mean(r.source)


def test_restoring_the_last_state_restores_the_clean_run(traced):
    for name in ("hidden", "sever_mlp", "sever_attn"):
        r = traced[name]
        k = r.nodes("resid_post", layer=int(r.model_config["n_layer"]) - 1)[0]
        last = np.array([r.exact[p, k, r.lengths[p] - 1] for p in range(len(r.lengths))])
        assert np.allclose(last, r.source - r.base, atol=2e-6), name  # float32 probabilities


def test_early_site_at_the_last_subject_token(traced):
    hidden, _ = ct.role_means(traced["hidden"], "resid_post")
    for layer in range(3):
        others = np.delete(hidden[:, layer], LAST_SUBJECT)
        assert hidden[LAST_SUBJECT, layer] > np.nanmax(others), layer
    mlp, _ = ct.role_means(traced["mlp_attn"], "mlp_out")
    assert mlp[LAST_SUBJECT, :2].min() > 3 * np.abs(mlp[LAST_SUBJECT, 2:]).max()


def test_late_site_at_the_last_token(traced):
    hidden, _ = ct.role_means(traced["hidden"], "resid_post")
    L = hidden.shape[1]
    for layer in (L - 2, L - 1):
        assert hidden[LAST, layer] > 2 * np.nanmax(np.delete(hidden[:, layer], LAST))
    attn, _ = ct.role_means(traced["mlp_attn"], "attn_out")
    peak = int(np.argmax(attn[LAST]))
    assert peak >= L // 2 and attn[LAST, peak] > 2 * np.nanmax(np.delete(attn[:, peak], LAST))


def test_severed_paths(traced):
    lines = ct.severed([traced[name] for name in ("hidden", "sever_mlp", "sever_attn")])
    L = len(lines["none"])
    for kind in ("mlp", "attn"):  # nothing reads a late sublayer at the subject position
        assert np.array_equal(lines[kind][L - 2:], lines["none"][L - 2:]), kind
    assert (lines["attn"][:3] < 0.8 * lines["none"][:3]).all()
    assert (lines["mlp"][:3] > 0.9 * lines["none"][:3]).all()


def test_the_figures(traced):
    out = os.path.join(traced["tmp"], "figures")
    files = [traced[name].path for name in JOBS]
    p = subprocess.run([sys.executable, "-m", "analysis", "trace", *files, "-o", out, "--prompts", "1"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    for png in ("causal_trace.png", "causal_trace_severed.png", "causal_trace_prompt0.png"):
        assert os.path.getsize(os.path.join(out, png)) > 10_000, png
    page = open(os.path.join(out, "index.html")).read()
    assert "hidden.h5" in page and "sever_attn.h5" in page
