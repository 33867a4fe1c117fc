/* Core services every module uses: error reporting, allocation, files, JSON helpers,
 * a reproducible random number generator, hashing and a clock. */
#ifndef PATCHSWEEP_CORE_H
#define PATCHSWEEP_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

/* ---- errors ------------------------------------------------------------------------------
 * A failing function records one line (what, where, what was expected) and returns its
 * status. The CLI prints that line and exits with the status: 2 for anything a user can cause
 * (bad file, bad job, bad tokens), 1 for internal failures. */
enum { PS_OK = 0, PS_EINTERNAL = 1, PS_EUSER = 2 };

int ps_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the recorded message with "context: " (e.g. the file the error came from). */
int ps_fail_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *ps_error(void);
void ps_error_clear(void);
/* Prints the recorded error as "patchsweep: <line>" on stderr (when status is not 0) and
 * returns status: what a command does with a failure. */
int report_error(int status);

/* "s" unless n is 1: "%d token%s" (messages count things that are often one). */
static inline const char *plural_s(long n) { return n == 1 ? "" : "s"; }

/* ---- allocation ---------------------------------------------------------------------------
 * Out of memory is not recoverable here: these print one line and exit(1). Float buffers are
 * 64-byte aligned and zeroed. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
float *alloc_floats(size_t n);
double *alloc_doubles(size_t n);

/* ---- files --------------------------------------------------------------------------------- */
/* Reads a whole file into a NUL-terminated buffer. Missing, unreadable, not a regular file (a
 * pipe, /dev/zero) or larger than READ_FILE_MAX: PS_EUSER. */
#define READ_FILE_MAX ((size_t)1 << 30)
int read_text_file(const char *path, char **out, size_t *len);
/* open(2) for reading a file that must be a regular file: the descriptor and its size, or -1
 * with PS_EUSER recorded. Opened non-blocking, so a FIFO where a file belongs fails at once
 * instead of waiting for a writer forever. */
int open_regular_file(const char *path, size_t *size);
int file_exists(const char *path);
/* stat(2) (following links) says a regular file; never opens it, so never blocks. For paths
 * handed to a library that opens them itself (HDF5). */
int is_regular_file(const char *path);
/* The size of every path buffer: PATH_MAX on Linux. */
#define PATH_CAP 4096
/* dir + "/" + name into out (size cap <= PATH_CAP), normalised; an absolute name is returned as
 * is. PS_EUSER with one line when it does not fit (never a silently shortened path). */
int path_join(char *out, size_t cap, const char *dir, const char *name);
/* Lexical normalisation in place (at most PATH_CAP - 1 characters): drops "." parts and folds
 * "name/.." (no file system access). */
void path_normalize(char *path);
/* Creates a folder and its missing parents (like mkdir -p); 0 on success. */
int make_dirs(const char *path);
/* The path of `to` relative to the folder from_dir, both resolved on the file system
 * ("../models/x"); -1 when either does not exist or it does not fit. */
int path_relative(char *out, size_t cap, const char *from_dir, const char *to);
/* The folder part of a path ("." when there is none). */
void path_dirname(char *out, size_t cap, const char *path);

/* ---- the environment ---------------------------------------------------------------------- */
/* An integer environment variable in [lo, hi]; *out = -1 when unset or empty. */
int env_int(const char *name, long lo, long hi, long *out);

/* ---- JSON helpers: each returns PS_EUSER with "<where>: <key> ..." on a wrong type ---------- */
/* Parses JSON text (len bytes; where names it in errors: "file:line:column: JSON syntax error"),
 * refusing duplicate keys in any object. */
int json_parse_text(const char *text, size_t len, const char *where, cJSON **out);
int json_parse_file(const char *path, cJSON **out);
/* PS_EUSER, naming the key, when any object in the tree (node and its siblings) repeats a key. */
int json_check_unique_keys(const cJSON *node, const char *where);
/* An integer in [lo, hi]: anything else (a fraction, out of range, beyond what a double holds
 * exactly) is refused before it is converted, so nothing wraps. */
int json_get_int(const cJSON *obj, const char *key, const char *where, int required, long lo, long hi, long *out);
/* The largest size (dimension, count) any file may claim: far beyond any real model. */
#define JSON_SIZE_MAX (1L << 30)
/* The largest seed: every integer up to 2^53 is exact in JSON's doubles. */
#define JSON_SEED_MAX (1L << 53)
int json_get_number(const cJSON *obj, const char *key, const char *where, int required, double *out);
int json_get_string(const cJSON *obj, const char *key, const char *where, int required, const char **out);
int json_get_bool(const cJSON *obj, const char *key, const char *where, int required, int *out);
/* The object as compact JSON text (malloc'd; free with free()); deletes the object. */
char *json_take_text(cJSON *obj);

/* ---- reproducible randomness ----------------------------------------------------------------
 * splitmix64: the whole state is one 64-bit counter, so a stream can be derived from
 * (seed, prompt, sample) on any rank and any language (docs/methods.md has the recipe). */
typedef struct { uint64_t state; } Rng;
void rng_seed(Rng *r, uint64_t seed, uint64_t stream_a, uint64_t stream_b);
uint64_t rng_next(Rng *r);
double rng_uniform(Rng *r);  /* in [0, 1), 53 random bits */
double rng_normal(Rng *r);   /* standard normal, Box-Muller, one value per two uniforms */

/* ---- deterministic math (src/core/detmath.c) ------------------------------------------------
 * exp, log, ... with the same bits on every CPU and C library (SLEEF's bit-consistent "finz"
 * functions, at most 1 ulp of error, erfc 1.5). Every value that reaches a results file or a
 * trained model uses these, never <math.h>'s transcendental functions; sqrt, fma and the basic
 * operations are exactly rounded by IEEE 754 and need no wrapper. */
float det_expf(float x);
float det_tanhf(float x);
float det_erff(float x);
double det_exp(double x);
double det_log(double x);
double det_pow(double x, double y);
double det_sin(double x);
double det_cos(double x);
double det_erfc(double x);

/* ---- ordering ---------------------------------------------------------------------------------
 * order[0..n) = the indices 0..n-1 by key, largest first, NaN last, ties in index order (so a
 * ranking is the same on every machine). */
void order_by_key(const double *key, int n, int *order);

/* ---- hashing (FNV-1a 64) ---------------------------------------------------------------------- */
uint64_t hash_bytes(uint64_t h, const void *data, size_t n);
#define HASH_INIT 0xcbf29ce484222325ULL

/* ---- time ------------------------------------------------------------------------------------- */
double now_seconds(void);  /* monotonic */
/* CPU seconds of the calling thread: what it did, not what it waited for (nor, on an oversubscribed
 * core, the time another process had the core). */
double thread_cpu_seconds(void);

/* Threads per rank (src/core/threads.c): threads_start(n) makes a pool of n threads, the caller
 * included (1: none); threads_run(task, ctx) calls task(ctx, i, n) for i = 0..n-1 side by side
 * and returns when all are done. Tasks must split work, never share a reduction, so the result
 * does not depend on n. */
int threads_start(int n);
void threads_stop(void);
int threads_count(void);
void threads_run(void (*task)(void *ctx, int index, int count), void *ctx);
/* range(ctx, lo, hi) over [0, n) split into one contiguous share per thread, each share a
 * multiple of grain items (the last one excepted); on one thread when n < min_n. For loops
 * whose items are independent (rows of a norm, chunks of an activation). */
void threads_for(long n, long grain, long min_n, void (*range)(void *ctx, long lo, long hi), void *ctx);

#endif
