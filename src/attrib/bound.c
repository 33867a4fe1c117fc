/* Subset-sampling statistics for the false-negative bound (attrib.h has the definitions). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

double normal_upper_quantile(double tail) {
    /* Bisection on the upper tail P(Z > x) = erfc(x / sqrt 2) / 2, which erfc computes to full
     * relative precision far into the tail (where 1 - Phi(x) would round to 0). */
    double lo = -40.0, hi = 40.0;
    for (int i = 0; i < 200 && hi - lo > 1e-13; i++) {
        double mid = 0.5 * (lo + hi);
        if (0.5 * det_erfc(mid / sqrt(2.0)) > tail) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

void bound_draw_subset(uint64_t seed, int p, int k, double inclusion, int U, uint8_t *in) {
    Rng rng;
    rng_seed(&rng, seed, (uint64_t)p, (uint64_t)k);
    for (int u = 0; u < U; u++) in[u] = rng_uniform(&rng) < inclusion;
}

void bound_cells(const double *subset_effect, int K, int U, double z, SubsetDraw draw, void *ctx, CellBound *out) {
    /* Two passes over the subsets on each side of every cell (means, then squared deviations
     * from them): no cancellation. sum, sq and count hold [cell][side], side 1 = in the subset. */
    size_t n2 = 2 * (size_t)U;
    double *sum = alloc_doubles(n2 + 1), *sq = alloc_doubles(n2 + 1);
    int *count = xcalloc(n2 + 1, sizeof(int));
    uint8_t *in = xmalloc((size_t)U + 1);
    for (int k = 0; k < K; k++) {
        draw(ctx, k, U, in);
        for (int n = 0; n < U; n++) {
            size_t i = 2 * (size_t)n + (in[n] ? 1 : 0);
            sum[i] += subset_effect[k];
            count[i]++;
        }
    }
    for (size_t i = 0; i < n2; i++) sum[i] = count[i] ? sum[i] / count[i] : NAN; /* now the means */
    const double *mean = sum;
    for (int k = 0; k < K; k++) {
        draw(ctx, k, U, in);
        for (int n = 0; n < U; n++) {
            size_t i = 2 * (size_t)n + (in[n] ? 1 : 0);
            double dev = subset_effect[k] - mean[i];
            sq[i] += dev * dev;
        }
    }
    for (int n = 0; n < U; n++) {
        const double *m = mean + 2 * (size_t)n, *s = sq + 2 * (size_t)n;
        const int *c = count + 2 * (size_t)n; /* [0] out of the subsets, [1] in */
        CellBound *b = &out[n];
        b->n_in = c[1];
        if (c[0] < 2 || c[1] < 2) {
            b->estimate = c[0] && c[1] ? m[1] - m[0] : NAN;
            b->se = b->ucb = INFINITY;
            continue;
        }
        b->estimate = m[1] - m[0];
        b->se = sqrt(s[1] / (c[1] - 1) / c[1] + s[0] / (c[0] - 1) / c[0]);
        b->ucb = fabs(b->estimate) + z * b->se;
    }
    free(sum), free(sq), free(count), free(in);
}

int bound_verified_count(const double *key, const int *order, int n, int k, int verify_ties, int *block) {
    *block = 0;
    if (k <= 0) return 0;
    if (k >= n) return n;
    double boundary = key[order[k - 1]];
    if (key[order[k]] != boundary) return k;
    int first = k - 1, end = k + 1;
    while (first > 0 && key[order[first - 1]] == boundary) first--;
    while (end < n && key[order[end]] == boundary) end++;
    *block = end - first;
    return verify_ties ? end : first;
}

int bound_top_k_found(const double *truth, const double *score, int n, int k, int *order) {
    if (k <= 0 || n <= 0) return 0;
    if (k > n) k = n;
    order_by_key(score, n, order);
    double cut = k < n ? score[order[k]] : -INFINITY; /* found: the cells scoring above it */
    order_by_key(truth, n, order);
    double kth = truth[order[k - 1]]; /* the true top k: every cell above it, and enough equal to it */
    int above = 0, above_found = 0, tied_found = 0;
    for (int i = 0; i < n; i++) {
        above += truth[i] > kth;
        if (!(score[i] > cut)) continue;
        above_found += truth[i] > kth;
        tied_found += truth[i] == kth;
    }
    int need = k - above;
    return above_found + (tied_found < need ? tied_found : need);
}
