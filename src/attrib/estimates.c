/* The estimates of one prompt for every node and position column.
 *
 * For noise sample s (one unless gaussian), with base run B_s, source run S_s and the metric's
 * gradient g at B_s (one backward pass):
 *   atp    = sum over the node's window layers of (a_S - a_B) . g
 *   atp_qk = atp, except q and k nodes, whose attention rows are recomputed (qkfix.c)
 *   atp_star = 1/(L-1) sum_l |atp_qk computed with g^(l)|, g^(l) the gradient with the backward
 *              flow through layer l's attention and MLP writes cut (GradDrop); |atp_qk| if L = 1
 * each averaged over the samples. g^(l) equals g above layer l, so each is one backward pass
 * from layer l down, started from the plain pass's gradient there (L/2 passes in all), and the
 * estimates of nodes entirely above layer l are reused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

struct Attributor {
    const Model *m;
    RunCache grad, dropped; /* g, and g^(l) for the layers at and below l */
    MetricWork work;
    QkScratch qk;
};

Attributor *attrib_new(const Model *m, int max_T) {
    Attributor *a = xcalloc(1, sizeof *a);
    a->m = m;
    run_cache_init(&a->grad, &m->cfg, max_T, 0);
    run_cache_init(&a->dropped, &m->cfg, max_T, 0);
    qk_scratch_init(&a->qk, max_T);
    return a;
}

void attrib_free(Attributor *a) {
    if (!a) return;
    run_cache_free(&a->grad);
    run_cache_free(&a->dropped);
    metric_work_free(&a->work);
    qk_scratch_free(&a->qk);
    free(a);
}

/* The caches were allocated for max_T rows; a prompt of T rows needs views laid out for T. */
static void resize(Attributor *a, int T) {
    if (a->grad.T == T) return;
    run_cache_free(&a->grad);
    run_cache_free(&a->dropped);
    run_cache_init(&a->grad, &a->m->cfg, T, 0);
    run_cache_init(&a->dropped, &a->m->cfg, T, 0);
}

/* Gradient view: layer l's gradients under g^(drop) (drop = -1: plain g). */
static const LayerActs *grad_layer(const Attributor *a, int l, int drop) {
    return drop >= 0 && l <= drop ? &a->dropped.layer[l] : &a->grad.layer[l];
}

/* A node of one layer's attention or MLP whose window holds that layer alone: GradDrop at that
 * layer cuts its only term. */
static int inside_one_layer(const Job *job, const Node *n, int L) {
    int first, last;
    job_window(job, n->layer, L, &first, &last);
    return first == last && n->site != SITE_RESID_PRE && n->site != SITE_RESID_MID && n->site != SITE_RESID_POST;
}

/* One node, every column: out[j] = estimate (plain AtP, or with the QK fix). */
static void node_estimate(Attributor *a, const PromptRuns *r, int s, const Node *n, const Job *job, int qk, int drop,
                          const int *positions, int S, double *out) {
    const ModelConfig *c = &a->m->cfg;
    int first, last;
    job_window(job, n->layer, c->n_layer, &first, &last);
    for (int j = 0; j < S; j++) out[j] = positions[j] < r->T ? 0.0 : NAN;
    for (int l = first; l <= last; l++) {
        LayerView v = {c, r->T, &r->base[s]->layer[l], r->source[s] ? &r->source[s]->layer[l] : NULL,
                       grad_layer(a, l, drop), &a->qk};
        if (qk && n->site == SITE_K) {
            qk_fix_key(&v, n->index, positions, S, out);
            continue;
        }
        for (int j = 0; j < S; j++) {
            if (positions[j] >= r->T) continue;
            out[j] += qk && n->site == SITE_Q ? qk_fix_query(&v, n->index, positions[j])
                                              : atp_term(&v, n->site, n->index, positions[j]);
        }
    }
}

/* The estimates for the job's metric number k, into out[e][(n*S + j)*M + k]; adds each
 * estimator's time to seconds. */
static void metric_estimates(Attributor *a, const Job *job, const Plan *plan, const PromptRuns *r, int k,
                             float *out[N_ESTIMATES], double seconds[N_ESTIMATES]) {
    const ModelConfig *c = &a->m->cfg;
    int N = plan->n_nodes, S = plan->n_positions, L = c->n_layer, samples = r->n_samples;
    int want_qk = out[EST_ATP_QK] || out[EST_ATP_STAR], want_star = out[EST_ATP_STAR] != NULL;
    size_t cells = (size_t)N * S;
    double *sum[N_ESTIMATES], *plain = xmalloc(sizeof(double) * cells), *fixed = xmalloc(sizeof(double) * cells);
    double *star = xmalloc(sizeof(double) * cells), *col = xmalloc(sizeof(double) * (size_t)S);
    for (int e = 0; e < N_ESTIMATES; e++) sum[e] = xcalloc(cells, sizeof(double));
    double t_backward = 0, t_atp = 0, t_fix = 0, t_drop = 0;
    const int *positions = plan_prompt_positions(plan, r->prompt);
    resize(a, r->T);
    for (int s = 0; s < samples; s++) {
        double t0 = now_seconds();
        metric_backward(a->m, r, s, k, &a->grad, &a->work);
        double t1 = now_seconds();
        for (int n = 0; n < N; n++) node_estimate(a, r, s, &plan->nodes[n], job, 0, -1, positions, S, plain + (size_t)n * S);
        double t2 = now_seconds();
        memcpy(fixed, plain, sizeof(double) * cells);
        for (int n = 0; want_qk && n < N; n++)
            if (plan->nodes[n].site == SITE_Q || plan->nodes[n].site == SITE_K)
                node_estimate(a, r, s, &plan->nodes[n], job, 1, -1, positions, S, fixed + (size_t)n * S);
        double t3 = now_seconds();
        if (want_star) {
            memset(star, 0, sizeof(double) * cells);
            for (int drop = 0; L > 1 && drop < L; drop++) {
                /* g^(drop) = g above layer drop; from there down, a backward pass with drop cut */
                memcpy(a->dropped.layer[drop].resid_post, a->grad.layer[drop].resid_post,
                       sizeof(float) * (size_t)r->T * c->d_model);
                run_backward(a->m, r->base_tokens, r->base[s], &a->dropped, NULL, drop, drop);
                for (int n = 0; n < N; n++) {
                    const Node *node = &plan->nodes[n];
                    double *cell = star + (size_t)n * S;
                    int first, last;
                    job_window(job, node->layer, L, &first, &last);
                    if (first > drop) { /* its whole window sits above the cut: same as g */
                        for (int j = 0; j < S; j++) cell[j] += fabs(fixed[(size_t)n * S + j]);
                        continue;
                    }
                    node_estimate(a, r, s, node, job, 1, drop, positions, S, col);
                    for (int j = 0; j < S; j++) cell[j] += fabs(col[j]);
                }
            }
            /* The mean over the dropped layers whose term can be non-zero: L - 1 for a node inside
             * one layer's attention or MLP (dropping that layer cuts its only term, the paper's
             * 1/(L-1)), L for the others (a residual-stream node keeps every term). One layer:
             * there is no other layer to drop, so AtP* is |atp_qk|. */
            for (int n = 0; n < N; n++) {
                int terms = inside_one_layer(job, &plan->nodes[n], L) ? L - 1 : L;
                for (int j = 0; j < S; j++) {
                    size_t i = (size_t)n * S + j;
                    sum[EST_ATP_STAR][i] += L > 1 ? star[i] / terms : fabs(fixed[i]);
                }
            }
        }
        double t4 = now_seconds();
        for (size_t i = 0; i < cells; i++) sum[EST_ATP][i] += plain[i], sum[EST_ATP_QK][i] += fixed[i];
        t_backward += t1 - t0, t_atp += t2 - t1, t_fix += t3 - t2, t_drop += t4 - t3;
    }
    int M = r->n_metrics;
    for (int e = 0; e < N_ESTIMATES; e++) {
        if (out[e])
            for (size_t i = 0; i < cells; i++) out[e][i * M + k] = (float)(sum[e][i] / samples);
        free(sum[e]);
    }
    seconds[EST_ATP] += t_backward + t_atp;
    seconds[EST_ATP_QK] += t_backward + t_atp + t_fix;
    seconds[EST_ATP_STAR] += t_backward + t_atp + t_fix + t_drop;
    free(plain), free(fixed), free(star), free(col);
}

void attrib_estimates(Attributor *a, const Job *job, const Plan *plan, const PromptRuns *r, float *out[N_ESTIMATES],
                      double seconds[N_ESTIMATES]) {
    for (int e = 0; e < N_ESTIMATES; e++) seconds[e] = 0.0;
    /* The estimators read every activation of every layer, patterns included: the unit expands
     * the prompt's lean runs for its own duration (plan counts it). */
    PromptRuns full;
    prompt_runs_expand(r, a->m, &full);
    for (int k = 0; k < r->n_metrics; k++) metric_estimates(a, job, plan, &full, k, out, seconds);
    prompt_runs_expanded_free(&full);
}
