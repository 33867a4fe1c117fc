/* Job -> plan: the node catalogue, the position columns, and the work units (with estimated
 * costs) that the scheduler hands out and the results file flags as done. */
#ifndef PATCHSWEEP_PLAN_H
#define PATCHSWEEP_PLAN_H

#include <stddef.h>
#include "patchsweep/job.h"

typedef struct {
    Site site;
    int layer;
    int index; /* head (q, z), key/value head (k, v), neuron (mlp_post); -1 otherwise */
} Node;

/* "L3.resid_pre", "L3.H5.z", "L3.KV1.k", "L3.N1234" (docs/design.md, "Sites per architecture") */
void node_name(const Node *n, char *out, size_t cap);

/* ---- the edge graph (docs/edges.md, "The graph") ---------------------------------------------- */
typedef struct {
    int kind;  /* UpKind or DownKind */
    int layer; /* -1 for embed and logits */
    int index; /* head (q), key/value head (k, v); -1 otherwise */
} EdgeEnd;
typedef struct {
    EdgeEnd up, down;
} Edge;
/* "embed", "L3.H5", "L3.mlp" / "L5.H2.q", "L5.KV1.k", "L5.mlp_in", "logits"; and "u->v". */
void edge_up_name(const EdgeEnd *e, char *out, size_t cap);
void edge_down_name(const EdgeEnd *e, char *out, size_t cap);
void edge_name(const Edge *e, char *out, size_t cap);
/* The edges the filter keeps, in contract order (by downstream input, then upstream node), into
 * out (NULL: only counted); returns their number. The filter may be off: then every edge. */
long edge_graph(const ModelConfig *c, const EdgeFilter *f, Edge *out);

typedef enum { UNIT_EXACT, UNIT_ESTIMATE, UNIT_EDGE_EXACT, UNIT_EDGE_ESTIMATE } UnitKind;

/* Exact units: one prompt, nodes node0..node0+n_nodes-1 (one site, one layer), every position
 * column. Estimate units: one prompt, every node, every estimator the job asks for. Edge units
 * read node0/n_nodes as edges: an exact edge unit holds edges that share their downstream input
 * (at most EDGE_BLOCK of them), the edge estimate unit every edge of the prompt. */
typedef struct {
    UnitKind kind;
    int prompt, node0, n_nodes;
    double cost; /* estimated FLOPs */
} Unit;

typedef struct {
    Node *nodes;
    int n_nodes;
    int *positions; /* column -> position, -1 = all positions at once, PLAN_VARIES = per prompt */
    int n_positions;
    int *prompt_positions; /* [n_prompts, n_positions]: column j of prompt p's position; -1 = all at
                            * once; JOB_NO_POSITION where the prompt has none (past its end) */
    Edge *edges;    /* the job's edges, in contract order */
    int n_edges;
    Unit *units;    /* prompt-major: a prompt's units are contiguous */
    int n_units;
    int max_T;
    int batch_limit; /* sequences per engine batch, from the memory budget */
} Plan;

/* Edges into one downstream input are cut into blocks of this many per unit. */
#define EDGE_BLOCK 64
/* Neurons of one layer are cut into blocks of this many nodes per unit. */
#define NEURON_BLOCK 64
/* Engine scratch budget per rank. */
#define ENGINE_BUDGET_BYTES (256.0 * 1024 * 1024)

/* A column whose position differs from prompt to prompt: counted from the end, or named. */
#define PLAN_VARIES (-2)

void plan_build(Plan *pl, const Job *job, const ModelConfig *c);
/* Prompt p's position of every column ([n_positions]); what every sweep, estimate and bound of
 * the prompt reads. */
/* 1 when every node of the plan reads one layer (its window clipped to the model): the node
 * estimates then go one layer at a time over lean runs (src/attrib/estimates.c). */
int plan_nodes_one_layer(const Plan *pl, const Job *job, int n_layer);
static inline const int *plan_prompt_positions(const Plan *pl, int p) { return pl->prompt_positions + (size_t)p * pl->n_positions; }
void plan_free(Plan *pl);

/* Estimated FLOPs of one patched run of a prompt of T tokens: fast (suffix) and naive (full). */
double patch_flops(const ModelConfig *c, int T, int layer, Site site, int pos);
double forward_flops(const ModelConfig *c, int T);

typedef struct {
    long long patches;      /* patched runs the exact sweep computes */
    double flops, naive_flops;
    double bytes_weights;   /* per node: the parameters and their packed copies, shared by its ranks */
    double bytes_per_rank;  /* one prompt's runs + engine scratch */
} PlanStats;
void plan_stats(const Plan *pl, const Job *job, const ModelConfig *c, PlanStats *st);

#endif
