/* splitmix64 (Steele, Lea, Flood 2014): tiny, statistically sound for our use (noise draws and
 * permutations), and trivially reproducible in Python for the reference tests. */
#include <math.h>
#include "patchsweep/core.h"

void rng_seed(Rng *r, uint64_t seed, uint64_t stream_a, uint64_t stream_b) {
    /* Mixing the stream ids through the generator itself keeps nearby seeds independent. Each
     * step draws first, then XORs into the state the draw left behind (docs/methods.md). */
    r->state = seed;
    uint64_t mix = rng_next(r) + stream_a * 0x9e3779b97f4a7c15ULL;
    r->state ^= mix;
    mix = rng_next(r) + stream_b * 0xbf58476d1ce4e5b9ULL;
    r->state ^= mix;
}

uint64_t rng_next(Rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

double rng_uniform(Rng *r) { return (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double rng_normal(Rng *r) {
    /* 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - rng_uniform(r);
    double u2 = rng_uniform(r);
    return sqrt(-2.0 * det_log(u1)) * det_cos(2.0 * M_PI * u2);
}
