/* Metrics of the next-token distribution at a prompt's last position. All of them read the
 * final residual row, so the base run and every patched run go through the same code. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "patchsweep/patch.h"

static void work_reserve(const Model *m, MetricWork *w, int n) {
    if (n <= w->cap) return;
    metric_work_free(w);
    w->cap = n;
    w->lnf = alloc_floats((size_t)n * m->cfg.d_model);
    w->logits = alloc_floats((size_t)n * m->cfg.vocab);
    w->stats = alloc_floats(2 * (size_t)n);
}

void metric_work_free(MetricWork *w) {
    free(w->lnf);
    free(w->logits);
    free(w->stats);
    w->lnf = w->logits = w->stats = NULL;
    w->cap = 0;
}

static void final_norm(const Model *m, const float *resid, int n, MetricWork *w) {
    const ModelConfig *c = &m->cfg;
    norm_forward(c->norm, w->lnf, c->norm == NORM_LAYER ? w->stats + n : NULL, w->stats, resid, m->w.lnf_w,
                 m->w.lnf_b, n, c->d_model, c->norm_eps);
}

/* log-softmax of one logits row into out (double) */
static void log_softmax(const float *logits, int V, double *out) {
    double maxv = -INFINITY, sum = 0.0;
    for (int v = 0; v < V; v++) maxv = fmax(maxv, logits[v]);
    for (int v = 0; v < V; v++) sum += det_exp(logits[v] - maxv);
    double lse = maxv + det_log(sum);
    for (int v = 0; v < V; v++) out[v] = logits[v] - lse;
}

void final_logprobs(const Model *m, const float *resid_row, double *out, MetricWork *w) {
    work_reserve(m, w, 1);
    final_norm(m, resid_row, 1, w);
    matmul_forward_ref(w->logits, w->lnf, model_packed(m, PACKED_UNEMBED, 0), NULL, 1, m->cfg.d_model, m->cfg.vocab);
    log_softmax(w->logits, m->cfg.vocab, out);
}

/* logit(answer) - logit(wrong) from the normed rows: two unembedding rows are all it needs. */
static double logit_diff(const Model *m, const MetricSpec *spec, const float *x) {
    size_t d = (size_t)m->cfg.d_model;
    MatrixView u = model_view(m, PARAM_UNEMBED, 0);
    double la = 0.0, lw = 0.0;
    for (size_t k = 0; k < d; k++) {
        la += (double)x[k] * view_value(u, spec->answer, (int)k);
        lw += (double)x[k] * view_value(u, spec->wrong, (int)k);
    }
    return la - lw;
}

/* A metric of the next-token distribution, from its log-probabilities lp ([V]). */
static double distribution_metric(MetricKind kind, const MetricSpec *spec, const double *lp, int V) {
    if (kind == METRIC_LOGPROB) return lp[spec->answer];
    if (kind == METRIC_PROB) return det_exp(lp[spec->answer]);
    double kl = 0.0; /* KL(clean || patched) = sum_v p_clean(v) (log p_clean(v) - log p_patched(v)) */
    for (int v = 0; v < V; v++) {
        double lc = spec->clean_logprobs[v];
        if (lc > -INFINITY) kl += det_exp(lc) * (lc - lp[v]);
    }
    return kl;
}

void metric_rows(const Model *m, const MetricSpec *spec, const float *resid, int n, double *out, MetricWork *w) {
    int d = m->cfg.d_model, V = m->cfg.vocab, M = spec->n_kinds, needs_logits = 0;
    work_reserve(m, w, n);
    final_norm(m, resid, n, w);
    for (int k = 0; k < M; k++) needs_logits |= spec->kinds[k] != METRIC_LOGIT_DIFF;
    if (needs_logits) matmul_forward_ref(w->logits, w->lnf, model_packed(m, PACKED_UNEMBED, 0), NULL, n, d, V);
    double *lp = needs_logits ? xmalloc(sizeof(double) * (size_t)V) : NULL;
    for (int i = 0; i < n; i++) {
        if (needs_logits) log_softmax(w->logits + (size_t)i * V, V, lp);
        for (int k = 0; k < M; k++)
            out[(size_t)i * M + k] = spec->kinds[k] == METRIC_LOGIT_DIFF ? logit_diff(m, spec, w->lnf + (size_t)i * d)
                                                                         : distribution_metric(spec->kinds[k], spec, lp, V);
    }
    free(lp);
}

void metric_grad(const Model *m, const MetricSpec *spec, int which, const float *resid_row, float *out, MetricWork *w) {
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, V = c->vocab;
    work_reserve(m, w, 1);
    final_norm(m, resid_row, 1, w);
    float *dlnf = xcalloc((size_t)d, sizeof(float));
    MetricKind kind = spec->kinds[which];
    if (kind == METRIC_LOGIT_DIFF) { /* d(lnf . (U[a] - U[w]))/dlnf */
        MatrixView u = model_view(m, PARAM_UNEMBED, 0);
        for (int k = 0; k < d; k++) dlnf[k] = view_value(u, spec->answer, k) - view_value(u, spec->wrong, k);
    } else {
        matmul_forward_ref(w->logits, w->lnf, model_packed(m, PACKED_UNEMBED, 0), NULL, 1, d, V);
        double *lp = xmalloc(sizeof(double) * (size_t)V);
        log_softmax(w->logits, V, lp);
        float *dlogits = xmalloc(sizeof(float) * (size_t)V);
        double pa = det_exp(lp[spec->answer >= 0 ? spec->answer : 0]);
        for (int v = 0; v < V; v++) {
            double p = det_exp(lp[v]), onehot = v == spec->answer;
            if (kind == METRIC_LOGPROB) dlogits[v] = (float)(onehot - p);                /* d log p_a */
            else if (kind == METRIC_PROB) dlogits[v] = (float)(pa * (onehot - p));       /* d p_a */
            else dlogits[v] = (float)(p - det_exp(spec->clean_logprobs[v]));             /* d KL(clean || p) */
        }
        matmul_backward_ref(dlnf, NULL, NULL, dlogits, w->lnf, model_matrix(m, PARAM_UNEMBED, 0), 1, d, V);
        free(lp);
        free(dlogits);
    }
    memset(out, 0, sizeof(float) * (size_t)d);
    norm_backward(c->norm, out, NULL, NULL, dlnf, resid_row, m->w.lnf_w, c->norm == NORM_LAYER ? w->stats + 1 : NULL,
                  w->stats, 1, d);
    free(dlnf);
}
