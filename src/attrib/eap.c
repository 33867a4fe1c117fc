/* EAP (docs/edges.md, "Estimates"): one backward pass of the base run per metric gives the
 * gradient at every activation; g_v, the gradient with respect to the stream as input v alone
 * reads it, follows from v's own projection and norm: for a query input the gradient at head h's
 * query through its rows of W_Q and ln1's backward at the block input; for keys and values the
 * same with the key/value head's rows; for an MLP input the gradient at ln2's output (which only
 * the MLP reads) through ln2's backward; for the logits the metric's gradient at the final row. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"
#include "patchsweep/ops.h"

/* g[T, d] = d metric / d x_v at the base run `base`, from the gradients `grads` of its activations. */
static void input_gradient(const Model *m, const EdgeEnd *v, const RunCache *base, const RunCache *grads, int T, float *g,
                           float *row) {
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, L = c->n_layer, dh = c->d_head;
    memset(g, 0, sizeof(float) * (size_t)T * d);
    if (v->kind == DOWN_LOGITS) { /* the metric reads the last row alone */
        memcpy(g + (size_t)(T - 1) * d, grads->layer[L - 1].resid_post + (size_t)(T - 1) * d, sizeof(float) * d);
        return;
    }
    size_t l = (size_t)v->layer;
    const LayerActs *a = &base->layer[l], *da = &grads->layer[l];
    for (int t = 0; t < T; t++) {
        if (v->kind == DOWN_MLP_IN) {
            const float *x = c->parallel_residual ? a->resid_pre : a->resid_mid;
            norm_backward(c->norm, g + (size_t)t * d, NULL, NULL, da->ln2 + (size_t)t * d, x + (size_t)t * d,
                          m->w.ln2_w + l * d, a->ln2_mean ? a->ln2_mean + t : NULL, a->ln2_rstd + t, 1, d);
            continue;
        }
        /* the normed row's gradient through this head's rows of the projection ([out, in]) */
        int width = v->kind == DOWN_Q ? cfg_q_dim(c) : cfg_kv_dim(c);
        const float *dout = (v->kind == DOWN_Q ? da->q : v->kind == DOWN_K ? da->k : da->v) + (size_t)t * width + (size_t)v->index * dh;
        const float *w = (v->kind == DOWN_Q ? m->w.wq : v->kind == DOWN_K ? m->w.wk : m->w.wv) + l * width * d +
                         (size_t)v->index * dh * d;
        for (int i = 0; i < d; i++) {
            double s = 0.0;
            for (int j = 0; j < dh; j++) s += (double)dout[j] * w[(size_t)j * d + i];
            row[i] = (float)s;
        }
        norm_backward(c->norm, g + (size_t)t * d, NULL, NULL, row, a->resid_pre + (size_t)t * d, m->w.ln1_w + l * d,
                      a->ln1_mean ? a->ln1_mean + t : NULL, a->ln1_rstd + t, 1, d);
    }
}

static int same_input(const EdgeEnd *a, const EdgeEnd *b) {
    return a->kind == b->kind && a->layer == b->layer && a->index == b->index;
}

void edge_estimates(const Model *m, const Job *job, const Plan *plan, const PromptRuns *r, float *out[N_EDGE_ESTIMATES]) {
    if (!out[EST_EAP]) return;
    const ModelConfig *c = &m->cfg;
    int E = plan->n_edges, S = plan->n_positions, M = r->n_metrics, T = r->T, d = c->d_model;
    const int *positions = plan_prompt_positions(plan, r->prompt);
    (void)job;
    double *sum = alloc_doubles((size_t)E * S * M), *delta = alloc_doubles((size_t)T * d);
    float *g = alloc_floats((size_t)T * d), *row = alloc_floats((size_t)d);
    RunCache grads;
    run_cache_init(&grads, c, T, 0);
    MetricWork work = {0};
    for (int s = 0; s < r->n_samples; s++)
        for (int i = 0; i < M; i++) {
            metric_backward(m, r, s, i, &grads, &work);
            const EdgeEnd *have = NULL;
            for (int k = 0; k < E; k++) {
                const Edge *e = &plan->edges[k];
                if (!have || !same_input(have, &e->down)) {
                    input_gradient(m, &e->down, r->base[s], &grads, T, g, row);
                    have = &e->down;
                }
                edge_upstream_delta(m, &e->up, r->base[s], r->source[s], 0, T - 1, delta);
                for (int j = 0; j < S; j++) {
                    int pos = positions[j];
                    if (pos >= T) continue;
                    int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? T - 1 : pos;
                    double dot = 0.0;
                    for (int t = lo; t <= hi; t++)
                        for (int x = 0; x < d; x++) dot += delta[(size_t)t * d + x] * g[(size_t)t * d + x];
                    sum[((size_t)k * S + j) * M + i] += dot;
                }
            }
        }
    for (int k = 0; k < E; k++)
        for (int j = 0; j < S; j++)
            for (int i = 0; i < M; i++)
                out[EST_EAP][((size_t)k * S + j) * M + i] =
                    positions[j] >= T ? NAN : (float)(sum[((size_t)k * S + j) * M + i] / r->n_samples);
    metric_work_free(&work);
    run_cache_free(&grads);
    free(sum), free(delta), free(g), free(row);
}
