/* The QK fix of AtP* (Kramar et al. 2024, section 3.1.1): attention probabilities are
 * recomputed exactly under the patch of a query or key, and only what lies downstream of them is
 * linearised, with G = dL/dA from the base run's backward pass. A saturated softmax has a
 * vanishing local gradient, so plain AtP misses patches that move attention a lot; this does not.
 *
 * Query at row t: only row t of the pattern changes; recompute it with the source query.
 * Key at position j: in every row t >= j exactly one logit changes, by
 * Delta_tj = q_t . (k'_j - k_j) / sqrt(d_head). The other probabilities of the row all scale by
 * (1 - A'_tj) / (1 - A_tj), which gives
 *     sum_s (A'_ts - A_ts) G_ts = (G_tj - gbar_t) (A'_tj - A_tj) / (1 - A_tj)         (gbar_t = sum_s A_ts G_ts)
 *                              = (G_tj - gbar_t,-j) (A'_tj - A_tj),
 * gbar_t,-j the mean of G over the row's other keys, weighted by their probabilities. The
 * second form is the one computed: when A_tj is near 1, the first divides a difference that
 * rounding dominates by a tiny 1 - A_tj. Both factors come from the row's scores in double:
 * with l_tj = the logit of A_tj against the other keys, A_tj = sigmoid(l_tj) and
 * A'_tj = sigmoid(l_tj + Delta_tj), and sums over "the other keys" are formed without
 * subtracting the dominant key; when the dominant key itself is patched, its logit against the
 * others is formed in log space (their weight may underflow to 0 against it). O(T^2) per head. */
#include <math.h>
#include <stdlib.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

static double dot(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static double sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + det_exp(-x)) : det_exp(x) / (1.0 + det_exp(x)); }

/* sigmoid(l + delta) - sigmoid(l), without the cancellation of two values near 1 */
static double sigmoid_change(double l, double delta) {
    return l > 0 ? sigmoid(-l) - sigmoid(-l - delta) : sigmoid(l + delta) - sigmoid(l);
}

/* Row t of head h: sum_s (softmax(scores)_s - A_ts) G_ts, scores given for s <= t. */
static double pattern_change(const LayerView *v, int h, int t, const double *scores) {
    int T = v->T;
    double maxv = -INFINITY, z = 0.0, sum = 0.0;
    for (int s = 0; s <= t; s++) maxv = fmax(maxv, scores[s]);
    for (int s = 0; s <= t; s++) z += det_exp(scores[s] - maxv);
    const float *A = v->base->pattern + ((size_t)h * T + t) * T, *G = v->grad->pattern + ((size_t)h * T + t) * T;
    for (int s = 0; s <= t; s++) sum += (det_exp(scores[s] - maxv) / z - A[s]) * G[s];
    return sum;
}

/* The source run's q_rot is its query rotated at this same position, as the exact patch does. */
double qk_fix_query(const LayerView *v, int h, int pos) {
    const ModelConfig *c = v->c;
    int T = v->T, dh = c->d_head, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), g = h / (c->n_head / c->n_kv_head);
    double scale = 1.0 / sqrt((double)dh), *scores = v->scratch->row, sum = 0.0;
    int lo = pos < 0 ? 0 : pos, hi = pos < 0 ? T - 1 : pos;
    for (int t = lo; t <= hi; t++) {
        const float *q = v->src ? v->src->q_rot + (size_t)t * qd + (size_t)h * dh : NULL;
        for (int s = 0; s <= t; s++)
            scores[s] = q ? dot(q, v->base->k_rot + (size_t)s * kvd + (size_t)g * dh, dh) * scale : 0.0;
        sum += pattern_change(v, h, t, scores);
    }
    return sum;
}

void qk_fix_key(const LayerView *v, int g, const int *positions, int n_positions, double *out) {
    const ModelConfig *c = v->c;
    int T = v->T, dh = c->d_head, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), group = c->n_head / c->n_kv_head;
    double scale = 1.0 / sqrt((double)dh);
    /* per row t: scores a_ts, their max, and over the keys other than the max: the sum of
     * w_s = e^(a_ts - max) and of w_s G_ts */
    QkScratch *room = v->scratch;
    double *scores = room->scores, *row_max = room->row_max, *rest_w = room->rest_w, *rest_wg = room->rest_wg;
    double *second_max = room->second_max, *rest2_w = room->rest2_w, *rest2_wg = room->rest2_wg;
    int *argmax = room->argmax;
    const float *k_base = v->base->k_rot + (size_t)g * dh;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *G = v->grad->pattern + (size_t)h * T * T;
        for (int t = 0; t < T; t++) {
            const float *q = v->base->q_rot + (size_t)t * qd + (size_t)h * dh;
            double *a = scores + (size_t)t * T;
            row_max[t] = second_max[t] = -INFINITY, argmax[t] = 0;
            rest_w[t] = rest_wg[t] = rest2_w[t] = rest2_wg[t] = 0.0;
            for (int s = 0; s <= t; s++) {
                a[s] = dot(q, k_base + (size_t)s * kvd, dh) * scale;
                if (a[s] > row_max[t]) row_max[t] = a[s], argmax[t] = s;
            }
            for (int s = 0; s <= t; s++)
                if (s != argmax[t]) second_max[t] = fmax(second_max[t], a[s]);
            /* the other keys' weight, against the max and (for when the max's own key is patched,
             * where it may underflow to 0 against the max) against the second max */
            for (int s = 0; s <= t; s++)
                if (s != argmax[t]) {
                    double w = det_exp(a[s] - row_max[t]), w2 = det_exp(a[s] - second_max[t]);
                    rest_w[t] += w, rest_wg[t] += w * G[(size_t)t * T + s];
                    rest2_w[t] += w2, rest2_wg[t] += w2 * G[(size_t)t * T + s];
                }
        }
        for (int j = 0; j < n_positions; j++) {
            int p = positions[j];
            if (p >= T) continue;
            if (p < 0) { /* every key patched at once: recompute each row */
                double *row = room->row;
                for (int t = 0; t < T; t++) {
                    const float *q = v->base->q_rot + (size_t)t * qd + (size_t)h * dh;
                    for (int s = 0; s <= t; s++)
                        row[s] = v->src ? dot(q, v->src->k_rot + (size_t)s * kvd + (size_t)g * dh, dh) * scale : 0.0;
                    out[j] += pattern_change(v, h, t, row);
                }
                continue;
            }
            const float *k_old = k_base + (size_t)p * kvd;
            const float *k_new = v->src ? v->src->k_rot + (size_t)p * kvd + (size_t)g * dh : NULL;
            for (int t = p; t < T; t++) {
                if (t == 0) continue; /* the row's only key: A' = A = 1 */
                const float *q = v->base->q_rot + (size_t)t * qd + (size_t)h * dh;
                double delta = ((k_new ? dot(q, k_new, dh) : 0.0) - dot(q, k_old, dh)) * scale;
                double G_p = G[(size_t)t * T + p], l, mean_g;
                if (p == argmax[t]) { /* in log space: the others may weigh nothing against the max */
                    l = (row_max[t] - second_max[t]) - det_log(rest2_w[t]);
                    mean_g = rest2_wg[t] / rest2_w[t];
                } else { /* the others include the max (weight 1): never subtract its term */
                    double gap = scores[(size_t)t * T + p] - row_max[t], w_p = det_exp(gap);
                    double others = 1.0 + rest_w[t] - w_p;
                    l = gap - det_log(others); /* log w_p is the gap itself, even where w_p underflows */
                    mean_g = (G[(size_t)t * T + argmax[t]] + rest_wg[t] - w_p * G_p) / others;
                }
                out[j] += (G_p - mean_g) * sigmoid_change(l, delta);
            }
        }
    }
}

void qk_scratch_init(QkScratch *s, int max_T) {
    size_t T = (size_t)(max_T > 0 ? max_T : 1);
    s->scores = alloc_doubles(T * T);
    s->row = alloc_doubles(T), s->row_max = alloc_doubles(T), s->rest_w = alloc_doubles(T), s->rest_wg = alloc_doubles(T);
    s->second_max = alloc_doubles(T), s->rest2_w = alloc_doubles(T), s->rest2_wg = alloc_doubles(T);
    s->argmax = xcalloc(T, sizeof(int));
}

void qk_scratch_free(QkScratch *s) {
    free(s->scores), free(s->row), free(s->row_max), free(s->rest_w), free(s->rest_wg), free(s->argmax);
    free(s->second_max), free(s->rest2_w), free(s->rest2_wg);
}
