/* Rankings: indices sorted by a key, with NaN and ties placed the same way everywhere. */
#include <math.h>
#include <stdlib.h>
#include "patchsweep/core.h"

typedef struct {
    double key;
    int index;
} Keyed;

/* Largest key first, NaN last, ties in index order. */
static int by_key(const void *a, const void *b) {
    const Keyed *x = a, *y = b;
    int x_nan = isnan(x->key), y_nan = isnan(y->key);
    if (x_nan != y_nan) return x_nan - y_nan;
    if (!x_nan && x->key != y->key) return x->key < y->key ? 1 : -1;
    return (x->index > y->index) - (x->index < y->index);
}

void order_by_key(const double *key, int n, int *order) {
    Keyed *keyed = xmalloc(sizeof(Keyed) * (size_t)(n > 0 ? n : 1));
    for (int i = 0; i < n; i++) keyed[i] = (Keyed){key[i], i};
    qsort(keyed, (size_t)n, sizeof(Keyed), by_key);
    for (int i = 0; i < n; i++) order[i] = keyed[i].index;
    free(keyed);
}
