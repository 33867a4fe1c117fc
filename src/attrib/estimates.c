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
 * estimates of nodes entirely above layer l are reused.
 *
 * With a window of one layer (every node reads one layer), the passes go one layer at a time over
 * the prompt's lean runs (docs/design.md, "Memory-lean runs"): layer l's activations are
 * recomputed from its block input (run_layer, the same bits), the gradient is taken through it,
 * the estimates of the nodes of layer l are read off, and the layer is dropped. Every sum is taken
 * in the same order as over full caches, so the bits are the same. Wider windows expand the runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

struct Attributor {
    const Model *m;
    RunCache grad, dropped; /* wider windows: g, and g^(l) for the layers at and below l */
    MetricWork work;
    QkScratch qk;
};

Attributor *attrib_new(const Model *m, int max_T) {
    Attributor *a = xcalloc(1, sizeof *a);
    a->m = m;
    qk_scratch_init(&a->qk, max_T); /* the gradient caches are allocated when a wide window asks */
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

/* The mean over the dropped layers whose term can be non-zero: L - 1 for a node inside one
 * layer's attention or MLP (dropping that layer cuts its only term, the paper's 1/(L-1)), L for
 * the others (a residual-stream node keeps every term). One layer: there is no other layer to
 * drop, so AtP* is |atp_qk|. Into sum_star. */
static void add_star_mean(const Job *job, const Plan *plan, int L, const double *star, const double *fixed,
                          double *sum_star) {
    int S = plan->n_positions;
    for (int n = 0; n < plan->n_nodes; n++) {
        int terms = inside_one_layer(job, &plan->nodes[n], L) ? L - 1 : L;
        for (int j = 0; j < S; j++) {
            size_t i = (size_t)n * S + j;
            sum_star[i] += L > 1 ? star[i] / terms : fabs(fixed[i]);
        }
    }
}

/* One node's term of one layer, every column: out[j] += the layer's term (plain AtP, or with the
 * QK fix), for the columns inside the prompt. */
static void layer_estimate(const LayerView *v, const Node *n, int qk, const int *positions, int S, double *out) {
    if (qk && n->site == SITE_K) {
        qk_fix_key(v, n->index, positions, S, out);
        return;
    }
    for (int j = 0; j < S; j++) {
        if (positions[j] >= v->T) continue;
        out[j] += qk && n->site == SITE_Q ? qk_fix_query(v, n->index, positions[j])
                                          : atp_term(v, n->site, n->index, positions[j]);
    }
}

/* A node's columns before its terms are added: 0, NaN past the prompt's end. */
static void columns_start(double *out, const int *positions, int S, int T) {
    for (int j = 0; j < S; j++) out[j] = positions[j] < T ? 0.0 : NAN;
}

/* One node, every column, over full caches: out[j] = estimate (plain AtP, or with the QK fix). */
static void node_estimate(Attributor *a, const PromptRuns *r, int s, const Node *n, const Job *job, int qk, int drop,
                          const int *positions, int S, double *out) {
    const ModelConfig *c = &a->m->cfg;
    int first, last;
    job_window(job, n->layer, c->n_layer, &first, &last);
    columns_start(out, positions, S, r->T);
    for (int l = first; l <= last; l++) {
        LayerView v = {c, r->T, &r->base[s]->layer[l], r->source[s] ? &r->source[s]->layer[l] : NULL,
                       grad_layer(a, l, drop), &a->qk};
        layer_estimate(&v, n, qk, positions, S, out);
    }
}

/* ---- one layer at a time over the lean runs (a window of one layer) ---------------------------- */

/* One layer of each kind the passes hold: the base run's (its pattern too: the backward reads
 * it), the source run's, and the gradient, of g and then of each g^(drop) (its pattern is the QK
 * fix's G). g_post[l] is g at layer l's output, where each GradDrop pass starts. */
typedef struct {
    LayerActs base, src, grad;
    float *block[3];
    float *g_post; /* [L][T, d] */
} LayerRoom;

static void layer_room_init(LayerRoom *room, const ModelConfig *c, int T) {
    layer_scratch_init(&room->base, &room->block[0], c, T, 1);
    layer_scratch_init(&room->src, &room->block[1], c, T, 0);
    layer_scratch_init(&room->grad, &room->block[2], c, T, 1);
    room->g_post = alloc_floats((size_t)c->n_layer * T * c->d_model);
}

static void layer_room_free(LayerRoom *room) {
    for (int i = 0; i < 3; i++) free(room->block[i]);
    free(room->g_post);
}

/* One pass's layer l: the base run's activations, and the gradient d (d->resid_post holds the
 * gradient at the layer's output on entry) taken back through the layer (cut: GradDrop). */
static const LayerActs *layer_backward(const Attributor *a, const RunCache *base, int l, int T, LayerActs *d,
                                       LayerRoom *room, int cut) {
    const LayerActs *acts = run_layer(a->m, base, l, &room->base);
    block_backward(a->m, l, T, acts, d, NULL, cut);
    return acts;
}

static int has_nodes_in(const Plan *plan, const int *layer_of, int l) {
    for (int n = 0; n < plan->n_nodes; n++)
        if (layer_of[n] == l) return 1;
    return 0;
}

/* metric_estimates' sums of one noise sample over lean runs: plain[] and fixed[] (every node,
 * column) and, if star is not NULL, star[] = the sum over the dropped layers of |atp_qk with g^(drop)|.
 * layer_of[n] is node n's one layer. Adds the seconds of each part. */
static void lean_sample(Attributor *a, const PromptRuns *r, int s, int k, const Plan *plan, const int *layer_of,
                        const int *positions, int want_qk, double *plain, double *fixed, double *star, double *col,
                        LayerRoom *room, double *t_backward, double *t_atp, double *t_fix, double *t_drop) {
    const ModelConfig *c = &a->m->cfg;
    int N = plan->n_nodes, S = plan->n_positions, L = c->n_layer, T = r->T, d = c->d_model;
    size_t rows = (size_t)T * d;
    const RunCache *base = r->base[s], *source = r->source[s];
    /* the metric reads the last position only: every other row of the output gets no gradient */
    memset(room->grad.resid_post, 0, sizeof(float) * rows);
    metric_grad(a->m, &r->spec, k, base->layer[L - 1].resid_post + (size_t)(T - 1) * d,
                room->grad.resid_post + (size_t)(T - 1) * d, &a->work);
    for (int l = L - 1; l >= 0; l--) {
        double t0 = now_seconds();
        if (l < L - 1) memcpy(room->grad.resid_post, room->grad.resid_pre, sizeof(float) * rows);
        memcpy(room->g_post + (size_t)l * rows, room->grad.resid_post, sizeof(float) * rows);
        const LayerActs *b = layer_backward(a, base, l, T, &room->grad, room, 0);
        double t1 = now_seconds();
        const LayerActs *src = source && has_nodes_in(plan, layer_of, l) ? run_layer(a->m, source, l, &room->src) : NULL;
        LayerView v = {c, T, b, src, &room->grad, &a->qk};
        for (int n = 0; n < N; n++) {
            if (layer_of[n] != l) continue;
            columns_start(plain + (size_t)n * S, positions, S, T);
            layer_estimate(&v, &plan->nodes[n], 0, positions, S, plain + (size_t)n * S);
        }
        double t2 = now_seconds();
        for (int n = 0; n < N; n++) {
            if (layer_of[n] != l) continue;
            const Node *node = &plan->nodes[n];
            double *out = fixed + (size_t)n * S;
            if (!want_qk || (node->site != SITE_Q && node->site != SITE_K)) {
                memcpy(out, plain + (size_t)n * S, sizeof(double) * S);
                continue;
            }
            columns_start(out, positions, S, T);
            layer_estimate(&v, node, 1, positions, S, out);
        }
        double t3 = now_seconds();
        *t_backward += t1 - t0, *t_atp += t2 - t1, *t_fix += t3 - t2;
    }
    if (!star) return;
    double t3 = now_seconds();
    memset(star, 0, sizeof(double) * (size_t)N * S);
    for (int drop = 0; L > 1 && drop < L; drop++) {
        /* g^(drop) = g above layer drop; from there down, a backward pass with drop cut (in the
         * gradient's layer: plain[] and fixed[] are read off g already) */
        memcpy(room->grad.resid_post, room->g_post + (size_t)drop * rows, sizeof(float) * rows);
        for (int l = drop; l >= 0; l--) {
            if (l < drop) memcpy(room->grad.resid_post, room->grad.resid_pre, sizeof(float) * rows);
            const LayerActs *b = layer_backward(a, base, l, T, &room->grad, room, l == drop);
            if (!has_nodes_in(plan, layer_of, l)) continue;
            const LayerActs *src = source ? run_layer(a->m, source, l, &room->src) : NULL;
            LayerView v = {c, T, b, src, &room->grad, &a->qk};
            for (int n = 0; n < N; n++) {
                if (layer_of[n] != l) continue;
                columns_start(col, positions, S, T);
                layer_estimate(&v, &plan->nodes[n], 1, positions, S, col);
                for (int j = 0; j < S; j++) star[(size_t)n * S + j] += fabs(col[j]);
            }
        }
        /* the nodes entirely above the cut: the same as g */
        for (int n = 0; n < N; n++)
            if (layer_of[n] > drop)
                for (int j = 0; j < S; j++) star[(size_t)n * S + j] += fabs(fixed[(size_t)n * S + j]);
    }
    *t_drop += now_seconds() - t3;
}

/* The estimates for the job's metric number k, into out[e][(n*S + j)*M + k]; adds each
 * estimator's time to seconds. room NULL: r holds full runs and the passes keep full gradient
 * caches; else r's runs are lean and layer_of[n] is node n's one layer. */
static void metric_estimates(Attributor *a, const Job *job, const Plan *plan, const PromptRuns *r, int k,
                             LayerRoom *room, const int *layer_of, float *out[N_ESTIMATES],
                             double seconds[N_ESTIMATES]) {
    const ModelConfig *c = &a->m->cfg;
    int N = plan->n_nodes, S = plan->n_positions, L = c->n_layer, samples = r->n_samples;
    int want_qk = out[EST_ATP_QK] || out[EST_ATP_STAR], want_star = out[EST_ATP_STAR] != NULL;
    size_t cells = (size_t)N * S;
    double *sum[N_ESTIMATES], *plain = xmalloc(sizeof(double) * cells), *fixed = xmalloc(sizeof(double) * cells);
    double *star = xmalloc(sizeof(double) * cells), *col = xmalloc(sizeof(double) * (size_t)S);
    for (int e = 0; e < N_ESTIMATES; e++) sum[e] = xcalloc(cells, sizeof(double));
    double t_backward = 0, t_atp = 0, t_fix = 0, t_drop = 0;
    const int *positions = plan_prompt_positions(plan, r->prompt);
    if (!room) resize(a, r->T);
    for (int s = 0; s < samples; s++) {
        if (room) {
            lean_sample(a, r, s, k, plan, layer_of, positions, want_qk, plain, fixed, want_star ? star : NULL, col,
                        room, &t_backward, &t_atp, &t_fix, &t_drop);
            if (want_star) add_star_mean(job, plan, L, star, fixed, sum[EST_ATP_STAR]);
            for (size_t i = 0; i < cells; i++) sum[EST_ATP][i] += plain[i], sum[EST_ATP_QK][i] += fixed[i];
            continue;
        }
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
            add_star_mean(job, plan, L, star, fixed, sum[EST_ATP_STAR]);
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
    const ModelConfig *c = &a->m->cfg;
    int N = plan->n_nodes;
    int *layer_of = xmalloc(sizeof(int) * (size_t)(N > 0 ? N : 1));
    for (int n = 0; n < N; n++) {
        int last;
        job_window(job, plan->nodes[n].layer, c->n_layer, &layer_of[n], &last);
    }
    if (plan_nodes_one_layer(plan, job, c->n_layer)) { /* one layer at a time over the lean runs */
        LayerRoom room;
        layer_room_init(&room, c, r->T);
        for (int k = 0; k < r->n_metrics; k++) metric_estimates(a, job, plan, r, k, &room, layer_of, out, seconds);
        layer_room_free(&room);
    } else { /* a node reads several layers: the unit expands the prompt's lean runs for its own
              * duration (plan counts it) */
        PromptRuns full;
        prompt_runs_expand(r, a->m, &full);
        for (int k = 0; k < r->n_metrics; k++) metric_estimates(a, job, plan, &full, k, NULL, NULL, out, seconds);
        prompt_runs_expanded_free(&full);
    }
    free(layer_of);
}
