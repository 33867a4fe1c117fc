#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "test_support.h"

const char *fixture(const char *rel) {
    static char buf[8][4096];
    static int next;
    char *out = buf[next++ % 8];
    snprintf(out, 4096, "%s/%s", PS_FIXTURES, rel);
    return out;
}

const char *shared_path(const char *rel) {
    static char buf[4096];
    struct stat st;
    if (stat(PS_SHARED, &st) != 0) return NULL;
    snprintf(buf, sizeof buf, "%s/%s", PS_SHARED, rel);
    return buf;
}

float *golden_tensor(const StFile *f, const char *name, size_t *n) {
    const StTensor *t = st_find(f, name);
    if (!t || strcmp(t->dtype, "F32") != 0) fail_msg("golden file %s has no F32 tensor \"%s\"", f->path, name);
    *n = (t->end - t->begin) / 4;
    float *out = malloc(*n * sizeof(float) + 4);
    memcpy(out, f->map + f->data_start + t->begin, *n * sizeof(float));
    return out;
}

double max_abs_diff(const float *got, const float *want, size_t n) {
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)got[i] - want[i]));
    return worst;
}

void assert_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol) {
    size_t worst_i = 0;
    double worst_excess = -1.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]), allowed = atol + rtol * fabs(want[i]);
        if (!(err <= allowed) && err - allowed > worst_excess) { /* NaN counts as a mismatch */
            worst_excess = isnan(err) ? INFINITY : err - allowed;
            worst_i = i;
        }
    }
    if (worst_excess >= 0.0)
        fail_msg("%s: element %zu is %.9g, expected %.9g (atol %g, rtol %g; max |diff| %.3g)", what, worst_i,
                 got[worst_i], want[worst_i], atol, rtol, max_abs_diff(got, want, n));
}

int *golden_ints(const StFile *f, const char *name, int *n) {
    size_t count;
    float *values = golden_tensor(f, name, &count);
    int *out = malloc(sizeof(int) * (count ? count : 1));
    for (size_t i = 0; i < count; i++) out[i] = (int)values[i];
    free(values);
    *n = (int)count;
    return out;
}

void assert_sites_close(const RunCache *c, int n_layer, const StFile *g, const char *label, double atol,
                        double scale_tol, double rtol) {
    static const char *sites[] = {"resid_pre", "q", "k", "v", "pattern", "z", "attn_out",
                                  "resid_mid", "mlp_post", "mlp_out", "resid_post"};
    for (int l = 0; l < n_layer; l++) {
        const LayerActs *a = &c->layer[l];
        const float *bufs[] = {a->resid_pre, a->q, a->k, a->v, a->pattern, a->z, a->attn_out,
                               a->resid_mid, a->mlp_post, a->mlp_out, a->resid_post};
        for (size_t s = 0; s < sizeof sites / sizeof sites[0]; s++) {
            char name[64];
            snprintf(name, sizeof name, "L%d.%s", l, sites[s]);
            size_t n;
            float *want = golden_tensor(g, name, &n);
            double scale = 0.0;
            for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
            printf("  %s %-14s max |value| %.3g, max |diff| %.3g\n", label, name, scale, max_abs_diff(bufs[s], want, n));
            assert_close(name, bufs[s], want, n, atol + scale_tol * scale, rtol);
            free(want);
        }
    }
}
