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
/* The site's buffer inside a layer's activations. */
float *site_buffer(const LayerActs *a, Site s);
/* Whether a site's nodes are parts of a layer (heads, neurons) rather than the whole vector. */
int site_has_index(Site s);
/* Number of nodes of a site in one layer. */
int site_nodes_per_layer(const ModelConfig *c, Site s);

#endif
