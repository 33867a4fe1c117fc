"""Causal tracing as ROME reports it (Meng et al. 2022): the effect of restoring one state of the
clean run in the noised run, averaged over prompts by the position's role relative to the
subject, and the figures ROME draws: Figure 1 (role x layer for the hidden state, MLP and
attention outputs) and Figure 2's comparison (the hidden state restored with the MLP or the
attention paths severed).

Input: results files of gaussian-noise jobs whose prompts name their subject (`noise_positions`,
or the corruption's `positions` for all of them). With `metric: "prob"` and `direction:
"denoise"` the stored effect is ROME's indirect effect: p(answer) restored minus p(answer)
noised.

Roles (ROME's `read_knowlege`): each position after the subject's start has one role; the last
position is always "last token", the subject's last token "last subject token" (a one-token
subject has no "first subject token"), the positions strictly between its first and last
"middle subject tokens", the position right after the subject "first subsequent token", and
the rest up to the last position "further tokens". Positions before the subject have none.
Within a prompt, a role spanning several positions is their mean; across prompts, the mean over
the prompts that have that role (ROME divides by every prompt, counting an absent role as 0).
"""
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap, TwoSlopeNorm  # noqa: E402

ROLES = ("first subject token", "middle subject tokens", "last subject token", "first subsequent token",
         "further tokens", "last token")
HIDDEN_SITES = ("resid_post", "resid_pre", "resid_mid")
SITE_TITLES = {"resid_post": "hidden state (resid_post)", "resid_pre": "hidden state (resid_pre)",
               "resid_mid": "hidden state (resid_mid)", "mlp_out": "MLP output", "attn_out": "attention output"}
SITE_COLOURS = {"mlp_out": "darkgreen", "attn_out": "darkred"}  # ROME's colours; hidden states purple


def _heatmap(ax, fig, data, site, label):
    """White at 0, the site's colour (ROME's) for positive effects, blue for negative ones, on one
    scale for both signs."""
    finite = data[np.isfinite(data)]
    span = max(float(np.abs(finite).max()) if finite.size else 0.0, 1e-12)
    cmap = LinearSegmentedColormap.from_list(site, ["tab:blue", "white", SITE_COLOURS.get(site, "indigo")])
    image = ax.imshow(data, cmap=cmap, norm=TwoSlopeNorm(0.0, -span, span), aspect="auto", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02).set_label(label, fontsize=8)


def subject_positions(r, p):
    """The positions noised in prompt p (its subject), from the job stored in the file."""
    corruption = r.job.get("corruption")
    if not isinstance(corruption, dict) or "gaussian" not in corruption:
        raise ValueError(f"{r.path}: causal tracing needs a gaussian-noise job (this one is {corruption!r})")
    own = r.job["prompts"][p].get("noise_positions")
    return list(own if own is not None else corruption["gaussian"]["positions"])


def token_roles(r, p):
    """Role index (into ROLES) of each position of prompt p; -1 before the subject."""
    subject, T = subject_positions(r, p), int(r.lengths[p])
    first, last = min(subject), max(subject)
    roles = []
    for t in range(T):
        if t == T - 1:
            roles.append(5)
        elif t < first:
            roles.append(-1)
        elif t == last:
            roles.append(2)
        elif t == first:
            roles.append(0)
        elif t < last:
            roles.append(1)
        elif t == last + 1:
            roles.append(3)
        else:
            roles.append(4)
    return roles


def traceable(r):
    """Whether causal tracing applies: a gaussian-noise file with exact effects, positions patched one
    by one, and a site it draws."""
    corruption = r.job.get("corruption")
    return (isinstance(corruption, dict) and "gaussian" in corruption and r.exact is not None
            and all(pos >= 0 for pos in r.positions) and bool(traced_sites(r)))


def _effects(r, values):
    if values is None:
        if r.exact is None:
            raise ValueError(f"{r.path}: holds no exact effects to trace")
        values = r.exact
    if any(pos < 0 for pos in r.positions):
        raise ValueError(f"{r.path}: causal tracing needs positions patched one by one, not \"all\"")
    return values


def prompt_grid(r, p, site, values=None):
    """[T, L]: prompt p's effect of restoring `site` at each position (rows) and layer (columns)."""
    values = _effects(r, values)
    L, T = int(r.model_config["n_layer"]), int(r.lengths[p])
    column = {int(pos): j for j, pos in enumerate(r.positions)}
    grid = np.full((T, L), np.nan)
    for k in r.nodes(site):
        for t in range(T):
            if t in column:
                grid[t, r.node_layers[k]] = values[p, k, column[t]]
    return grid


def role_means(r, site, values=None):
    """(means [6, L], prompts [6]): the effect of restoring `site` per role and layer, the mean
    over prompts of each prompt's mean over the role's positions; prompts[i] counts the prompts
    with role i."""
    L = int(r.model_config["n_layer"])
    totals, counts = np.zeros((len(ROLES), L)), np.zeros(len(ROLES), dtype=int)
    for p in range(len(r.lengths)):
        grid = prompt_grid(r, p, site, values)
        roles = np.array(token_roles(r, p))
        for i in range(len(ROLES)):
            rows = grid[roles == i]
            if rows.size and np.isfinite(rows).all():
                totals[i] += rows.mean(axis=0)
                counts[i] += 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return totals / counts[:, None], counts


def traced_sites(r):
    """The sites of a file causal tracing draws, in ROME's order (hidden, MLP, attention)."""
    return [s for s in HIDDEN_SITES + ("mlp_out", "attn_out") if s in r.sites]


def _window_note(r):
    w, align = int(r.attrs.get("window", 1)), r.attrs.get("window_align", "start")
    if w == 1:
        return "one layer"
    return f"window of {w}, centred" if align == "center" else f"window of {w} from the layer up"


def _effect_label(r):
    if r.metric == "prob" and r.attrs.get("direction") == "denoise":
        return "indirect effect on p(answer)"
    return f"effect (Δ {r.metric})"


def figure(results):
    """ROME's Figure 1, averaged: one role x layer heatmap per traced site of each (unsevered)
    file, in the order hidden state, MLP, attention. Returns a matplotlib Figure, or None."""
    panels = [(r, s) for r in results if r.attrs.get("sever", "none") == "none" for s in traced_sites(r)]
    panels.sort(key=lambda rs: (HIDDEN_SITES + ("mlp_out", "attn_out")).index(rs[1]))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (r, site) in zip(axes[0], panels):
        means, counts = role_means(r, site)
        shown = counts > 0
        _heatmap(ax, fig, means[shown], site, _effect_label(r))
        ax.set_yticks(range(int(shown.sum())))
        ax.set_yticklabels([f"{ROLES[i]} ({counts[i]})" for i in np.flatnonzero(shown)], fontsize=8)
        L = means.shape[1]
        ax.set_xticks(range(L))
        ax.set_xlabel("layer")
        ax.set_title(f"restoring the {SITE_TITLES[site]}\n({_window_note(r)}; mean over {len(r.lengths)} prompts)",
                     fontsize=9)
    fig.suptitle("Causal tracing: the effect of restoring one clean state in the noised run, by the token's role",
                 fontsize=10)
    fig.tight_layout()
    return fig


def prompt_figure(r, p):
    """ROME's Figure 1 for one prompt: position (with its token) x layer, one panel per site."""
    sites = traced_sites(r)
    if not sites:
        return None
    fig, axes = plt.subplots(1, len(sites), figsize=(4.4 * len(sites), 0.32 * int(r.lengths[p]) + 1.8), squeeze=False)
    subject = set(subject_positions(r, p))
    for ax, site in zip(axes[0], sites):
        grid = prompt_grid(r, p, site)
        _heatmap(ax, fig, grid, site, _effect_label(r))
        tokens = r.token_strings[p] if r.token_strings is not None else [str(t) for t in r.base_tokens[p]]
        ax.set_yticks(range(grid.shape[0]))
        ax.set_yticklabels([f"{tokens[t]}{'*' if t in subject else ''}" for t in range(grid.shape[0])], fontsize=8)
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xlabel("layer")
        ax.set_title(f"{SITE_TITLES.get(site, site)} ({_window_note(r)})", fontsize=9)
    fig.suptitle(f"prompt {p}: restoring each state (* = noised subject token)", fontsize=10)
    fig.tight_layout()
    return fig


def severed(results, role="last subject token"):
    """{"none" | "mlp" | "attn": [L]}: the hidden state's effect at `role` per layer, from the files
    tracing a hidden-state site without and with severed paths (ROME Figure 2)."""
    i = ROLES.index(role)
    out = {}
    for r in results:
        sites = [s for s in HIDDEN_SITES if s in r.sites]
        if sites:
            out.setdefault(r.attrs.get("sever", "none"), role_means(r, sites[0])[0][i])
    return out


def severed_figure(results, role="last subject token"):
    """ROME's Figure 2: bars per layer of the hidden state's effect at the last subject token, as
    is and with the MLP or attention outputs there severed. None unless a severed file is given."""
    lines = severed(results, role)
    if len(lines) < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.4))
    kinds = [k for k in ("none", "attn", "mlp") if k in lines]
    width = 0.8 / len(kinds)
    colours = {"none": "tab:purple", "attn": "tab:red", "mlp": "tab:green"}
    names = {"none": "hidden state", "attn": "attention severed", "mlp": "MLP severed"}
    for j, kind in enumerate(kinds):
        layers = np.arange(len(lines[kind]))
        ax.bar(layers + (j - (len(kinds) - 1) / 2) * width, lines[kind], width, color=colours[kind], label=names[kind])
    ax.set_xlabel("layer of the restored hidden state")
    ax.set_ylabel(_effect_label(results[0]))
    ax.set_title(f"restoring the hidden state at the {role}, with paths severed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
