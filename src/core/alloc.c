#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"

static void out_of_memory(size_t n) {
    fprintf(stderr, "patchsweep: out of memory allocating %zu bytes\n", n);
    exit(PS_EINTERNAL);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) out_of_memory(count * size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

/* 64-byte alignment keeps BLAS packing and SIMD loops on their fast paths, and makes
 * results independent of where malloc happened to put a buffer. */
static void *alloc_aligned_zero(size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0) out_of_memory(bytes);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

float *alloc_floats(size_t n) { return alloc_aligned_zero(n * sizeof(float)); }
double *alloc_doubles(size_t n) { return alloc_aligned_zero(n * sizeof(double)); }
