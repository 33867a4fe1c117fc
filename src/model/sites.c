/* Where each node site lives in a block: its name, stage, buffer, row width and slice. */
#include <string.h>
#include "patchsweep/sites.h"

static const char *const site_names[N_SITES] = {"resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post",
                                                "z",         "q",        "k",       "v",         "mlp_post"};

const char *site_name(Site s) { return site_names[s]; }

int site_from_name(const char *name, Site *out) {
    for (int i = 0; i < N_SITES; i++)
        if (strcmp(site_names[i], name) == 0) {
            *out = (Site)i;
            return 0;
        }
    return -1;
}

Stage site_stage(Site s) {
    static const Stage stage[N_SITES] = {
        [SITE_RESID_PRE] = ST_RESID_PRE, [SITE_ATTN_OUT] = ST_ATTN_OUT, [SITE_MLP_OUT] = ST_MLP_OUT,
        [SITE_RESID_MID] = ST_RESID_MID, [SITE_RESID_POST] = ST_RESID_POST, [SITE_Z] = ST_Z,
        [SITE_Q] = ST_QKV, [SITE_K] = ST_QKV, [SITE_V] = ST_QKV, [SITE_MLP_POST] = ST_MLP_POST,
    };
    return stage[s];
}

int site_is_kv_side(Site s) { return s == SITE_RESID_PRE || s == SITE_K || s == SITE_V; }

int site_width(const ModelConfig *c, Site s) {
    switch (s) {
    case SITE_Q:
    case SITE_Z: return cfg_q_dim(c);
    case SITE_K:
    case SITE_V: return cfg_kv_dim(c);
    case SITE_MLP_POST: return c->d_mlp;
    default: return c->d_model;
    }
}

void site_slice(const ModelConfig *c, Site s, int index, int *offset, int *len) {
    switch (s) {
    case SITE_Q:
    case SITE_Z:
    case SITE_K:
    case SITE_V: *offset = index * c->d_head, *len = c->d_head; return;
    case SITE_MLP_POST: *offset = index, *len = 1; return;
    default: *offset = 0, *len = c->d_model; return;
    }
}

float **site_field(LayerActs *a, Site s) {
    switch (s) {
    case SITE_RESID_PRE: return &a->resid_pre;
    case SITE_ATTN_OUT: return &a->attn_out;
    case SITE_MLP_OUT: return &a->mlp_out;
    case SITE_RESID_MID: return &a->resid_mid;
    case SITE_RESID_POST: return &a->resid_post;
    case SITE_Z: return &a->z;
    case SITE_Q: return &a->q;
    case SITE_K: return &a->k;
    case SITE_V: return &a->v;
    case SITE_MLP_POST: return &a->mlp_post;
    default: return NULL;
    }
}

float *site_buffer(const LayerActs *a, Site s) {
    float **field = site_field((LayerActs *)a, s);
    return field ? *field : NULL;
}

int site_has_index(Site s) {
    return s == SITE_Q || s == SITE_Z || s == SITE_K || s == SITE_V || s == SITE_MLP_POST;
}

int site_nodes_per_layer(const ModelConfig *c, Site s) {
    switch (s) {
    case SITE_Q:
    case SITE_Z: return c->n_head;
    case SITE_K:
    case SITE_V: return c->n_kv_head;
    case SITE_MLP_POST: return c->d_mlp;
    default: return 1;
    }
}
