/* `patchsweep circuit` (docs/circuits.md): the circuits of a job's "circuits" key as rows (one per
 * explicit or threshold set, one per k of a curve), what each keeps in a prompt, and the
 * /circuits group of the results file. */
#ifndef PATCHSWEEP_CIRCUITS_H
#define PATCHSWEEP_CIRCUITS_H

#include <hdf5.h>
#include <stdint.h>
#include "patchsweep/plan.h"

typedef struct {
    int set;            /* index into the spec's sets */
    int k;              /* the k asked for; -1 for explicit and threshold circuits */
    int size;           /* edges (position-independent) or cells (specific) kept */
    int items;          /* what k counts: the ranking's edges, nodes or cells (its curve's x = k / items) */
    int all_positions;
    uint8_t *members;   /* [E, S]: edge e of the job's graph kept at column s */
    uint8_t *everywhere; /* [E]: kept at every row (an edge named without @, or a position-independent row) */
    /* Rows defined by upstream nodes (a "nodes" set, an effects/ ranking): every edge of the
     * model's graph out of them is kept, and they are the node circuit. */
    uint8_t *node_cols;     /* [U, S], or NULL */
    uint8_t *node_everywhere; /* [U] */
} CircuitRow;

typedef struct {
    CircuitRow *rows;
    int C, E, S, U;
    const Edge *edges;  /* the job's graph (E; its filter applied), for members */
    Edge *graph;        /* the model's whole graph, which the evaluator reads */
    long n_graph;
    int *graph_of;      /* [E]: edge e's index in graph */
} Circuits;

/* Every row of the job's circuits: explicit ones from the names, ranked ones from the arrays of
 * the results file at `path` (each must be complete: one line naming it otherwise). PS_EUSER with
 * one line on any problem. */
int circuits_build(Circuits *cs, const Job *job, const Plan *plan, const ModelConfig *cfg, const char *path);
void circuits_free_rows(Circuits *cs);
/* kept [n_graph, T]: what row c keeps in prompt p of T tokens, at node granularity or not. */
void circuits_kept(const Circuits *cs, int c, int nodes, const ModelConfig *cfg, const Plan *plan, int p, int T,
                   uint8_t *kept);

/* ---- the /circuits group ------------------------------------------------------------------------ */
typedef struct {
    hid_t file, group;
    const char *path;
    int C, A, P, M, K;
} CircuitFile;
/* Opens /circuits of an open results file for this key (job: its canonical JSON, fingerprint:
 * with the job's), or creates it (replacing one of another key). *done [C, A, P] (malloc'd)
 * holds the units already written. */
int circuit_file_open(CircuitFile *cf, hid_t file, const char *path, const Job *job, const Circuits *cs,
                      const char *fingerprint, uint8_t **done);
/* Prompt p: full [M], empty [A, M], and the units computed now: metric [C, A, M] where
 * computed[c * A + a]. Then their done flags. */
int circuit_file_write_prompt(CircuitFile *cf, int p, const double *full, const double *empty, const double *metric,
                              const uint8_t *computed);
/* Once every unit is done: faithfulness summaries and curves, and the seconds spent. */
int circuit_file_summarise(CircuitFile *cf, const Job *job, const Circuits *cs, double seconds);
void circuit_file_close(CircuitFile *cf);

#endif
