/* Subset-sampling statistics for the false-negative bound (attrib.h has the definitions). */
#include <math.h>
#include <stdint.h>
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

void bound_cells(const double *subset_effect, const uint8_t *in_subset, int K, int U, double z, CellBound *out) {
    for (int n = 0; n < U; n++) {
        /* two passes (mean, then squared deviations) on each side: no cancellation */
        double sum[2] = {0, 0}, mean[2], sq[2] = {0, 0};
        int count[2] = {0, 0};
        for (int k = 0; k < K; k++) {
            int side = in_subset[(size_t)k * U + n] ? 1 : 0;
            sum[side] += subset_effect[k];
            count[side]++;
        }
        for (int side = 0; side < 2; side++) mean[side] = count[side] ? sum[side] / count[side] : NAN;
        for (int k = 0; k < K; k++) {
            int side = in_subset[(size_t)k * U + n] ? 1 : 0;
            double dev = subset_effect[k] - mean[side];
            sq[side] += dev * dev;
        }
        CellBound *b = &out[n];
        b->n_in = count[1];
        if (count[0] < 2 || count[1] < 2) {
            b->estimate = count[0] && count[1] ? mean[1] - mean[0] : NAN;
            b->se = b->ucb = INFINITY;
            continue;
        }
        b->estimate = mean[1] - mean[0];
        b->se = sqrt(sq[1] / (count[1] - 1) / count[1] + sq[0] / (count[0] - 1) / count[0]);
        b->ucb = fabs(b->estimate) + z * b->se;
    }
}
