/* Reading a results file (docs/results.md) in the commands that read one (top, bound): every
 * dataset they read is checked against the layout — present, of the right class, rank and
 * shape, consistent with the others — before anything is read into memory, so a damaged, edited
 * or foreign file is one line naming the file and the dataset, never a crash or a wrong number. */
#ifndef PATCHSWEEP_RESULTS_H
#define PATCHSWEEP_RESULTS_H

#include <hdf5.h>

typedef struct {
    char path[4096];
    hid_t file;
    int P, N, S, T, M;        /* prompts, nodes, position columns, longest prompt, metrics */
    char **metrics;           /* [M] */
    int metric;               /* the metric read: results_read_cells and base/source are its values */
    const char *group;        /* where the cells are: "/effects" (nodes), or "/edges" (results_open_edges) */
    char **node_names;        /* [N]: node names, or edge names ("L0.H3->L1.KV2.k") */
    char **node_sites;        /* [N]: sites, or edges' downstream inputs */
    int *positions;           /* [S]: a position, -1 for "all positions at once", -2 per prompt */
    char **position_names;    /* [S]: "3", "-1", "all", "IO" */
    int *prompt_positions;    /* [P, S]: where column s sits in prompt p; -1 all, -2 none */
    int *base_tokens;         /* [P, T], -1 past a prompt's end */
    int *length;              /* [P] */
    double *base, *source;    /* [P] baselines of the metric read */
    char *direction, *corruption, *model_dir, *model_config, *job_fingerprint; /* attributes */
} Results;

/* Opens and checks path (for writing too when writable, to add /bound), to read the metric named
 * `metric` (NULL: the file's first). PS_EUSER with one line when it is missing, unreadable, not a
 * patchsweep results file of this format, damaged, or without that metric. */
int results_open(Results *r, const char *path, int writable, const char *metric);
/* The same for the edges of an edge job's file (docs/edges.md): N = the edges,
 * node_names = /edges/name, node_sites = /edges/downstream, the cells /edges/<name>. */
int results_open_edges(Results *r, const char *path, int writable, const char *metric);
/* <group>/<name> (/effects/<name>, or /edges/<name>) of the metric read ([P, N, S] floats, malloc'd) into *out; *out = NULL and
 * PS_OK when the file has no such dataset, PS_EUSER when it has one of another shape or type. */
int results_read_cells(const Results *r, const char *name, float **out);
/* Checks /effects/<name> without reading it: *present = 0 (PS_OK) when absent, PS_EUSER with one
 * line when it has another shape or type, or the file does not store its values. */
int results_check_cells(const Results *r, const char *name, int *present);
/* Prompt p's row of /effects/<name> for the metric read ([N, S] floats into out), alone: a
 * command that goes prompt by prompt never holds every prompt's values. *present = 0 (PS_OK)
 * when the file has no such dataset; PS_EUSER with one line when it has one of another shape or
 * type, or the read fails. */
int results_read_prompt(const Results *r, const char *name, int p, float *out, int *present);
void results_close(Results *r);

#endif
