/* The node sites (a contract: TransformerLens hook names, docs/design.md): where each lives in a block,
 * its stage, buffer, row width and the slice one node owns. docs/design.md defines every site
 * per architecture. */
#ifndef PATCHSWEEP_SITES_H
#define PATCHSWEEP_SITES_H

#include "patchsweep/transformer.h"

/* Node sites, with their TransformerLens hook names. */
typedef enum {
    SITE_RESID_PRE, SITE_ATTN_OUT, SITE_MLP_OUT, SITE_RESID_MID, SITE_RESID_POST,
    SITE_Z, SITE_Q, SITE_K, SITE_V, SITE_MLP_POST, N_SITES
} Site;

const char *site_name(Site s);
int site_from_name(const char *name, Site *out); /* 0 on success */

Stage site_stage(Site s);
/* Sites computed on every recomputed row (the kv side of a block): patching one row of them
 * changes every later row of the same layer. */
int site_is_kv_side(Site s);
/* Width of the site's activation rows and the slice [offset, offset+len) a node owns. */
int site_width(const ModelConfig *c, Site s);
void site_slice(const ModelConfig *c, Site s, int index, int *offset, int *len);
/* The site's buffer inside a layer's activations (NULL where a lean cache does not hold it), and
 * the field that points to it. */
float *site_buffer(const LayerActs *a, Site s);
float **site_field(LayerActs *a, Site s);

/* ---- views: a lean run's sites recomputed for a work unit (src/model/views.c) -------------- */
#define SITE_BIT(s) (1u << (s))
/* Every site a block computes at or before a stage (what a run starting at that stage reads of
 * its start layer). */
unsigned sites_up_to(Stage stage);
/* A run as a work unit reads it: the cache's own buffers, plus in layer l every site of want[l]
 * (a mask of SITE_BIT) that a lean cache does not hold, recomputed (run_layer) into the view's
 * storage. A full cache is its own view. */
typedef struct {
    RunCache run;       /* the cache's fields, with its own layer array */
    float *block;       /* the recomputed sites */
    unsigned long of;   /* the viewed cache's id */
    unsigned *want;     /* [n_layer] */
} RunView;
/* scratch_room: at least layer_floats(cfg, T, 0) floats the build may overwrite (NULL: it
 * allocates its own). */
void run_view_build(RunView *v, const Model *m, const RunCache *c, const unsigned *want, float *scratch_room);
void run_view_free(RunView *v);
/* Whether v views cache c with exactly want (then it needs no rebuild). */
int run_view_matches(const RunView *v, const ModelConfig *cfg, const RunCache *c, const unsigned *want);
/* The views one work unit holds, kept from one unit to the next while they match. */
typedef struct {
    RunView **views;
    int n;
} ViewSet;
/* out[i] = the view of runs[i] with wants[i] (NULL for a NULL run): a view the set holds when
 * one matches, else a new one; the set's views that no runs[i] asked for are freed, so a set
 * holds only the current unit's. */
void view_set_update(ViewSet *set, const Model *m, const RunCache *const *runs, const unsigned *const *wants, int n,
                     const RunCache **out, float *scratch_room);
void view_set_free(ViewSet *set);
/* Floats a view of a lean cache of T rows holds for want. */
size_t run_view_floats(const ModelConfig *cfg, int T, const unsigned *want);
/* Whether a site's nodes are parts of a layer (heads, neurons) rather than the whole vector. */
int site_has_index(Site s);
/* Number of nodes of a site in one layer. */
int site_nodes_per_layer(const ModelConfig *c, Site s);

#endif
