/* Which estimator `patchsweep bound` ranks by when --by is not given (docs/methods.md, "Which
 * estimator ranks"): the one whose per-prompt ranking finds the most of each prompt's true top V
 * (V = --verified) within its first V, on the results file's exact effects; AtP without them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/cli.h"
#include "patchsweep/core.h"

/* The first of atp, atp_qk, atp_star the job computed: the default with nothing to measure, and
 * the winner of a tie. */
static Estimate first_computed(const Job *job) {
    for (int e = 0; e < N_ESTIMATES; e++)
        if (job->estimates[e]) return e;
    return EST_ATP;
}

/* Room for one prompt's values of the site's cells. */
typedef struct {
    int *cells, *order;          /* [C] the site's cells inside the prompt; scratch */
    float *row;                  /* [C] one dataset's row */
    double *truth, *score[N_ESTIMATES]; /* [C] |exact|, |estimate| of each estimator, per site cell */
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
static int prompt_values(const Results *r, const Job *job, const Plan *plan, Site site, int p, Values *v, int *n) {
    int S = plan->n_positions, complete, rc;
    *n = 0;
    for (int c = 0; c < plan->n_nodes * S; c++)
        if (plan->nodes[c / S].site == site && plan_prompt_positions(plan, p)[c % S] < job->prompts[p].T) v->cells[(*n)++] = c;
    rc = read_abs(r, "exact", p, v, *n, v->truth, &complete);
    for (int e = 0; e < N_ESTIMATES && !rc && complete; e++)
        if (job->estimates[e]) rc = read_abs(r, estimate_name(e), p, v, *n, v->score[e], &complete);
    if (!complete) *n = 0;
    return rc;
}

/* Counts, over the prompts with every value, how many of the true top min(V, n) each estimator
 * finds within its first min(V, n). */
static int measure(const Results *r, const Job *job, const Plan *plan, Site site, int budget, BoundRanker *out) {
    size_t C = (size_t)plan->n_nodes * plan->n_positions;
    Values v = {xmalloc(sizeof(int) * C + 1), xmalloc(sizeof(int) * C + 1), alloc_floats(C), alloc_doubles(C), {0}};
    for (int e = 0; e < N_ESTIMATES; e++) v.score[e] = alloc_doubles(C);
    int rc = PS_OK;
    for (int p = 0; p < job->n_prompts && !rc; p++) {
        int n;
        rc = prompt_values(r, job, plan, site, p, &v, &n);
        if (rc || n == 0) continue;
        int k = budget < n ? budget : n;
        out->wanted += k, out->prompts++;
        for (int e = 0; e < N_ESTIMATES; e++)
            if (job->estimates[e]) out->found[e] += bound_top_k_found(v.truth, v.score[e], n, k, v.order);
    }
    free(v.cells), free(v.order), free(v.row), free(v.truth);
    for (int e = 0; e < N_ESTIMATES; e++) free(v.score[e]);
    return rc;
}

/* "atp 270/320 (0.844), atp_qk ..." into text. */
static void recall_list(const Job *job, const BoundRanker *out, char *text, size_t size) {
    text[0] = 0;
    for (int e = 0; e < N_ESTIMATES; e++)
        if (job->estimates[e])
            snprintf(text + strlen(text), size - strlen(text), "%s%s %lld/%lld (%.3f)", text[0] ? ", " : "",
                     estimate_name(e), out->found[e], out->wanted, out->recall[e]);
}

int bound_choose_ranker(const Results *r, const Job *job, const Plan *plan, Site site, int budget, int given,
                        BoundRanker *out) {
    Estimate fallback = first_computed(job);
    memset(out, 0, sizeof *out);
    for (int e = 0; e < N_ESTIMATES; e++) out->recall[e] = NAN;
    out->by = given >= 0 ? (Estimate)given : fallback;
    int present, rc = results_check_cells(r, "exact", &present);
    if (!rc && present && budget > 0) rc = measure(r, job, plan, site, budget, out);
    if (rc) return rc;
    const char *why = !present ? "the file holds no exact effects to measure recall on"
                      : budget <= 0 ? "--verified 0 leaves no top to recall"
                      : out->prompts == 0 ? "no prompt has all its exact effects and estimates yet" : NULL;
    if (why) {
        snprintf(out->reason, sizeof out->reason,
                 given >= 0 ? "given with --by (%s)" : "%s: the first of atp, atp_qk, atp_star the job computes", why);
        return PS_OK;
    }
    for (int e = 0; e < N_ESTIMATES; e++) /* strictly better only: a tie stays with the first */
        if (job->estimates[e]) {
            out->recall[e] = (double)out->found[e] / (double)out->wanted;
            if (given < 0 && out->recall[e] > out->recall[out->by]) out->by = e;
        }
    char list[256];
    recall_list(job, out, list, sizeof list);
    snprintf(out->reason, sizeof out->reason,
             "%s of each prompt's true top %d (by |exact effect|) within its first %d, over %d prompts: %s%s",
             given >= 0 ? "given with --by; recall" : "best recall", budget, budget, out->prompts, list,
             given >= 0 ? "" : "; a tie goes to the first of atp, atp_qk, atp_star");
    return PS_OK;
}
