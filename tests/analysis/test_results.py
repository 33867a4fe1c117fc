"""load() on files written by the real binary, finished and unfinished."""
import h5py
import numpy as np
import pytest

import analysis
from conftest import write_synthetic


def test_load_real_file(real_file):
    r = analysis.load(real_file)
    P, N, S = r.shape
    assert (P, N, S) == (3, 298, 10)
    assert r.exact.shape == (P, N, S) and r.exact.dtype == np.float32
    assert set(r.estimates) == {"atp", "atp_qk", "atp_star"}
    assert r.node_names[0] == "L0.resid_pre" and "L1.H3.z" in r.node_names and "L1.N127" in r.node_names
    assert r.sites == ["resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post", "z", "q", "k", "v", "mlp_post"]
    assert list(r.nodes("z", layer=1)) == [r.node_names.index(f"L1.H{h}.z") for h in range(4)]
    assert r.complete and r.metric == "logit_diff"
    # the second prompt has 8 tokens: its columns 8 and 9 are not computed, every other cell is
    assert not r.computed[1, :, 8:].any() and r.computed[1, :, :8].all() and r.computed[0].all()
    assert np.isnan(r.exact[1, :, 8:]).all() and not np.isnan(r.exact[~np.isnan(r.exact)]).any()
    # token strings from the model's tokenizer (byte-level: "Ġw17" reads " w17")
    assert r.token_strings[0][1] == " w17" and r.position_labels()[1] == "1:  w17"
    with h5py.File(real_file, "r") as f:
        assert np.array_equal(r.base, f["baseline/base"][:, 0]) and r.metrics == ["logit_diff"]
    assert r.seconds_per_patch() > 0


def test_normalized_views(real_file):
    r = analysis.load(real_file)
    gap = r.source - r.base
    per_prompt = analysis.normalized(r, "per_prompt")
    np.testing.assert_allclose(per_prompt[2, 5, 3], r.exact[2, 5, 3] / gap[2], rtol=1e-6)
    np.testing.assert_allclose(analysis.normalized(r, "mean_of_ratios"), np.nanmean(per_prompt, axis=0), rtol=1e-6)
    # prompt 1 has 8 tokens: column 8's ratio of means is over prompts 0 and 2 alone, gaps included
    ratio_of_means = analysis.normalized(r, "ratio_of_means")
    for n in (0, 5, 100):
        np.testing.assert_allclose(ratio_of_means[n, 8], np.mean(r.exact[[0, 2], n, 8]) / np.mean(gap[[0, 2]]), rtol=1e-5)
        np.testing.assert_allclose(ratio_of_means[n, 3], np.mean(r.exact[:, n, 3]) / np.mean(gap), rtol=1e-5)
    with pytest.raises(ValueError):
        analysis.normalized(r, "sideways")


def test_normalized_known_prompts_of_different_lengths(tmp_path):
    """Three prompts, the second one token shorter (its column 2 is NaN, as past a prompt's end),
    gaps 2, 10, 6; node 1's prompt 0 not computed. Written out by hand:
      node 0, column 1: mean effect (1 + 5 + 3)/3 = 3 over mean gap (2 + 10 + 6)/3 = 6 -> 0.5
      node 0, column 2: prompts 0 and 2 only: (2 + 3)/2 = 2.5 over (2 + 6)/2 = 4 -> 0.625
                        (not 2.5 / 6: the short prompt's gap has no cell there)
      node 1, column 0: prompts 1 and 2: (1 + 3)/2 = 2 over (10 + 6)/2 = 8 -> 0.25
      node 1, column 2: prompt 2 alone: 3 / 6 -> 0.5
    and the mean of per-prompt ratios, node 0 column 2: (2/2 + 3/6)/2 = 0.75."""
    nan = np.nan
    exact = np.array([[[0.0, 1.0, 2.0], [nan, nan, nan]],
                      [[0.0, 5.0, nan], [1.0, 2.0, nan]],
                      [[0.0, 3.0, 3.0], [3.0, 3.0, 3.0]]])
    path = write_synthetic(str(tmp_path / "lengths.h5"), exact, {}, base=np.array([1.0, 0.0, 2.0]),
                           source=np.array([3.0, 10.0, 8.0]), lengths=[3, 2, 3])
    r = analysis.load(path)
    ratio_of_means = analysis.normalized(r, "ratio_of_means")
    np.testing.assert_allclose(ratio_of_means[0], [0.0, 0.5, 0.625])
    np.testing.assert_allclose(ratio_of_means[1], [0.25, 0.3125, 0.5])  # column 1: (2 + 3)/2 over 8
    np.testing.assert_allclose(analysis.normalized(r, "mean_of_ratios")[0], [0.0, 0.5, 0.75])
    assert np.isnan(analysis.normalized(r, "per_prompt")[1, 0, 2])


def test_unfinished_file(unfinished_file, real_file):
    r, full = analysis.load(unfinished_file), analysis.load(real_file)
    assert not r.complete
    # computed cells are exactly those of units flagged done, and hold the finished run's values
    assert 0 < r.computed.mean() < full.computed.mean()
    assert np.array_equal(r.exact[r.computed], full.exact[r.computed])
    assert np.isnan(r.exact[~r.computed]).all()


def test_not_a_results_file(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "something else"
    with pytest.raises(ValueError, match="not a patchsweep results file"):
        analysis.load(str(path))
