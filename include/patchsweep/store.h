/* The results file (docs/results.md): one HDF5 file per job, written with parallel HDF5.
 * Every dataset is created at full size (NaN-filled) before any result is written; each
 * finished unit is written into its hyperslab, then its flag in /progress/done. */
#ifndef PATCHSWEEP_STORE_H
#define PATCHSWEEP_STORE_H

#include <hdf5.h>
#include <mpi.h>
#include <stdint.h>
#include "patchsweep/bound.h"
#include "patchsweep/plan.h"

/* 2: every result has a metric axis (effects [P, N, S, M], baselines [P, M], /metrics). */
#define RESULTS_FORMAT_VERSION 2

typedef struct {
    hid_t file;
    hid_t exact;                   /* /effects/exact, or H5I_INVALID_HID */
    hid_t estimate[N_ESTIMATES];   /* effects/<estimator>, or H5I_INVALID_HID */
    hid_t base, source;            /* baseline/base, baseline/source */
    hid_t done, seconds, rank;     /* progress/done, progress/seconds, progress/rank */
    hid_t estimator_seconds;       /* progress/estimator_seconds [U, N_ESTIMATES] */
    hid_t edge_exact;              /* /edges/exact, or H5I_INVALID_HID */
    hid_t edge_estimate[N_EDGE_ESTIMATES]; /* /edges/<estimator>, or H5I_INVALID_HID */
    int n_prompts, n_nodes, n_edges, n_positions, n_units, n_metrics;
    char path[4096];
} Store;

/* Creates the file, or reopens it when it holds the same job (resumed = 1). A file of another
 * job, or something that is not a results file, is refused (PS_EUSER). Collective. */
int store_open(Store *s, const Job *job, const Plan *plan, const Model *m, uint64_t fingerprint, MPI_Comm comm,
               int *resumed);
/* Writes the whole structure of a new results file for path at `creating` (serial, one rank):
 * every attribute and small dataset, the result datasets at full size and NaN. */
int store_write_structure(const char *creating, const char *path, const Job *job, const Plan *plan, const Model *m,
                          uint64_t fingerprint);
/* An existing results file at path whose job is not this one (serial, one rank; extend.c): when
 * this job only adds node sites or estimators, and the model is the same, the file is remade in
 * this job's shape with every finished unit carried over (nothing is recomputed); otherwise
 * PS_EUSER naming the fields that differ. PS_OK and nothing done for a file of this very job, or
 * one that is not a readable results file of this format (store_open says why). */
int store_extend_edited(const char *path, const Job *job, const Plan *plan, const Model *m, uint64_t fingerprint);
/* Reads /progress/done into done[n_units] (independent). */
int store_read_done(Store *s, uint8_t *done);
/* Writes one finished unit: values[0] = exact effects, values[1 + e] = estimator e (NULL where
 * not computed), each [n_nodes, n_positions, n_metrics]; for an edge unit the same of its edges
 * (values[1 + e] = edge estimator e) into /edges; the prompt's baselines ([n_metrics]);
 * its compute time, each estimator's time (NULL for exact units) and rank; then its done flag.
 * Independent. */
int store_write_unit(Store *s, const Plan *plan, int unit, const float *values[1 + N_ESTIMATES], const double *base_metric,
                     const double *source_metric, double seconds, const double estimator_seconds[N_ESTIMATES], int rank);
/* Marks the file complete (or not), records the rank count and this run's seconds spent on
 * base/source runs, and the compute seconds of the exact sweep and each estimator summed over
 * every unit done so far (so they add up across resumed runs); collective. */
int store_finish(Store *s, int complete, int n_ranks, double seconds_runs);
void store_close(Store *s);

/* ---- the /bound group (patchsweep bound) -------------------------------------------------------- */
enum { N_BOUND_DATASETS = 8 }; /* subset_effect, verified, estimate, se, ucb, theta, theta_sign, boundary_ties */
typedef struct {
    const char *path;
    hid_t group, datasets[N_BOUND_DATASETS], types[N_BOUND_DATASETS]; /* types: in memory */
} BoundFile;
/* Creates /bound in a file open for writing, replacing an earlier one; PS_EUSER with one line
 * when HDF5 refuses. bound_file_close is safe after a failure. */
int bound_file_create(BoundFile *bf, hid_t file, const char *path, int P, int K, int N, int S);
/* Writes prompt p's row of every dataset. */
int bound_file_write(BoundFile *bf, int p, const PromptBound *b);
void bound_file_close(BoundFile *bf);

/* ---- small HDF5 helpers (serial or parallel files alike) ------------------------------------ */
/* A dataset allocated whole at creation (filled with *fill when not NULL), intermediate groups
 * created; a negative id on failure. */
hid_t h5_create_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *fill);
/* Writes a whole small dataset and closes it; 0 on success. */
int h5_write_small(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims, const void *data);
/* n fixed-length strings of width bytes each (NUL-padded rows) as a 1-D dataset; 0 on success. */
int h5_write_strings(hid_t file, const char *name, const char *rows, size_t n, size_t width);
/* Sets a scalar attribute, replacing one of the same name. */
void h5_set_string_attr(hid_t obj, const char *name, const char *value);
void h5_set_number_attr(hid_t obj, const char *name, hid_t type, const void *value);
/* The value of a scalar integer attribute, or missing when it is absent, unreadable or not one
 * integer. */
int h5_int_attr(hid_t obj, const char *name, int missing);
/* The value of a fixed-length string attribute holding one string (malloc'd), or NULL. */
char *h5_string_attr(hid_t obj, const char *name);
/* Whether the file stores the values of dataset d, of extents dims: patchsweep allocates every
 * dataset whole when it creates a file, so a damaged file's extents may claim more than it holds
 * (their product unbounded, or not representable). *count: their number; *stored: the bytes the
 * file holds for them (a compressed dataset may expand up to 1032 times, deflate's most). Check
 * this before allocating by a file's extents, so memory follows the file's size. */
int h5_stored_count(hid_t d, int rank, const hsize_t *dims, size_t *count, hsize_t *stored);
/* A whole numeric dataset of exactly `rank` dimensions (at most 4; extents in dims), converted to
 * type (malloc'd); NULL when absent, of another rank, not stored in full, or unreadable. */
void *h5_read_all(hid_t file, const char *name, hid_t type, size_t elem, int rank, hsize_t *dims);
/* A 1-D dataset of fixed-length strings (checked as h5_read_all) as *count NUL-terminated rows
 * of *width bytes (malloc'd); NULL as h5_read_all, or when not fixed-length strings. */
char *h5_read_strings(hid_t file, const char *name, size_t *width, size_t *count);

#endif
