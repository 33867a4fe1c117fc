/* Helpers shared by the cmocka tests: fixture paths, golden tensors, tolerant comparison. */
#ifndef PATCHSWEEP_TEST_SUPPORT_H
#define PATCHSWEEP_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include "patchsweep/safetensors.h"
#include "patchsweep/transformer.h"

/* fixtures/<rel> */
const char *fixture(const char *rel);
/* ../shared/<rel>, or NULL when ../shared is absent */
const char *shared_path(const char *rel);

/* A golden F32 tensor from a safetensors file (malloc'd; n = element count). Fails the test
 * when absent. */
float *golden_tensor(const StFile *f, const char *name, size_t *n);

/* An F32 golden tensor holding integers (token ids), as ints (malloc'd). */
int *golden_ints(const StFile *f, const char *name, int *n);

/* Compares every cached site of every layer ("L<l>.<site>" in the golden file: resid_pre, q,
 * k, v, pattern, z, attn_out, resid_mid, mlp_post, mlp_out, resid_post) with tolerance
 * atol + scale_tol * max|want| + rtol |want|, printing each tensor's error under label. */
void assert_sites_close(const RunCache *c, int n_layer, const StFile *g, const char *label, double atol,
                        double scale_tol, double rtol);

/* Fails the test unless |got - want| <= atol + rtol |want| everywhere; reports the worst. */
void assert_close(const char *what, const float *got, const float *want, size_t n, double atol, double rtol);

/* Max |got - want| (for reporting and for tests that assert on it). */
double max_abs_diff(const float *got, const float *want, size_t n);

#endif
