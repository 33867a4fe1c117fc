/* The checked reader of a results file (results.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/results.h"
#include "patchsweep/store.h"

/* Largest extent of any dimension we accept: far beyond any real job, and it fits the int fields
 * of Results. Products of extents are bounded by stored_count, not by this. */
#define MAX_EXTENT ((hsize_t)INT_MAX)

/* Checks that dataset name exists with this class and rank; its dimensions go to dims, and each
 * want[i] > 0 must match. */
static int check_dataset(const Results *r, const char *name, H5T_class_t cls, int rank, const hsize_t *want,
                         hsize_t *dims, const char *want_from) {
    static const char *const class_names[] = {[H5T_INTEGER] = "integer", [H5T_FLOAT] = "float", [H5T_STRING] = "string"};
    if (H5Lexists(r->file, name, H5P_DEFAULT) <= 0)
        return ps_fail(PS_EUSER, "%s: %s is missing (a damaged file, or not written by patchsweep)", r->path, name);
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (d < 0) return ps_fail(PS_EUSER, "%s: %s cannot be opened (a damaged file)", r->path, name);
    hid_t type = H5Dget_type(d), space = H5Dget_space(d);
    int have_rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    H5T_class_t have_class = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    int variable = have_class == H5T_STRING && H5Tis_variable_str(type) > 0;
    hsize_t got[8] = {0};
    if (have_rank == rank) H5Sget_simple_extent_dims(space, got, NULL);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    H5Dclose(d);
    if (have_class != cls || variable)
        return ps_fail(PS_EUSER, "%s: %s holds %s data, expected %s", r->path, name,
                       variable ? "variable-length string" : "other", class_names[cls]);
    if (have_rank != rank)
        return ps_fail(PS_EUSER, "%s: %s has %d dimensions, expected %d", r->path, name, have_rank, rank);
    for (int i = 0; i < rank; i++) {
        if (got[i] > MAX_EXTENT)
            return ps_fail(PS_EUSER, "%s: %s has an extent of %llu, beyond any job", r->path, name,
                           (unsigned long long)got[i]);
        if (want && want[i] && got[i] != want[i])
            return ps_fail(PS_EUSER, "%s: %s has extent %llu in dimension %d, expected %llu (from %s)", r->path, name,
                           (unsigned long long)got[i], i, (unsigned long long)want[i], want_from);
        if (dims) dims[i] = got[i];
    }
    return PS_OK;
}

/* The number of elements of dataset d (extents dims), once we know the file stores them all
 * (h5_stored_count): each extent is below MAX_EXTENT, but a product of three or four of them is
 * not bounded (nor representable) otherwise, and a damaged file may claim anything. */
static int stored_count(const Results *r, const char *name, hid_t d, int rank, const hsize_t *dims, size_t *count) {
    hsize_t stored = 0;
    if (h5_stored_count(d, rank, dims, count, &stored)) return PS_OK;
    char extents[96] = "";
    for (int i = 0; i < rank; i++)
        snprintf(extents + strlen(extents), sizeof extents - strlen(extents), "%s%llu", i ? " x " : "",
                 (unsigned long long)dims[i]);
    return ps_fail(PS_EUSER, "%s: %s is [%s] but the file stores %llu bytes of its values (a damaged file, or not written "
                             "by patchsweep)", r->path, name, extents, (unsigned long long)stored);
}

/* A checked numeric dataset of the given rank and shape, read whole. */
static int read_numbers(const Results *r, const char *name, hid_t mem_type, size_t elem, int rank, const hsize_t *want,
                        const char *want_from, void **out) {
    hsize_t dims[4] = {0};
    H5T_class_t cls = H5Tget_class(mem_type);
    int rc = check_dataset(r, name, cls, rank, want, dims, want_from);
    if (rc) return rc;
    size_t n = 0;
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT);
    if ((rc = stored_count(r, name, d, rank, dims, &n))) {
        H5Dclose(d);
        return rc;
    }
    void *buf = xmalloc(n * elem + 1);
    herr_t status = H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    H5Dclose(d);
    if (status < 0) {
        free(buf);
        return ps_fail(PS_EUSER, "%s: %s cannot be read (a damaged file)", r->path, name);
    }
    *out = buf;
    return PS_OK;
}

/* A checked 1-D dataset of n fixed-length strings, as n malloc'd strings. */
static int read_strings(const Results *r, const char *name, hsize_t n, char ***out) {
    hsize_t want[1] = {n};
    int rc = check_dataset(r, name, H5T_STRING, 1, want, NULL, "/nodes/name");
    if (rc) return rc;
    hid_t d = H5Dopen2(r->file, name, H5P_DEFAULT), type = H5Dget_type(d);
    size_t width = H5Tget_size(type), count = 0;
    if ((rc = stored_count(r, name, d, 1, &n, &count))) {
        H5Tclose(type), H5Dclose(d);
        return rc;
    }
    char *raw = width > 0 && width < 4096 ? xmalloc(count * width + 1) : NULL;
    herr_t status = raw ? H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) : -1;
    H5Tclose(type), H5Dclose(d);
    if (status < 0) {
        free(raw);
        return ps_fail(PS_EUSER, "%s: %s cannot be read as strings (a damaged file)", r->path, name);
    }
    char **strings = xcalloc((size_t)n + 1, sizeof(char *));
    for (hsize_t i = 0; i < n; i++) {
        strings[i] = xcalloc(width + 1, 1);
        memcpy(strings[i], raw + i * width, width);
    }
    free(raw);
    *out = strings;
    return PS_OK;
}

static void free_strings(char **s, int n) {
    for (int i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

/* The values themselves must make sense too: positions inside the longest prompt, lengths
 * within it. */
static int check_values(const Results *r) {
    for (int j = 0; j < r->S; j++)
        if (r->positions[j] < -2 || r->positions[j] >= r->T)
            return ps_fail(PS_EUSER, "%s: /positions[%d] is %d, outside [-2, %d)", r->path, j, r->positions[j], r->T);
    for (int p = 0; p < r->P; p++) {
        if (r->length[p] < 1 || r->length[p] > r->T)
            return ps_fail(PS_EUSER, "%s: /prompts/length[%d] is %d, outside [1, %d]", r->path, p, r->length[p], r->T);
        for (int j = 0; j < r->S; j++) {
            int at = r->prompt_positions[(size_t)p * r->S + j];
            if (at < -2 || at >= r->length[p])
                return ps_fail(PS_EUSER, "%s: /prompts/position[%d, %d] is %d, outside [-2, %d)", r->path, p, j, at, r->length[p]);
        }
    }
    return PS_OK;
}

/* Keeps column k of a [rows, M] array in place: out[i] = x[i * M + k]. */
static void keep_column(double *x, size_t rows, int M, int k) {
    for (size_t i = 0; i < rows; i++) x[i] = x[i * M + k];
}

/* /metrics, and which of them is read. */
static int read_metrics(Results *r, const char *metric) {
    hsize_t m1[1];
    int rc = check_dataset(r, "/metrics", H5T_STRING, 1, NULL, m1, NULL);
    if (!rc && (m1[0] < 1 || m1[0] > 16)) rc = ps_fail(PS_EUSER, "%s: /metrics holds %llu names", r->path, (unsigned long long)m1[0]);
    if (!rc) rc = read_strings(r, "/metrics", m1[0], &r->metrics);
    if (rc) return rc;
    r->M = (int)m1[0];
    r->metric = -1;
    for (int k = 0; k < r->M && r->metric < 0; k++)
        if (!metric || strcmp(r->metrics[k], metric) == 0) r->metric = k;
    if (r->metric >= 0) return PS_OK;
    char have[256] = "";
    for (int k = 0; k < r->M; k++)
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", k ? ", " : "", r->metrics[k]);
    return ps_fail(PS_EUSER, "%s holds no metric \"%s\" (it has: %s)", r->path, metric, have);
}

static int open_cells(Results *r, const char *path, int writable, const char *metric, int edges) {
    memset(r, 0, sizeof *r);
    r->file = -1;
    r->group = edges ? "/edges" : "/effects";
    const char *names = edges ? "/edges/name" : "/nodes/name", *sites = edges ? "/edges/downstream" : "/nodes/site";
    snprintf(r->path, sizeof r->path, "%s", path);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (!file_exists(path)) return ps_fail(PS_EUSER, "%s: no such file", path);
    /* HDF5 opens the path itself, and would wait forever on a FIFO */
    if (!is_regular_file(path)) return ps_fail(PS_EUSER, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0) return ps_fail(PS_EUSER, "%s is not a patchsweep results file (not an HDF5 file)", path);
    r->file = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (r->file < 0)
        return ps_fail(PS_EUSER, "%s: cannot be opened%s (is it in use, or read-only?)", path, writable ? " for writing" : "");
    char *format = h5_string_attr(r->file, "format");
    int ours = format && strcmp(format, "patchsweep") == 0;
    free(format);
    if (!ours) return ps_fail(PS_EUSER, "%s is not a patchsweep results file (an HDF5 file without its format attribute)", path);
    int version = h5_int_attr(r->file, "format_version", 0);
    if (version == 0) /* every format had it: absent, or not one integer, is damage */
        return ps_fail(PS_EUSER, "%s: the attribute format_version is missing or not one integer (a damaged file)", path);
    if (version != RESULTS_FORMAT_VERSION)
        return ps_fail(PS_EUSER, "%s is a results file of format %d; this patchsweep reads format %d (results with a metric "
                                 "axis): rerun its job into a new output", path, version, RESULTS_FORMAT_VERSION);

    hsize_t pt[2] = {0}, s1[1] = {0}, n1[1] = {0};
    int rc = check_dataset(r, "/prompts/base_tokens", H5T_INTEGER, 2, NULL, pt, NULL);
    if (!rc) rc = check_dataset(r, "/positions", H5T_INTEGER, 1, NULL, s1, NULL);
    if (!edges && !rc && H5Lexists(r->file, "/edges", H5P_DEFAULT) > 0 && H5Lexists(r->file, "/effects", H5P_DEFAULT) <= 0)
        return ps_fail(PS_EUSER, "%s holds edges only (an edge job without nodes): read its edges (patchsweep top --edges)", path);
    if (!rc) rc = check_dataset(r, names, H5T_STRING, 1, NULL, n1, NULL);
    if (rc) return rc;
    r->P = (int)pt[0], r->T = (int)pt[1], r->S = (int)s1[0], r->N = (int)n1[0];
    if (r->P < 1 || r->T < 1 || r->S < 1 || r->N < 1)
        return ps_fail(PS_EUSER, "%s: empty (%d prompts, %d tokens, %d positions, %d %s)", path, r->P, r->T, r->S, r->N,
                       edges ? "edges" : "nodes");
    if ((rc = read_metrics(r, metric))) return rc;
    hsize_t p1[1] = {pt[0]}, pm[2] = {pt[0], (hsize_t)r->M};
    const char *prompts = "the prompts of /prompts/base_tokens and /metrics";
    rc = read_numbers(r, "/prompts/base_tokens", H5T_NATIVE_INT, sizeof(int), 2, pt, prompts, (void **)&r->base_tokens);
    if (!rc) rc = read_numbers(r, "/prompts/length", H5T_NATIVE_INT, sizeof(int), 1, p1, prompts, (void **)&r->length);
    if (!rc) rc = read_numbers(r, "/positions", H5T_NATIVE_INT, sizeof(int), 1, s1, "/positions", (void **)&r->positions);
    hsize_t ps[2] = {pt[0], s1[0]};
    if (!rc) rc = read_numbers(r, "/prompts/position", H5T_NATIVE_INT, sizeof(int), 2, ps, "/prompts/base_tokens and /positions",
                               (void **)&r->prompt_positions);
    if (!rc) rc = read_strings(r, "/position_names", s1[0], &r->position_names);
    if (!rc) rc = read_numbers(r, "/baseline/base", H5T_NATIVE_DOUBLE, sizeof(double), 2, pm, prompts, (void **)&r->base);
    if (!rc) rc = read_numbers(r, "/baseline/source", H5T_NATIVE_DOUBLE, sizeof(double), 2, pm, prompts, (void **)&r->source);
    if (!rc) keep_column(r->base, (size_t)r->P, r->M, r->metric), keep_column(r->source, (size_t)r->P, r->M, r->metric);
    if (!rc) rc = read_strings(r, names, n1[0], &r->node_names);
    if (!rc) rc = read_strings(r, sites, n1[0], &r->node_sites);
    if (!rc) rc = check_values(r);
    if (rc) return rc;
    const char *attrs[] = {"direction", "corruption", "model_dir", "model_config", "job_fingerprint"};
    char **fields[] = {&r->direction, &r->corruption, &r->model_dir, &r->model_config, &r->job_fingerprint};
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        *fields[i] = h5_string_attr(r->file, attrs[i]);
        if (!*fields[i])
            return ps_fail(PS_EUSER, "%s: the attribute %s is missing or not one string (a damaged file)", path, attrs[i]);
    }
    return PS_OK;
}

int results_open(Results *r, const char *path, int writable, const char *metric) {
    return open_cells(r, path, writable, metric, 0);
}

int results_open_edges(Results *r, const char *path, int writable, const char *metric) {
    return open_cells(r, path, writable, metric, 1);
}

int results_read_cells(const Results *r, const char *name, float **out) {
    char dset[64];
    snprintf(dset, sizeof dset, "%s/%s", r->group, name);
    *out = NULL;
    if (H5Lexists(r->file, r->group, H5P_DEFAULT) <= 0 || H5Lexists(r->file, dset, H5P_DEFAULT) <= 0) return PS_OK;
    hsize_t want[4] = {(hsize_t)r->P, (hsize_t)r->N, (hsize_t)r->S, (hsize_t)r->M};
    int rc = read_numbers(r, dset, H5T_NATIVE_FLOAT, sizeof(float), 4, want,
                          "prompts x nodes x positions x metrics: /prompts/base_tokens, /nodes/name, /positions, /metrics",
                          (void **)out);
    if (rc) return rc;
    size_t cells = (size_t)r->P * r->N * r->S;
    for (size_t i = 0; i < cells; i++) (*out)[i] = (*out)[i * r->M + r->metric]; /* the metric read, in place */
    return PS_OK;
}

int results_check_cells(const Results *r, const char *name, int *present) {
    char dset[64];
    snprintf(dset, sizeof dset, "%s/%s", r->group, name);
    *present = H5Lexists(r->file, r->group, H5P_DEFAULT) > 0 && H5Lexists(r->file, dset, H5P_DEFAULT) > 0;
    if (!*present) return PS_OK;
    hsize_t want[4] = {(hsize_t)r->P, (hsize_t)r->N, (hsize_t)r->S, (hsize_t)r->M};
    int rc = check_dataset(r, dset, H5T_FLOAT, 4, want, NULL,
                           "prompts x nodes x positions x metrics: /prompts/base_tokens, /nodes/name, /positions, /metrics");
    if (rc) return rc;
    /* Stored, as when read whole: read prompt by prompt, values the file does not hold would come
     * back as the fill value, effects no run computed. */
    hid_t d = H5Dopen2(r->file, dset, H5P_DEFAULT);
    size_t count;
    rc = stored_count(r, dset, d, 4, want, &count);
    H5Dclose(d);
    return rc;
}

int results_read_prompt(const Results *r, const char *name, int p, float *out, int *present) {
    int rc = results_check_cells(r, name, present);
    if (rc || !*present) return rc;
    char dset[64];
    snprintf(dset, sizeof dset, "%s/%s", r->group, name);
    /* the slab [p, :, :, metric] into [N * S] */
    hsize_t start[4] = {(hsize_t)p, 0, 0, (hsize_t)r->metric}, count[4] = {1, (hsize_t)r->N, (hsize_t)r->S, 1};
    hsize_t cells = (hsize_t)r->N * (hsize_t)r->S;
    hid_t d = H5Dopen2(r->file, dset, H5P_DEFAULT), space = H5Dget_space(d), mem = H5Screate_simple(1, &cells, NULL);
    herr_t status = H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
    if (status >= 0) status = H5Dread(d, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, out);
    H5Sclose(mem), H5Sclose(space), H5Dclose(d);
    return status < 0 ? ps_fail(PS_EUSER, "%s: %s cannot be read (a damaged file)", r->path, dset) : PS_OK;
}

void results_close(Results *r) {
    free_strings(r->node_names, r->N);
    free_strings(r->node_sites, r->N);
    free_strings(r->position_names, r->S);
    free(r->positions), free(r->prompt_positions), free(r->base_tokens), free(r->length), free(r->base), free(r->source);
    free_strings(r->metrics, r->M);
    free(r->direction), free(r->corruption), free(r->model_dir), free(r->model_config);
    free(r->job_fingerprint);
    if (r->file >= 0) H5Fclose(r->file);
    memset(r, 0, sizeof *r);
    r->file = -1;
}
