/* What the harnesses share: one private temporary folder per process, removed at exit, and
 * writing bytes to a file in it. Each harness calls the real entry point on those files. */
#ifndef PATCHSWEEP_FUZZ_UTIL_H
#define PATCHSWEEP_FUZZ_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "patchsweep/core.h"

static char fuzz_dir[256];

static inline void fuzz_remove_dir(void) {
    DIR *d = opendir(fuzz_dir);
    if (!d) return;
    char path[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(path, sizeof path, "%s/%s", fuzz_dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(fuzz_dir);
}

/* Creates the folder once (on first use); returns it. */
static inline const char *fuzz_tmpdir(void) {
    if (!fuzz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/psfuzz.XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fuzz_dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_remove_dir);
    }
    return fuzz_dir;
}

/* fuzz_dir/name into out. */
static inline void fuzz_path(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", fuzz_tmpdir(), name); }

/* Writes n bytes to fuzz_dir/name (replacing it); the path goes to out. */
static inline void fuzz_write(char *out, size_t cap, const char *name, const void *data, size_t n) {
    fuzz_path(out, cap, name);
    FILE *f = fopen(out, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(out);
        abort();
    }
}

/* Removes fuzz_dir/name if present (a file the previous input wrote). */
static inline void fuzz_unlink(const char *name) {
    char path[512];
    fuzz_path(path, sizeof path, name);
    unlink(path);
}

/* Copies a fixture file into fuzz_dir under the same base name. */
static inline void fuzz_copy(const char *from, const char *name) {
    FILE *f = fopen(from, "rb");
    if (!f) {
        perror(from);
        abort();
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) buf = realloc(buf, cap = cap ? 2 * cap : 65536);
        size_t got = fread(buf + n, 1, cap - n, f);
        if (!got) break;
        n += got;
    }
    fclose(f);
    char path[512];
    fuzz_write(path, sizeof path, name, buf, n);
    free(buf);
}

/* With FUZZ_VERBOSE set in the environment, says how an input ended: the error line a user would
 * see (status 2, PS_EUSER), or that it was accepted. For checking by hand what a reproducer
 * ends in now, e.g. FUZZ_VERBOSE=1 build-fuzz/tests/fuzz/fuzz_job FILE. */
static inline void fuzz_outcome(int rc) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (verbose) fprintf(stderr, "fuzz outcome: %s%s\n", rc ? "status 2: " : "accepted", rc ? ps_error() : "");
}

/* Where the fixtures are: PS_FIXTURES, set by CMake. */
#ifndef PS_FIXTURES
#error "PS_FIXTURES must name tests/fixtures"
#endif

#endif
