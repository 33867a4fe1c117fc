/* patchsweep bound (docs/methods.md, "Bounding what the ranking missed"): per prompt, rank one
 * site's cells by an estimator, take the top as verified, patch random subsets of the rest
 * jointly, and bound every unverified cell's |effect|. The statistics are in attrib.h; this is
 * the per-prompt computation and its result (src/attrib/bound_prompt.c). Where the result goes
 * (MPI messages, the /bound group) is the command's business (src/cli/bound.c, store.h). */
#ifndef PATCHSWEEP_BOUND_H
#define PATCHSWEEP_BOUND_H

#include <stdint.h>
#include "patchsweep/attrib.h"

typedef struct {
    int edges;  /* 1: the cells are the job's (edge, position column) cells, site unused */
    Site site;
    int metric; /* the job's metric number: the estimates ranked and the subset effects are its */
    int n_verified_max, n_subsets;
    int verify_ties; /* a tie block straddling n_verified_max: 1 verified whole, 0 left to the bound */
    double inclusion, confidence;
    uint64_t seed;
} BoundSpec;

/* Fields of a prompt's summary (PromptBound.summary). */
/* THETA: max ucb over the unverified cells; THETA_SIGN: max |subset effect|, the bound of the
 * sign-symmetric test (docs/methods.md); BOUNDARY_TIES: the size of the tie block straddling the
 * verified boundary (0: none), BOUNDARY_KEY its |estimate|. */
enum { BOUND_THETA, BOUND_THETA_SIGN, BOUND_CELLS, BOUND_VERIFIED, BOUND_UNVERIFIED, BOUND_UNBOUNDED, BOUND_SAMPLES,
       BOUND_BOUNDARY_TIES, BOUND_BOUNDARY_KEY, N_BOUND_SUMMARY };

/* One prompt's bound over every cell of the plan ([N * S] = C cells, N the nodes or the edges; cells outside the site or
 * the unverified set are NaN or 0), in two contiguous buffers (what one rank sends another):
 *   doubles: summary [N_BOUND_SUMMARY], subset_effect [K], estimate, se, ucb [C] each;
 *   bytes:   verified [C].
 * The subsets themselves are not part of it: bound_draw_subset draws them again anywhere. */
typedef struct {
    double *doubles, *summary, *subset_effect, *estimate, *se, *ucb;
    uint8_t *bytes, *verified;
    size_t n_doubles, n_bytes;
} PromptBound;

void prompt_bound_init(PromptBound *b, size_t n_cells, int n_subsets);
void prompt_bound_free(PromptBound *b);

/* The cells a bound ranks: (node, column) or, for edges, (edge, column); cell c = item * S + column. */
size_t bound_cell_count(const Plan *plan, int edges);
/* Whether cell c is one of prompt p's cells to bound: of the site (nodes), at a position inside
 * the prompt. */
int bound_has_cell(const Plan *plan, const Job *job, int edges, Site site, int p, size_t c);

typedef struct BoundWork BoundWork;
BoundWork *bound_work_new(const Model *m, const Job *job, const Plan *plan, const BoundSpec *spec);
void bound_work_free(BoundWork *w);
/* Computes prompt p's bound from its estimates ([N, S], the ranking estimator's values; N the
 * nodes, or the edges). */
void bound_prompt(BoundWork *w, int p, const float *estimates, PromptBound *out);

#endif
