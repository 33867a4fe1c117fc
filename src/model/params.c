/* The parameter block and its pointer table, and the packed copies of its matrices. */
#include <string.h>
#include "patchsweep/model.h"
#include "patchsweep/ops.h"

void param_sizes(const ModelConfig *c, size_t s[N_PARAM_TENSORS]) {
    size_t L = (size_t)c->n_layer, d = (size_t)c->d_model, V = (size_t)c->vocab;
    size_t qd = (size_t)cfg_q_dim(c), kvd = (size_t)cfg_kv_dim(c), dm = (size_t)c->d_mlp;
    int ln = c->norm == NORM_LAYER; /* RMSNorm has no bias */
    int bias = c->linear_bias;
    size_t sizes[N_PARAM_TENSORS] = {
        V * d,                                   /* wte */
        c->learned_pos ? (size_t)c->n_ctx * d : 0, /* wpe */
        L * d, ln ? L * d : 0,                   /* ln1_w, ln1_b */
        L * qd * d, bias ? L * qd : 0,           /* wq, bq */
        L * kvd * d, bias ? L * kvd : 0,         /* wk, bk */
        L * kvd * d, bias ? L * kvd : 0,         /* wv, bv */
        L * d * qd, bias ? L * d : 0,            /* wo, bo */
        L * d, ln ? L * d : 0,                   /* ln2_w, ln2_b */
        c->gated_mlp ? L * dm * d : 0,           /* w_gate */
        L * dm * d, bias ? L * dm : 0,           /* w_in, b_in */
        L * d * dm, bias ? L * d : 0,            /* w_out, b_out */
        d, ln ? d : 0,                           /* lnf_w, lnf_b */
        c->tied_unembed ? 0 : V * d,             /* unembed */
    };
    memcpy(s, sizes, sizeof sizes);
}

void params_fields(Params *p, float **fields[N_PARAM_TENSORS]) {
    float **list[N_PARAM_TENSORS] = {
        [PARAM_WTE] = &p->wte,       [PARAM_WPE] = &p->wpe,     [PARAM_LN1_W] = &p->ln1_w, [PARAM_LN1_B] = &p->ln1_b,
        [PARAM_WQ] = &p->wq,         [PARAM_BQ] = &p->bq,       [PARAM_WK] = &p->wk,       [PARAM_BK] = &p->bk,
        [PARAM_WV] = &p->wv,         [PARAM_BV] = &p->bv,       [PARAM_WO] = &p->wo,       [PARAM_BO] = &p->bo,
        [PARAM_LN2_W] = &p->ln2_w,   [PARAM_LN2_B] = &p->ln2_b, [PARAM_W_GATE] = &p->w_gate, [PARAM_W_IN] = &p->w_in,
        [PARAM_B_IN] = &p->b_in,     [PARAM_W_OUT] = &p->w_out, [PARAM_B_OUT] = &p->b_out, [PARAM_LNF_W] = &p->lnf_w,
        [PARAM_LNF_B] = &p->lnf_b,   [PARAM_UNEMBED] = &p->unembed,
    };
    memcpy(fields, list, sizeof list);
}

size_t params_point(Params *p, float *block, const ModelConfig *c) {
    size_t sizes[N_PARAM_TENSORS], total = 0;
    param_sizes(c, sizes);
    float **fields[N_PARAM_TENSORS];
    params_fields(p, fields);
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        *fields[i] = sizes[i] && block ? block + total : NULL;
        total += sizes[i];
    }
    if (c->tied_unembed) p->unembed = p->wte;
    return total;
}

/* The packed matrices: [rows, inputs] of each, and how many layers it stacks. */
typedef struct {
    int rows, inputs, layers;
} MatrixShape;

static void packed_shapes(const ModelConfig *c, MatrixShape s[N_PACKED_TENSORS]) {
    int L = c->n_layer, d = c->d_model, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dm = c->d_mlp;
    MatrixShape shapes[N_PACKED_TENSORS] = {
        {qd, d, L}, {kvd, d, L}, {kvd, d, L}, {d, qd, L},             /* wq, wk, wv, wo */
        {dm, d, c->gated_mlp ? L : 0}, {dm, d, L}, {d, dm, L},          /* w_gate, w_in, w_out */
        {c->vocab, d, 1},                                               /* unembed */
    };
    memcpy(s, shapes, sizeof shapes);
}

size_t packed_point(Packed *p, float *block, const ModelConfig *c) {
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(c, s);
    float **fields[N_PACKED_TENSORS] = {&p->wq, &p->wk, &p->wv, &p->wo, &p->w_gate, &p->w_in, &p->w_out, &p->unembed};
    size_t total = 0;
    for (int i = 0; i < N_PACKED_TENSORS; i++) {
        size_t size = (size_t)s[i].layers * packed_floats(s[i].rows, s[i].inputs);
        *fields[i] = size && block ? block + total : NULL;
        total += size;
    }
    return total;
}

void params_pack(Packed *dst, const Params *src, const ModelConfig *c) {
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(c, s);
    float *to[N_PACKED_TENSORS] = {dst->wq, dst->wk, dst->wv, dst->wo, dst->w_gate, dst->w_in, dst->w_out, dst->unembed};
    const float *from[N_PACKED_TENSORS] = {src->wq,   src->wk,   src->wv,    src->wo,
                                          src->w_gate, src->w_in, src->w_out, src->unembed};
    for (int i = 0; i < N_PACKED_TENSORS; i++)
        for (int l = 0; l < s[i].layers; l++)
            pack_weights(to[i] + (size_t)l * packed_floats(s[i].rows, s[i].inputs),
                         from[i] + (size_t)l * s[i].rows * s[i].inputs, s[i].rows, s[i].inputs);
}
