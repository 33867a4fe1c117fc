/* The /circuits group of a results file (docs/circuits.md, "Results file"): written by rank 0
 * of `patchsweep circuit`, prompt by prompt, each unit's done flag after its values; then the
 * faithfulness summaries and curves once every unit is done. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/circuits.h"
#include "patchsweep/core.h"
#include "patchsweep/store.h"

enum { NAME = 32, CHOICE = 300 };

static int failed_write(const CircuitFile *cf, const char *what) {
    return ps_fail(PS_EUSER, "%s: writing /circuits/%s failed (disk full?)", cf->path, what);
}

/* Whether the group holds this key's units: the same canonical key and fingerprint. */
static int same_key(hid_t file, const char *key, const char *fingerprint) {
    if (H5Lexists(file, "/circuits", H5P_DEFAULT) <= 0 || H5Lexists(file, "/circuits/done", H5P_DEFAULT) <= 0) return 0;
    hid_t g = H5Gopen2(file, "/circuits", H5P_DEFAULT);
    char *job = h5_string_attr(g, "job"), *print = h5_string_attr(g, "fingerprint");
    int same = job && print && strcmp(job, key) == 0 && strcmp(print, fingerprint) == 0;
    free(job), free(print);
    H5Gclose(g);
    return same;
}

static int create_group(CircuitFile *cf, const Job *job, const Circuits *cs, const char *fingerprint) {
    const CircuitsSpec *spec = job->circuits;
    int C = cf->C, A = cf->A, P = cf->P, M = cf->M, K = cf->K, E = cs->E, S = cs->S;
    if (H5Lexists(cf->file, "/circuits", H5P_DEFAULT) > 0 && H5Ldelete(cf->file, "/circuits", H5P_DEFAULT) < 0)
        return ps_fail(PS_EUSER, "%s: cannot replace the /circuits group", cf->path);
    cf->group = H5Gcreate2(cf->file, "/circuits", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (cf->group < 0) return ps_fail(PS_EUSER, "%s: cannot create the /circuits group", cf->path);
    char *sets = xcalloc((size_t)C + 1, NAME), *edge_names = xcalloc((size_t)E + 1, 128), *curves = xcalloc((size_t)K + 1, NAME);
    char *choices = xcalloc((size_t)A, CHOICE);
    int *k = xmalloc(sizeof(int) * ((size_t)C + 1)), *size = xmalloc(sizeof(int) * ((size_t)C + 1));
    uint8_t *all = xmalloc((size_t)C + 1), *members = xmalloc((size_t)C * E * S + 1);
    for (int c = 0; c < C; c++) {
        const CircuitRow *row = &cs->rows[c];
        snprintf(sets + (size_t)c * NAME, NAME, "%s", spec->sets[row->set].name);
        k[c] = row->k, size[c] = row->size, all[c] = (uint8_t)row->all_positions;
        memcpy(members + (size_t)c * E * S, row->members, (size_t)E * S);
    }
    for (int e = 0; e < E; e++) edge_name(&cs->edges[e], edge_names + (size_t)e * 128, 128);
    for (int a = 0; a < A; a++) snprintf(choices + (size_t)a * CHOICE, CHOICE, "%s", spec->choices[a].name);
    for (int i = 0, n = 0; i < spec->n_sets; i++)
        if (spec->sets[i].n_k) snprintf(curves + (size_t)n++ * NAME, NAME, "%s", spec->sets[i].name);
    hsize_t c1[1] = {(hsize_t)C}, ces[3] = {(hsize_t)C, (hsize_t)E, (hsize_t)S};
    hid_t g = cf->group;
    int failed = h5_write_strings(g, "set", sets, (size_t)C, NAME);
    failed |= h5_write_small(g, "k", H5T_STD_I32LE, 1, c1, k) || h5_write_small(g, "size", H5T_STD_I32LE, 1, c1, size);
    failed |= h5_write_small(g, "members", H5T_STD_U8LE, 3, ces, members);
    failed |= h5_write_small(g, "all_positions", H5T_STD_U8LE, 1, c1, all);
    failed |= h5_write_strings(g, "choice", choices, (size_t)A, CHOICE);
    failed |= h5_write_strings(g, "edge_name", edge_names, (size_t)E, 128);
    if (K) failed |= h5_write_strings(g, "sets/name", curves, (size_t)K, NAME);
    free(sets), free(edge_names), free(curves), free(choices), free(k), free(size), free(all), free(members);
    if (failed) return failed_write(cf, "set, k, size, members, all_positions, choice");
    /* the values, NaN (and -1, 0) until written */
    double nan = NAN;
    int minus = -1;
    uint8_t zero = 0;
    hsize_t pm[2] = {(hsize_t)P, (hsize_t)M}, apm[3] = {(hsize_t)A, (hsize_t)P, (hsize_t)M};
    hsize_t capm[4] = {(hsize_t)C, (hsize_t)A, (hsize_t)P, (hsize_t)M}, cam[3] = {(hsize_t)C, (hsize_t)A, (hsize_t)M};
    hsize_t kam[3] = {(hsize_t)K, (hsize_t)A, (hsize_t)M}, cap[3] = {(hsize_t)C, (hsize_t)A, (hsize_t)P};
    struct { const char *name; hid_t type; int rank; const hsize_t *dims; const void *fill; } values[] = {
        {"full", H5T_IEEE_F64LE, 2, pm, &nan}, {"empty", H5T_IEEE_F64LE, 3, apm, &nan},
        {"metric", H5T_IEEE_F64LE, 4, capm, &nan}, {"faithfulness", H5T_IEEE_F64LE, 4, capm, &nan},
        {"ratio_of_means", H5T_IEEE_F64LE, 3, cam, &nan}, {"mean_of_ratios", H5T_IEEE_F64LE, 3, cam, &nan},
        {"median", H5T_IEEE_F64LE, 3, cam, &nan}, {"q1", H5T_IEEE_F64LE, 3, cam, &nan}, {"q3", H5T_IEEE_F64LE, 3, cam, &nan},
        {"sets/auc", H5T_IEEE_F64LE, 3, kam, &nan}, {"sets/k80", H5T_STD_I32LE, 3, kam, &minus},
        {"sets/k90", H5T_STD_I32LE, 3, kam, &minus}, {"sets/k100", H5T_STD_I32LE, 3, kam, &minus},
        {"done", H5T_STD_U8LE, 3, cap, &zero},
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        if (!K && strncmp(values[i].name, "sets/", 5) == 0) continue;
        hid_t memory = values[i].type == H5T_IEEE_F64LE ? H5T_NATIVE_DOUBLE : values[i].type == H5T_STD_I32LE ? H5T_NATIVE_INT
                                                                                                            : H5T_NATIVE_UINT8;
        hid_t d = h5_create_dataset(g, values[i].name, values[i].type, values[i].rank, values[i].dims, NULL);
        if (d < 0) return failed_write(cf, values[i].name);
        /* the fill, written whole (the file's fill value would need the file's byte order) */
        size_t n = 1;
        for (int r = 0; r < values[i].rank; r++) n *= values[i].dims[r];
        size_t elem = values[i].type == H5T_IEEE_F64LE ? 8 : values[i].type == H5T_STD_I32LE ? 4 : 1;
        unsigned char *buf = xmalloc(n * elem + 1);
        for (size_t j = 0; j < n; j++) memcpy(buf + j * elem, values[i].fill, elem);
        int bad = H5Dwrite(d, memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0;
        free(buf);
        H5Dclose(d);
        if (bad) return failed_write(cf, values[i].name);
    }
    h5_set_string_attr(g, "job", spec->canonical);
    h5_set_string_attr(g, "fingerprint", fingerprint);
    double seconds = 0.0;
    h5_set_number_attr(g, "seconds", H5T_NATIVE_DOUBLE, &seconds);
    return H5Fflush(cf->file, H5F_SCOPE_GLOBAL) < 0 ? failed_write(cf, "(flush)") : PS_OK;
}

int circuit_file_open(CircuitFile *cf, hid_t file, const char *path, const Job *job, const Circuits *cs,
                      const char *fingerprint, uint8_t **done) {
    const CircuitsSpec *spec = job->circuits;
    memset(cf, 0, sizeof *cf);
    cf->file = file, cf->group = -1, cf->path = path;
    cf->C = cs->C, cf->A = spec->n_choices, cf->P = job->n_prompts, cf->M = job->n_metrics;
    for (int i = 0; i < spec->n_sets; i++) cf->K += spec->sets[i].n_k > 0;
    size_t units = (size_t)cf->C * cf->A * cf->P;
    *done = xcalloc(units + 1, 1);
    if (!same_key(file, spec->canonical, fingerprint)) return create_group(cf, job, cs, fingerprint);
    cf->group = H5Gopen2(file, "/circuits", H5P_DEFAULT);
    hsize_t dims[3];
    uint8_t *stored = h5_read_all(file, "/circuits/done", H5T_NATIVE_UINT8, 1, 3, dims);
    if (!stored || dims[0] != (hsize_t)cf->C || dims[1] != (hsize_t)cf->A || dims[2] != (hsize_t)cf->P) {
        free(stored);
        return ps_fail(PS_EUSER, "%s: /circuits/done is not [%d, %d, %d] as this job's circuits (a damaged file); remove the "
                                 "/circuits group and rerun", path, cf->C, cf->A, cf->P);
    }
    memcpy(*done, stored, units);
    free(stored);
    return PS_OK;
}

/* Writes count[] elements of a dataset at start[] from buf (memory type type). */
static int write_slab(hid_t g, const char *name, hid_t type, int rank, const hsize_t *start, const hsize_t *count,
                      const void *buf) {
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) return -1;
    hid_t space = H5Dget_space(d), mem = H5Screate_simple(rank, count, NULL);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    herr_t status = H5Dwrite(d, type, mem, space, H5P_DEFAULT, buf);
    H5Sclose(mem), H5Sclose(space), H5Dclose(d);
    return status < 0 ? -1 : 0;
}

/* (C - empty) / (full - empty); NaN when full = empty. */
static double faithfulness(double circuit, double full, double empty) {
    return full == empty ? NAN : (circuit - empty) / (full - empty);
}

int circuit_file_write_prompt(CircuitFile *cf, int p, const double *full, const double *empty, const double *metric,
                              const uint8_t *computed) {
    int A = cf->A, M = cf->M;
    hsize_t pm0[2] = {(hsize_t)p, 0}, pm1[2] = {1, (hsize_t)M};
    if (write_slab(cf->group, "full", H5T_NATIVE_DOUBLE, 2, pm0, pm1, full) < 0) return failed_write(cf, "full");
    for (int a = 0; a < A; a++) {
        hsize_t start[3] = {(hsize_t)a, (hsize_t)p, 0}, count[3] = {1, 1, (hsize_t)M};
        if (write_slab(cf->group, "empty", H5T_NATIVE_DOUBLE, 3, start, count, empty + (size_t)a * M) < 0)
            return failed_write(cf, "empty");
    }
    double *faith = alloc_doubles((size_t)M);
    for (int c = 0; c < cf->C; c++)
        for (int a = 0; a < A; a++) {
            if (!computed[(size_t)c * A + a]) continue;
            const double *values = metric + ((size_t)c * A + a) * M;
            for (int i = 0; i < M; i++) faith[i] = faithfulness(values[i], full[i], empty[(size_t)a * M + i]);
            hsize_t start[4] = {(hsize_t)c, (hsize_t)a, (hsize_t)p, 0}, count[4] = {1, 1, 1, (hsize_t)M};
            if (write_slab(cf->group, "metric", H5T_NATIVE_DOUBLE, 4, start, count, values) < 0 ||
                write_slab(cf->group, "faithfulness", H5T_NATIVE_DOUBLE, 4, start, count, faith) < 0) {
                free(faith);
                return failed_write(cf, "metric");
            }
        }
    free(faith);
    /* the values are in the file before any flag says so */
    if (H5Fflush(cf->file, H5F_SCOPE_GLOBAL) < 0) return failed_write(cf, "(flush)");
    uint8_t one = 1;
    for (int c = 0; c < cf->C; c++)
        for (int a = 0; a < A; a++) {
            hsize_t start[3] = {(hsize_t)c, (hsize_t)a, (hsize_t)p}, count[3] = {1, 1, 1};
            if (computed[(size_t)c * A + a] && write_slab(cf->group, "done", H5T_NATIVE_UINT8, 3, start, count, &one) < 0)
                return failed_write(cf, "done");
        }
    return H5Fflush(cf->file, H5F_SCOPE_GLOBAL) < 0 ? failed_write(cf, "(flush)") : PS_OK;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted x[0..n) with linear interpolation between order statistics (numpy's
 * default): position q (n - 1). */
static double quantile(const double *x, int n, double q) {
    if (n == 0) return NAN;
    double at = q * (n - 1);
    int lo = (int)floor(at), hi = lo + 1 < n ? lo + 1 : lo;
    return x[lo] + (x[hi] - x[lo]) * (at - lo);
}

/* The summaries of one (circuit, choice, metric) over prompts. */
static void summarise(const double *metric, const double *full, const double *empty, const double *faith, int P,
                      size_t step, double out[5], double *sorted) {
    double mc = 0.0, mf = 0.0, me = 0.0, sum = 0.0;
    int n = 0;
    for (int p = 0; p < P; p++) {
        mc += metric[p * step], mf += full[p * step], me += empty[p * step];
        if (!isnan(faith[p * step])) sorted[n++] = faith[p * step], sum += faith[p * step];
    }
    out[0] = faithfulness(mc / P, mf / P, me / P);
    out[1] = n ? sum / n : NAN;
    qsort(sorted, (size_t)n, sizeof(double), compare_doubles);
    out[2] = quantile(sorted, n, 0.5), out[3] = quantile(sorted, n, 0.25), out[4] = quantile(sorted, n, 0.75);
}

/* A curve's area (x = k / items, the point (0, 0) added, trapezoids, over the largest x) and the
 * smallest k reaching 0.8, 0.9 and 1.0 (-1: none). */
static void curve(const int *k, const double *faith, int n, double items, double *auc, int reach[3]) {
    int *order = xmalloc(sizeof(int) * (size_t)n);
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++) /* by k, ascending (insertion: lists are short) */
        for (int j = i; j > 0 && k[order[j]] < k[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    double area = 0.0, x0 = 0.0, y0 = 0.0;
    for (int i = 0; i < n; i++) {
        double x = fmin((double)k[order[i]], items) / items, y = faith[order[i]];
        area += (x - x0) * (y + y0) / 2.0;
        x0 = x, y0 = y;
    }
    *auc = x0 > 0 ? area / x0 : NAN;
    static const double levels[3] = {0.8, 0.9, 1.0};
    for (int l = 0; l < 3; l++) {
        reach[l] = -1;
        for (int i = 0; i < n && reach[l] < 0; i++)
            if (faith[order[i]] >= levels[l]) reach[l] = k[order[i]];
    }
    free(order);
}

int circuit_file_summarise(CircuitFile *cf, const Job *job, const Circuits *cs, double seconds) {
    const CircuitsSpec *spec = job->circuits;
    int C = cf->C, A = cf->A, P = cf->P, M = cf->M, K = cf->K;
    hsize_t dims[4];
    double *full = h5_read_all(cf->group, "full", H5T_NATIVE_DOUBLE, 8, 2, dims);
    double *empty = h5_read_all(cf->group, "empty", H5T_NATIVE_DOUBLE, 8, 3, dims);
    double *metric = h5_read_all(cf->group, "metric", H5T_NATIVE_DOUBLE, 8, 4, dims);
    double *faith = h5_read_all(cf->group, "faithfulness", H5T_NATIVE_DOUBLE, 8, 4, dims);
    int rc = full && empty && metric && faith ? PS_OK : ps_fail(PS_EUSER, "%s: cannot read /circuits back", cf->path);
    size_t cam = (size_t)C * A * M;
    double *sums[5], *sorted = alloc_doubles((size_t)P + 1);
    for (int i = 0; i < 5; i++) sums[i] = alloc_doubles(cam + 1);
    for (int c = 0; !rc && c < C; c++)
        for (int a = 0; a < A; a++)
            for (int m = 0; m < M; m++) {
                size_t at = ((size_t)c * A + a) * P * M + m;
                double out[5];
                summarise(metric + at, full + m, empty + (size_t)a * P * M + m, faith + at, P, (size_t)M, out, sorted);
                for (int i = 0; i < 5; i++) sums[i][((size_t)c * A + a) * M + m] = out[i];
            }
    static const char *const names[5] = {"ratio_of_means", "mean_of_ratios", "median", "q1", "q3"};
    hsize_t zero[3] = {0, 0, 0}, count[3] = {(hsize_t)C, (hsize_t)A, (hsize_t)M};
    for (int i = 0; i < 5 && !rc; i++)
        if (write_slab(cf->group, names[i], H5T_NATIVE_DOUBLE, 3, zero, count, sums[i]) < 0) rc = failed_write(cf, names[i]);
    /* curves: the ratio of means of each set's rows against their k */
    double *auc = alloc_doubles((size_t)K * A * M + 1);
    int *reach[3];
    for (int l = 0; l < 3; l++) reach[l] = xmalloc(sizeof(int) * ((size_t)K * A * M + 1));
    int *k = xmalloc(sizeof(int) * ((size_t)C + 1));
    double *y = alloc_doubles((size_t)C + 1);
    for (int i = 0, n = 0, first = 0; i < spec->n_sets && !rc; first += spec->sets[i].n_k ? spec->sets[i].n_k : 1, i++) {
        const CircuitSet *set = &spec->sets[i];
        if (!set->n_k) continue;
        double items = cs->rows[first].items;
        for (int a = 0; a < A; a++)
            for (int m = 0; m < M; m++) {
                for (int r = 0; r < set->n_k; r++) k[r] = set->k[r], y[r] = sums[0][((size_t)(first + r) * A + a) * M + m];
                int got[3];
                size_t at = ((size_t)n * A + a) * M + m;
                curve(k, y, set->n_k, items, &auc[at], got);
                for (int l = 0; l < 3; l++) reach[l][at] = got[l];
            }
        n++;
    }
    hsize_t kcount[3] = {(hsize_t)K, (hsize_t)A, (hsize_t)M};
    static const char *const reach_names[3] = {"sets/k80", "sets/k90", "sets/k100"};
    if (K && !rc && write_slab(cf->group, "sets/auc", H5T_NATIVE_DOUBLE, 3, zero, kcount, auc) < 0) rc = failed_write(cf, "sets/auc");
    for (int l = 0; K && l < 3 && !rc; l++)
        if (write_slab(cf->group, reach_names[l], H5T_NATIVE_INT, 3, zero, kcount, reach[l]) < 0) rc = failed_write(cf, reach_names[l]);
    if (!rc) {
        double before = 0.0;
        hid_t a = H5Aopen(cf->group, "seconds", H5P_DEFAULT);
        if (a >= 0) H5Aread(a, H5T_NATIVE_DOUBLE, &before), H5Aclose(a);
        seconds += before;
        h5_set_number_attr(cf->group, "seconds", H5T_NATIVE_DOUBLE, &seconds);
    }
    for (int i = 0; i < 5; i++) free(sums[i]);
    for (int l = 0; l < 3; l++) free(reach[l]);
    free(full), free(empty), free(metric), free(faith), free(sorted), free(auc), free(k), free(y);
    return rc;
}

void circuit_file_close(CircuitFile *cf) {
    if (cf->group >= 0) H5Gclose(cf->group);
    cf->group = -1;
}
