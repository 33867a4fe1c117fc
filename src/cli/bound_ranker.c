/* Which estimator `patchsweep bound` ranks by when --by is not given (docs/methods.md, "Which
 * estimator ranks"): the one whose per-prompt ranking finds the most of each prompt's true top V
 * (V = --verified) within its first V, on the results file's exact effects; AtP without them.
 * Edges (docs/edges.md) the same way among eap, eap_ig, eap_ig_act; EAP without exact effects. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/bound.h"
#include "patchsweep/cli.h"
#include "patchsweep/core.h"

_Static_assert(N_ESTIMATES == BOUND_RANKERS && N_EDGE_ESTIMATES == BOUND_RANKERS, "three rankers of each kind");

const char *bound_ranker_name(int edges, int e) {
    return edges ? edge_estimate_name((EdgeEstimate)e) : estimate_name((Estimate)e);
}

int bound_ranker_computed(const Job *job, int edges, int e) { return edges ? job->edge_estimates[e] : job->estimates[e]; }

/* The first estimator the job computed (atp, atp_qk, atp_star; or eap, eap_ig, eap_ig_act): the
 * default with nothing to measure, and the winner of a tie. */
static int first_computed(const Job *job, int edges) {
    for (int e = 0; e < BOUND_RANKERS; e++)
        if (bound_ranker_computed(job, edges, e)) return e;
    return 0;
}

/* Room for one prompt's values of the site's cells. */
typedef struct {
    int *cells, *order;          /* [C] the site's cells inside the prompt; scratch */
    float *row;                  /* [C] one dataset's row */
    double *truth, *score[BOUND_RANKERS]; /* [C] |exact|, |estimate| of each estimator, per site cell */
} Values;

/* |values| of dataset `name` at the n cells into out; *complete = 0 when one is NaN (a unit not
 * done yet). */
static int read_abs(const Results *r, const char *name, int p, const Values *v, int n, double *out, int *complete) {
    int present, rc = results_read_prompt(r, name, p, v->row, &present);
    *complete = !rc && present;
    for (int i = 0; i < n && *complete; i++) {
        out[i] = fabs((double)v->row[v->cells[i]]);
        *complete = !isnan(out[i]);
    }
    return rc;
}

/* Prompt p's site cells and their values; *n = 0 when the prompt lacks any of them. */
static int prompt_values(const Results *r, const Job *job, const Plan *plan, int edges, Site site, int p, Values *v,
                         int *n) {
    int complete, rc;
    size_t C = bound_cell_count(plan, edges);
    *n = 0;
    for (size_t c = 0; c < C; c++)
        if (bound_has_cell(plan, job, edges, site, p, c)) v->cells[(*n)++] = (int)c;
    rc = read_abs(r, "exact", p, v, *n, v->truth, &complete);
    for (int e = 0; e < BOUND_RANKERS && !rc && complete; e++)
        if (bound_ranker_computed(job, edges, e)) rc = read_abs(r, bound_ranker_name(edges, e), p, v, *n, v->score[e], &complete);
    if (!complete) *n = 0;
    return rc;
}

/* Counts, over the prompts with every value, how many of the true top min(V, n) each estimator
 * finds within its first min(V, n). */
static int measure(const Results *r, const Job *job, const Plan *plan, int edges, Site site, int budget, BoundRanker *out) {
    size_t C = bound_cell_count(plan, edges);
    Values v = {xmalloc(sizeof(int) * C + 1), xmalloc(sizeof(int) * C + 1), alloc_floats(C), alloc_doubles(C), {0}};
    for (int e = 0; e < BOUND_RANKERS; e++) v.score[e] = alloc_doubles(C);
    int rc = PS_OK;
    for (int p = 0; p < job->n_prompts && !rc; p++) {
        int n;
        rc = prompt_values(r, job, plan, edges, site, p, &v, &n);
        if (rc || n == 0) continue;
        int k = budget < n ? budget : n;
        out->wanted += k, out->prompts++;
        for (int e = 0; e < BOUND_RANKERS; e++)
            if (bound_ranker_computed(job, edges, e)) out->found[e] += bound_top_k_found(v.truth, v.score[e], n, k, v.order);
    }
    free(v.cells), free(v.order), free(v.row), free(v.truth);
    for (int e = 0; e < BOUND_RANKERS; e++) free(v.score[e]);
    return rc;
}

/* "atp 270/320 (0.844), atp_qk ..." into text. */
static void recall_list(const Job *job, int edges, const BoundRanker *out, char *text, size_t size) {
    text[0] = 0;
    for (int e = 0; e < BOUND_RANKERS; e++)
        if (bound_ranker_computed(job, edges, e))
            snprintf(text + strlen(text), size - strlen(text), "%s%s %lld/%lld (%.3f)", text[0] ? ", " : "",
                     bound_ranker_name(edges, e), out->found[e], out->wanted, out->recall[e]);
}

int bound_choose_ranker(const Results *r, const Job *job, const Plan *plan, int edges, Site site, int budget, int given,
                        BoundRanker *out) {
    int fallback = first_computed(job, edges);
    const char *rankers = edges ? "eap, eap_ig, eap_ig_act" : "atp, atp_qk, atp_star";
    memset(out, 0, sizeof *out);
    for (int e = 0; e < BOUND_RANKERS; e++) out->recall[e] = NAN;
    out->by = given >= 0 ? given : fallback;
    int present, rc = results_check_cells(r, "exact", &present);
    if (!rc && present && budget > 0) rc = measure(r, job, plan, edges, site, budget, out);
    if (rc) return rc;
    const char *why = !present ? "the file holds no exact effects to measure recall on"
                      : budget <= 0 ? "--verified 0 leaves no top to recall"
                      : out->prompts == 0 ? "no prompt has all its exact effects and estimates yet" : NULL;
    if (why) {
        if (given >= 0) snprintf(out->reason, sizeof out->reason, "given with --by (%s)", why);
        else snprintf(out->reason, sizeof out->reason, "%s: the first of %s the job computes", why, rankers);
        return PS_OK;
    }
    for (int e = 0; e < BOUND_RANKERS; e++) /* strictly better only: a tie stays with the first */
        if (bound_ranker_computed(job, edges, e)) {
            out->recall[e] = (double)out->found[e] / (double)out->wanted;
            if (given < 0 && out->recall[e] > out->recall[out->by]) out->by = e;
        }
    char list[256];
    recall_list(job, edges, out, list, sizeof list);
    snprintf(out->reason, sizeof out->reason,
             "%s of each prompt's true top %d (by |exact effect|) within its first %d, over %d prompts: %s%s%s",
             given >= 0 ? "given with --by; recall" : "best recall", budget, budget, out->prompts, list,
             given >= 0 ? "" : "; a tie goes to the first of ", given >= 0 ? "" : rankers);
    return PS_OK;
}
