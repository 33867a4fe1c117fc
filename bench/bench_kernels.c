/* bench_kernels: the forward product's speed on one core, in one run: every kernel family this
 * CPU runs, and single-thread OpenBLAS cblas_sgemm on the same products (the weights in the
 * nn.Linear layout [out, in], as the model holds them), over the row counts the engine uses
 * (a few rows per patched sequence) up to large ones.
 *
 * Reported: GFLOP/s per (shape, rows), each family's peak (its best at >= 144 rows), the ratio
 * of each family to OpenBLAS, and each family's speed on the same weights held in bfloat16
 * (widened inside the kernel, as a BF16 checkpoint's are) against float32. Timings are the best
 * of five ~0.1 s repeats.
 *
 * usage: bench_kernels [seconds_per_point=0.1] */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"
#include "patchsweep/ops.h"

static const int shapes[][2] = {{2304, 768}, {3072, 768}, {768, 3072}}; /* (out, in): qkv, MLP in, MLP out */
static const char *shape_names[] = {"qkv 2304x768", "mlp_in 3072x768", "mlp_out 768x3072"};
static const int rows[] = {1, 6, 12, 24, 48, 144, 512};
enum { N_SHAPES = 3, N_ROWS = 7 };

/* Best GFLOP/s over five repeats of about `seconds` each; blas selects OpenBLAS, packed16 (when
 * not NULL) our kernels on bfloat16 weights. */
static double gflops(int blas, int M, int N, int K, const float *a, const float *w, const float *packed,
                     const uint16_t *packed16, float *c, double seconds) {
    double best = 0.0;
    for (int rep = 0; rep < 5; rep++) {
        int calls = 0;
        double t0 = now_seconds(), t;
        do {
            if (blas) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, w, K, 0.0f, c, N);
            else if (packed16) matmul_forward_ref(c, a, (WeightRef){packed16, WEIGHTS_BF16, 1}, NULL, M, K, N);
            else matmul_forward(c, a, packed, NULL, M, K, N);
            calls++;
        } while ((t = now_seconds() - t0) < seconds);
        double rate = 2.0 * M * N * K * calls / t / 1e9;
        if (rate > best) best = rate;
    }
    return best;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    double seconds = argc > 1 ? atof(argv[1]) : 0.1;
    const Kernels *fam[8];
    int n_fam = kernels_available(fam, 8);
    double result[8 + 1][N_SHAPES][N_ROWS]; /* [family or OpenBLAS][shape][rows] */
    double bf16[8][N_SHAPES][N_ROWS];       /* [family][shape][rows], bfloat16 weights */
    Rng rng;
    rng_seed(&rng, 5, 0, 0);
    for (int s = 0; s < N_SHAPES; s++) {
        int N = shapes[s][0], K = shapes[s][1], M_max = rows[N_ROWS - 1];
        float *a = alloc_floats((size_t)M_max * K), *w = alloc_floats((size_t)N * K);
        float *packed = alloc_floats(packed_floats(N, K)), *c = alloc_floats((size_t)M_max * N);
        for (size_t i = 0; i < (size_t)M_max * K; i++) a[i] = (float)rng_normal(&rng);
        for (size_t i = 0; i < (size_t)N * K; i++) w[i] = (float)rng_normal(&rng);
        pack_weights(packed, w, N, K);
        uint16_t *packed16 = xmalloc(sizeof(uint16_t) * packed_floats(N, K));
        for (size_t i = 0; i < packed_floats(N, K); i++) {
            uint32_t bits;
            memcpy(&bits, &packed[i], sizeof bits);
            packed16[i] = (uint16_t)(bits >> 16);
        }
        for (int r = 0; r < N_ROWS; r++) {
            for (int f = 0; f < n_fam; f++) {
                kernels_select(fam[f]->name);
                result[f][s][r] = gflops(0, rows[r], N, K, a, w, packed, NULL, c, seconds);
                bf16[f][s][r] = gflops(0, rows[r], N, K, a, w, packed, packed16, c, seconds);
            }
            result[n_fam][s][r] = gflops(1, rows[r], N, K, a, w, packed, NULL, c, seconds);
        }
        free(a), free(w), free(packed), free(packed16), free(c);
    }
    printf("bench_kernels: forward product GFLOP/s, one core (best of 5 x %.2f s)\n", seconds);
    for (int s = 0; s < N_SHAPES; s++) {
        printf("\n  %-18s rows:", shape_names[s]);
        for (int r = 0; r < N_ROWS; r++) printf(" %7d", rows[r]);
        printf("\n");
        for (int f = 0; f <= n_fam; f++) {
            printf("  %-24s", f < n_fam ? fam[f]->name : "OpenBLAS (cblas_sgemm)");
            for (int r = 0; r < N_ROWS; r++) printf(" %7.1f", result[f][s][r]);
            printf("\n");
        }
        for (int f = 0; f < n_fam; f++) {
            printf("  %-8s / OpenBLAS       ", fam[f]->name);
            for (int r = 0; r < N_ROWS; r++) printf(" %6.2fx", result[f][s][r] / result[n_fam][s][r]);
            printf("\n");
        }
        for (int f = 0; f < n_fam; f++) {
            printf("  %-8s bf16 / float32   ", fam[f]->name);
            for (int r = 0; r < N_ROWS; r++) printf(" %6.2fx", bf16[f][s][r] / result[f][s][r]);
            printf("\n");
        }
    }
    printf("\n  peak (best at >= 144 rows):");
    for (int f = 0; f <= n_fam; f++) {
        double peak = 0.0;
        for (int s = 0; s < N_SHAPES; s++)
            for (int r = 0; r < N_ROWS; r++)
                if (rows[r] >= 144 && result[f][s][r] > peak) peak = result[f][s][r];
        printf("  %s %.1f", f < n_fam ? fam[f]->name : "OpenBLAS", peak);
    }
    printf(" GFLOP/s\n");
    return 0;
}
