/* FNV-1a, 64 bit: fingerprints of jobs and weights (not cryptographic; it only has to tell
 * two different experiments apart). */
#include "patchsweep/core.h"

uint64_t hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
