"""The report builds from real and synthetic files, contains every figure, and every figure has a
title, axis labels and units."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import analysis
from analysis import figures
from analysis.figures import plt  # pyplot with the package's backend (Agg)
from conftest import ROOT, run_job, write_synthetic

EXPECTED = ["layers", "heads", "heads_z", "heads_q", "heads_k", "heads_v", "neurons", "spread", "scatter_atp",
            "scatter_atp_qk", "scatter_atp_star", "verification", "recall"]


def axes_are_labelled(fig, what):
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            assert ax.get_ylabel(), f"{what}: a colour bar has no label"
            assert "Δ" in ax.get_ylabel() or "(" in ax.get_ylabel(), f"{what}: colour bar label without units"
            continue
        if not ax.has_data():
            continue
        assert ax.get_title() or fig._suptitle, f"{what}: an axis has no title"
        assert ax.get_xlabel() and ax.get_ylabel(), f"{what}: an axis lacks a label"
        assert "(" in ax.get_ylabel() or "(" in ax.get_xlabel() or ax.get_ylabel() in ("layer", "layer.head"), \
            f"{what}: no units in {ax.get_xlabel()!r} / {ax.get_ylabel()!r}"


def test_every_figure_is_labelled(real_file):
    r = analysis.load(real_file)
    made = {
        "layers": figures.layer_sites(r), "heads": figures.heads_summed(r), "neurons": figures.neuron_distribution(r),
        "spread": figures.prompt_spread(r), "verification": figures.verification_curve(r), "recall": figures.recall_curve(r),
    }
    made.update({f"heads_{s}": figures.heads_by_position(r, s) for s in "zqkv"})
    made.update({f"scatter_{e}": figures.estimate_scatter(r, e) for e in r.estimates})
    for name, fig in made.items():
        assert fig is not None, f"{name} was not drawn"
        axes_are_labelled(fig, name)
        plt.close(fig)


@pytest.fixture(scope="module")
def real_report(real_file, tmp_path_factory):
    """The report of the real file, built once (two prompts drilled down): its folder and text."""
    folder = tmp_path_factory.mktemp("report")
    return folder, open(analysis.report(real_file, str(folder), prompts=2)).read()


def test_report_contains_every_figure(real_report):
    folder, text = real_report
    for name in EXPECTED:
        assert f"src='{name}.png'" in text, f"{name} missing from the report"
        assert os.path.getsize(folder / f"{name}.png") > 5000
    for section in ("Baselines", "Largest effects", "Attention heads", "MLP neurons", "worst false negatives",
                    "What verifying in an estimator", "Provenance"):
        assert section in text, f"section {section!r} missing"
    assert re.search(r"ratio of means", text) and "compute seconds: exact" in text


def test_report_on_unfinished_and_synthetic_files(unfinished_file, tmp_path):
    text = open(analysis.report(unfinished_file, str(tmp_path / "u"))).read()
    assert "Incomplete" in text
    exact = np.arange(12, dtype=float).reshape(2, 3, 2)
    path = write_synthetic(str(tmp_path / "s.h5"), exact, {"atp": exact * 0.5})
    text = open(analysis.report(path, str(tmp_path / "s"))).read()
    assert "layers.png" in text and "verification.png" in text


def test_command_line(real_file, tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "analysis", "report", real_file,
                        "-o", str(tmp_path / "cli")], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stdout.strip().endswith("index.html"), p.stderr[-2000:]
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    p = subprocess.run([sys.executable, "-m", "analysis", "report", str(bad), "-o", str(tmp_path / "x")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 2 and p.stderr.startswith("analysis: ") and len(p.stderr.strip().splitlines()) == 1


def table_row(text, first_cells):
    """The cells of the first table row whose leading cells are `first_cells`."""
    for row in re.findall(r"<tr>(.*?)</tr>", text):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        if cells[:len(first_cells)] == first_cells:
            return cells
    raise AssertionError(f"no row starting {first_cells}")


def test_report_ranks_ties_together_and_warns_of_zero_ties(tmp_path):
    """AtP* exactly 0 on nodes 0, 2 and 3 (node 0 the most important): in the largest-effects
    table each of them ranks 6 by atp_star, the end of the tie block, and a warning says so."""
    from test_metrics import EXACT, ZEROS
    path = write_synthetic(str(tmp_path / "z.h5"), EXACT, {"atp_star": ZEROS})
    text = open(analysis.report(path, str(tmp_path / "z"))).read()
    assert table_row(text, ["1", "L0.resid_pre0"])[-1] == "6"
    assert table_row(text, ["3", "L0.resid_pre2"])[-1] == "6"
    assert table_row(text, ["2", "L0.resid_pre1"])[-1] == "1"
    assert "class='warn'" in text and "atp_star is exactly 0 on 3 cells whose exact effect is not 0" in text


def test_report_on_estimates_only(estimates_only_file, tmp_path):
    """No /effects/exact: the report says so plainly, draws each estimator and compares them."""
    text = open(analysis.report(estimates_only_file, str(tmp_path / "e"))).read()
    assert "This file holds estimates only" in text and "Every number is an <b>exact</b>" not in text
    for name in ("layers_atp", "layers_atp_qk", "layers_atp_star", "heads_atp", "heads_atp_star", "heads_z_atp_qk",
                 "estimators"):
        assert f"src='{name}.png'" in text, f"{name} missing from the report"
        assert os.path.getsize(tmp_path / "e" / f"{name}.png") > 5000
    assert "Largest estimates" in text and "Estimators against each other" in text and "Spearman" in text
    r = analysis.load(estimates_only_file)
    made = {f"layers {of}": figures.layer_sites(r, of) for of in r.estimates}
    made.update({f"heads {of}": figures.heads_summed(r, of) for of in r.estimates})
    made["estimators"] = figures.estimators_against_each_other(r)
    for name, fig in made.items():
        axes_are_labelled(fig, name)
        plt.close(fig)


def header_of(text):
    """The report's first paragraph after the title, tags removed."""
    return re.sub(r"<[^>]+>", "", re.search(r"</h1>\s*<p>(.*?)</p>", text, re.S).group(1))


def test_report_header_names_window_metric_corruption_direction(estimates_only_file, tmp_path):
    text = open(analysis.report(estimates_only_file, str(tmp_path / "h"))).read()
    header = header_of(text)
    for part in ("window 2", "metric logit_diff", "corruption pair", "direction denoise"):
        assert part in header, f"{part!r} not in the header: {header}"


@pytest.mark.parametrize("job", ["gpt2-mean", "llama-zero", "gpt2-gaussian", "llama-window-estimates"])
def test_report_prints_no_runtime_warnings(job, tmp_path):
    """Mean and zero corruption have no source run (its baseline is NaN): every mean, min and
    ratio over it must be skipped, not left to warn. Run as a user would, with RuntimeWarnings
    turned into errors (test_command_line does the same on the pair job)."""
    path = run_job(str(tmp_path), job)
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "analysis", "report", path,
                        "-o", str(tmp_path / "report")], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "Warning" not in p.stderr, p.stderr[-2000:]


def section(text, title):
    """The report's text from the heading `title` to the next heading."""
    start = text.index(f"<h2>{title}")
    end = text.find("<h2>", start + 4)
    return text[start:end if end > 0 else len(text)]


def trivial_file(tmp_path):
    """Nodes resid_pre, attn_out, resid_post; both prompts' source token differs at position 1.
    The residual-stream cells there carry the largest effects (10, 9); attn_out's are 3 and 2."""
    exact = np.zeros((2, 3, 3))
    exact[:, 0, 1], exact[:, 2, 1], exact[:, 1, 2], exact[:, 1, 1] = 10.0, 9.0, 3.0, 2.0
    exact[:, 0, 2] = 0.5
    return write_synthetic(str(tmp_path / "trivial.h5"), exact, {}, sites=["resid_pre", "attn_out", "resid_post"],
                           source_tokens=np.array([[0, 5, 0], [0, 6, 0]]))


def test_report_hides_trivial_cells_on_request(tmp_path):
    path = trivial_file(tmp_path)
    shown = section(open(analysis.report(path, str(tmp_path / "shown"))).read(), "Largest effects")
    assert table_row(shown, ["1", "L0.resid_pre0"]) and table_row(shown, ["3", "L0.attn_out1"])
    assert "trivial" in shown
    text = open(analysis.report(path, str(tmp_path / "hidden"), hide_trivial=True)).read()
    hidden = section(text, "Largest effects")
    assert "L0.resid_pre0</td><td class='l'>1" not in hidden and "L0.resid_post2</td><td class='l'>1" not in hidden
    assert table_row(hidden, ["3", "L0.attn_out1"]) and table_row(hidden, ["5", "L0.resid_pre0", "2"])
    assert "where the base and source inputs differ" in text and "2 trivial cells hidden" in text
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "analysis", "report", path, "-o", str(tmp_path / "cli"), "--hide-trivial"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert "2 trivial cells hidden" in open(tmp_path / "cli" / "index.html").read()


def test_normalised_heatmaps_beside_the_raw_ones(real_file, real_report):
    """(patched − base)/(source − base) per prompt, then averaged: the mean of ratios, labelled so."""
    r = analysis.load(real_file)
    np.testing.assert_allclose(figures.cell_values(r, normalized=True), analysis.normalized(r, "mean_of_ratios"))
    for name, fig in (("layers", figures.layer_sites(r, normalized=True)), ("heads", figures.heads_summed(r, normalized=True)),
                      ("heads_z", figures.heads_by_position(r, "z", normalized=True))):
        axes_are_labelled(fig, f"{name} normalised")
        bars = [ax.get_ylabel() for ax in fig.axes if ax.get_label() == "<colorbar>"]
        assert bars and all("(source − base)" in b and "per prompt, then averaged" in b for b in bars), bars
        plt.close(fig)
    text = real_report[1]
    for name in ("layers", "heads", "heads_z"):
        assert re.search(rf"<div class='row'><figure><img src='{name}.png'.*?</figure><figure><img src='{name}_normalized.png'",
                         text, re.S), f"{name}: no normalised heatmap beside the raw one"


def test_no_normalised_heatmaps_without_a_source_run(tmp_path):
    path = run_job(str(tmp_path), "gpt2-mean")
    text = open(analysis.report(path, str(tmp_path / "m"))).read()
    assert "_normalized.png" not in text and "normalised effects are undefined" in text
    assert figures.layer_sites(analysis.load(path), normalized=True) is None


def test_per_prompt_drill_down(real_file, real_report, tmp_path):
    """One section per prompt for the first few, each with that prompt's own tokens on the axis:
    prompt 1 is 8 tokens long and its source differs at position 2 (base token → source token)."""
    r = analysis.load(real_file)
    fig = figures.layer_sites(r, prompt=1)
    axes_are_labelled(fig, "layers, prompt 1")
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    base, source = r.token_strings[1], r.source_token_strings[1]
    assert ticks[0] == f"0: {base[0]}" and ticks[2] == f"2: {base[2]}→{source[2]}" and ticks[8] == "8"
    assert "prompt 1" in fig.axes[0].get_xlabel()
    plt.close(fig)
    drill = section(real_report[1], "Prompt by prompt")
    for p in (0, 1):
        assert f"<h3>Prompt {p}" in drill and f"src='prompt{p}_layers.png'" in drill
    assert "<h3>Prompt 2" not in drill and "first 2 of 3 prompts" in drill
    env = dict(os.environ, PYTHONPATH=ROOT)
    small = trivial_file(tmp_path)
    p = subprocess.run([sys.executable, "-m", "analysis", "report", small, "-o", str(tmp_path / "cli"), "--prompts", "1"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    drill = section(open(tmp_path / "cli" / "index.html").read(), "Prompt by prompt")
    assert "<h3>Prompt 0" in drill and "<h3>Prompt 1" not in drill
