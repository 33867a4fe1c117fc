#!/usr/bin/env python3
"""Joint patches of the bound command's subsets, computed independently (run with
/usr/bin/python3).

    /usr/bin/python3 tests/reference/gen_bound.py

For a few test jobs and `patchsweep bound` options, this follows docs/methods.md ("Bounding what
the ranking missed") from the job's golden estimates (written by gen_effects.py): rank the site's
cells by |estimate| (as float32, ties in cell order), take the top as verified (a tie block
straddling the budget left unverified, --ties bound, the default), draw the
subsets of the rest with splitmix64 (seed, prompt, subset), and patch each listed subset jointly
with the float64 reference model (gen_effects.JobReference). Writes
tests/fixtures/golden/bound.json: per case the job, the options, and for each checked subset its
cells and its effect. tests/cli/test_bound.py checks that patchsweep draws the same subsets and
gets the same effects.

Edges (`patchsweep bound --edges`, docs/edges.md "Joint patches") the same way from the edge jobs'
golden estimates (gen_edges.py): the cells are (edge, column) of every edge, and a subset is
patched with edges_ref.py's factorised model, every edge of the subset carrying its upstream
node's source output on its cells' rows and every other edge its upstream node's output in the
same patched run (the mean over the prompt's noise samples). Cases marked "edges": true.
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402
from edges_ref import EdgeJob, edge_name, rows_of  # noqa: E402
from gen_effects import JobReference  # noqa: E402
from splitmix64 import SplitMix64  # noqa: E402

FIXTURES = os.path.join(HERE, "..", "fixtures")
# (job, site, ranked by, options, (prompt, subset) pairs to patch)
CASES = [
    ("gpt2-pair-denoise", "z", "atp_star", {"verified": 5, "subsets": 12, "inclusion": 0.3, "seed": 3},
     [(0, 0), (0, 5), (2, 11)]),
    ("gpt2-gaussian", "k", "atp", {"verified": 2, "subsets": 8, "inclusion": 0.4, "seed": 0}, [(1, 0), (1, 3)]),
    ("llama-pair-noise-kl", "v", "atp_qk", {"verified": 3, "subsets": 10, "inclusion": 0.25, "seed": 0, "confidence": 0.9}, [(0, 1), (1, 9)]),
]

# (edge job, ranked by, options, (prompt, subset) pairs to patch): GPT-2 one position at a time
# in the noise direction, GPT-2 with gaussian noise (two draws) at every position at once, Llama
# (GQA) with mean corruption, NeoX (parallel residual).
EDGE_CASES = [
    ("edges-gpt2-pair-noise-each", "eap_ig", {"verified": 5, "subsets": 10, "inclusion": 0.05, "seed": 1},
     [(0, 0), (0, 7), (1, 4)]),
    ("edges-gpt2-gaussian", "eap", {"verified": 3, "subsets": 8, "inclusion": 0.2, "seed": 2}, [(0, 1), (1, 5)]),
    ("edges-llama-mean", "eap_ig_act", {"verified": 4, "subsets": 8, "inclusion": 0.04, "seed": 0}, [(1, 2), (2, 6)]),
    ("edges-neox-pair", "eap", {"verified": 2, "subsets": 8, "inclusion": 0.06, "seed": 5}, [(0, 3), (1, 0)]),
]


# Below this, a reference estimate is float64 rounding around an exact zero (the KL metric's
# gradient at its minimum, the base run of a noising job, which patchsweep computes as exactly 0):
# it ranks as 0, as patchsweep's does.
ROUNDING_ZERO = 1e-12


def unverified_cells(reference, estimates, site, p, verified):
    """The prompt's cells of the site outside the verified ones, in rank order: the top
    `verified`, less a tie block (equal float32 |estimate|) that straddles the budget."""
    T = len(reference.prompts[p]["clean"])
    cells = [(n, j) for n, node in enumerate(reference.nodes) for j, pos in enumerate(reference.columns)
             if node[0] == site and pos < T]
    return past_the_verified(cells, estimates[p], verified)


def past_the_verified(cells, estimates, verified):
    """The cells in rank order after the top `verified` (less a straddling tie block)."""
    score = np.abs(estimates.astype(np.float32))
    score[score < ROUNDING_ZERO] = 0
    cells.sort(key=lambda c: (-score[c], c))
    n = min(verified, len(cells))
    if 0 < n < len(cells) and score[cells[n]] == score[cells[n - 1]]:
        while n > 0 and score[cells[n - 1]] == score[cells[verified]]:
            n -= 1
    return cells[n:]


def subset(cells, seed, p, k, inclusion):
    rng = SplitMix64(seed, p, k)
    return [c for c in cells if rng.uniform() < inclusion]


def unverified_edge_cells(job, estimates, p, verified):
    """unverified_cells for an edge job: the (edge, column) cells inside the prompt."""
    T = len(job.prompts[p]["clean"])
    cells = [(e, j) for e in range(len(job.edges)) for j, pos in enumerate(job.columns) if pos < T]
    return past_the_verified(cells, estimates[p], verified)


def edge_subset_effect(job, p, cells):
    """The joint effect of the edge cells (mean over the prompt's base/source pairs): each edge of
    the set carries u^S on the union of its cells' rows, every other edge u's current output."""
    effects = []
    for pair in job.pairs(p):
        rows = {}
        for e, j in cells:
            mask = rows_of(job.columns[j], pair.T)
            edge = job.edges[e]
            rows[edge] = rows[edge] | mask if edge in rows else mask

        def carry(u, v, value):
            mask = rows.get((u, v))
            return value if mask is None else torch.where(mask, pair.source[u], value)

        effects.append(pair.patched(carry))
    return float(np.mean(effects))


def edge_cases():
    out = []
    for name, by, options, checks in EDGE_CASES:
        job = EdgeJob.from_file(os.path.join(FIXTURES, "jobs", name + ".json"))
        estimates = st.read(os.path.join(FIXTURES, "golden", f"{name}.safetensors"))[by]
        subsets = []
        for p, k in checks:
            cells = subset(unverified_edge_cells(job, estimates, p, options["verified"]), options["seed"], p, k,
                           options["inclusion"])
            effect = edge_subset_effect(job, p, cells)
            names = sorted({edge_name(job.edges[e]) for e, _ in cells})
            subsets.append({"prompt": p, "subset": k, "cells": [list(c) for c in cells], "effect": effect})
            print(f"{name} edges by {by}: prompt {p} subset {k}: {len(cells)} cells ({len(names)} edges), "
                  f"joint effect {effect:.6g}")
        out.append({"job": name, "site": "edges", "edges": True, "by": by, "options": options, "subsets": subsets})
    return out


def main():
    out = []
    for name, site, by, options, checks in CASES:
        path = os.path.join(FIXTURES, "jobs", name + ".json")
        reference = JobReference(path)
        estimates = st.read(os.path.join(FIXTURES, "golden", f"effects-{name}.safetensors"))[by]
        subsets = []
        for p, k in checks:
            cells = subset(unverified_cells(reference, estimates, site, p, options["verified"]), options["seed"], p, k,
                           options["inclusion"])
            patch = [(site, reference.nodes[n][1], reference.nodes[n][2], reference.columns[j]) for n, j in cells]
            effect = reference.effect(reference.prompt(p), patch)
            subsets.append({"prompt": p, "subset": k, "cells": [list(c) for c in cells], "effect": effect})
            print(f"{name} {site} by {by}: prompt {p} subset {k}: {len(cells)} cells, joint effect {effect:.6g}")
        out.append({"job": name, "site": site, "by": by, "options": options, "subsets": subsets})
    out += edge_cases()
    with open(os.path.join(FIXTURES, "golden", "bound.json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(case) for case in out) + "\n]\n")


if __name__ == "__main__":
    main()
