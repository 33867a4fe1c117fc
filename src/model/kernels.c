/* Which kernel family runs: the fastest this CPU has, or the one PATCHSWEEP_ISA names. All of
 * them give the same bits (kernels.h), so the choice is about speed only, and tests can run
 * every family the machine has and compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

static const Kernels *selected;

/* Every family this build knows, slowest first. */
static const Kernels *const families[] = {
    &kernels_generic,
#if defined(__x86_64__)
    &kernels_avx2, &kernels_avx512,
#elif defined(__aarch64__)
    &kernels_neon,
#endif
};
enum { N_FAMILIES = sizeof families / sizeof families[0] };

/* The deterministic math (core/detmath.c) needs fused multiply-add in hardware, so on x86-64
 * even the generic family does. */
#if defined(__x86_64__)
#include <cpuid.h>
/* F16C (the AVX2 family's 16-bit widening) by cpuid: clang 14's __builtin_cpu_supports does not
 * know the name. */
static int cpu_has_f16c(void) {
    unsigned eax, ebx, ecx, edx;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C);
}
#endif

static int cpu_runs(const Kernels *k) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("fma")) return 0;
    if (k == &kernels_avx2) return __builtin_cpu_supports("avx2") && cpu_has_f16c();
    if (k == &kernels_avx512) return __builtin_cpu_supports("avx512f");
#endif
    (void)k;
    return 1;
}

int kernels_available(const Kernels *out[], int cap) {
    int n = 0;
    for (int i = 0; i < N_FAMILIES; i++)
        if (cpu_runs(families[i]) && n < cap) out[n++] = families[i];
    return n;
}

int kernels_select(const char *name) {
    if (!name) name = getenv("PATCHSWEEP_ISA");
    if (name && !*name) name = NULL;
    const Kernels *runnable[N_FAMILIES];
    int n = kernels_available(runnable, N_FAMILIES);
    if (n == 0)
        return ps_fail(PS_EUSER, "this CPU has no fused multiply-add (FMA) instructions, which patchsweep's "
                                 "deterministic arithmetic needs (x86-64 CPUs since 2013 and every 64-bit ARM CPU have them)");
    if (!name) {
        selected = runnable[n - 1];
        return PS_OK;
    }
    for (int i = 0; i < N_FAMILIES; i++) {
        if (strcmp(name, families[i]->name) != 0) continue;
        if (!cpu_runs(families[i]))
            return ps_fail(PS_EUSER, "PATCHSWEEP_ISA=%s: this CPU cannot run the %s kernels", name, name);
        selected = families[i];
        return PS_OK;
    }
    char known[128] = "";
    for (int i = 0; i < N_FAMILIES; i++) {
        strcat(known, i ? ", " : "");
        strcat(known, families[i]->name);
    }
    return ps_fail(PS_EUSER, "PATCHSWEEP_ISA=%s is not a kernel family of this build (it has: %s)", name, known);
}

const Kernels *kernels(void) {
    /* The command line selects first and reports a failure as a user error; this path is for
     * library users (tests, benchmarks) that did not, and there is nothing to return to. */
    if (!selected && kernels_select(NULL) != PS_OK) {
        fprintf(stderr, "patchsweep: %s\n", ps_error());
        exit(PS_EUSER);
    }
    return selected;
}
