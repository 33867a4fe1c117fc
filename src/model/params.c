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

int param_is_matrix(int field) {
    switch (field) {
    case PARAM_WTE: case PARAM_WPE: case PARAM_WQ: case PARAM_WK: case PARAM_WV: case PARAM_WO:
    case PARAM_W_GATE: case PARAM_W_IN: case PARAM_W_OUT: case PARAM_UNEMBED: return 1;
    default: return 0;
    }
}

/* The packed matrices: [rows, inputs] of each, the field it packs, and how many layers it stacks. */
typedef struct {
    int rows, inputs, layers, field;
} MatrixShape;

static void packed_shapes(const ModelConfig *c, MatrixShape s[N_PACKED_TENSORS]) {
    int L = c->n_layer, d = c->d_model, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dm = c->d_mlp;
    MatrixShape shapes[N_PACKED_TENSORS] = {
        [PACKED_WQ] = {qd, d, L, PARAM_WQ},     [PACKED_WK] = {kvd, d, L, PARAM_WK},
        [PACKED_WV] = {kvd, d, L, PARAM_WV},    [PACKED_WO] = {d, qd, L, PARAM_WO},
        [PACKED_W_GATE] = {dm, d, c->gated_mlp ? L : 0, PARAM_W_GATE},
        [PACKED_W_IN] = {dm, d, L, PARAM_W_IN}, [PACKED_W_OUT] = {d, dm, L, PARAM_W_OUT},
        [PACKED_UNEMBED] = {c->vocab, d, 1, c->tied_unembed ? PARAM_WTE : PARAM_UNEMBED},
    };
    memcpy(s, shapes, sizeof shapes);
}

/* Which packed matrix holds field f (-1: none; the embeddings have no packed copy of their own). */
static int packed_of(const ModelConfig *c, int field) {
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(c, s);
    for (int i = 0; i < N_PACKED_TENSORS; i++)
        if (s[i].field == field && s[i].layers) return i;
    return -1;
}

/* A 16-bit model holds a matrix only packed when it has a packed copy: the projections and an
 * untied unembedding. The embeddings' rows are looked up, so they stay rows (a tied unembedding
 * is the embedding's rows). */
static int held_packed_only(const ModelConfig *c, int field) {
    return c->weight_type != WEIGHTS_F32 && param_is_matrix(field) && field != PARAM_WTE && field != PARAM_WPE &&
           !(field == PARAM_UNEMBED && c->tied_unembed);
}

/* Float32 fields first, in the order of Params; then a 16-bit model's embeddings in 16 bits;
 * then the packed copies in the type of the matrices. A float32 model's block is its parameters
 * (as params_point lays them out) followed by the packed copies; a 16-bit model holds its
 * projection matrices only packed (the backward pass reads the panels transposed), one copy. */
size_t model_point(Model *m, void *block) {
    const ModelConfig *c = &m->cfg;
    size_t sizes[N_PARAM_TENSORS], size16 = weight_type_size(c->weight_type);
    param_sizes(c, sizes);
    float **fields[N_PARAM_TENSORS];
    params_fields(&m->w, fields);
    int held16 = c->weight_type != WEIGHTS_F32;
    char *at = block;
    size_t bytes = 0;
    for (int pass = 0; pass < 2; pass++) { /* float32, then 16 bits */
        for (int i = 0; i < N_PARAM_TENSORS; i++) {
            int in_16 = held16 && param_is_matrix(i);
            if (in_16 != pass || held_packed_only(c, i)) continue;
            if (in_16) m->half[i] = sizes[i] && at ? (uint16_t *)(at + bytes) : NULL;
            else *fields[i] = sizes[i] && at ? (float *)(at + bytes) : NULL;
            bytes += sizes[i] * (in_16 ? size16 : sizeof(float));
        }
        if (pass == 0) m->n_weights = bytes / sizeof(float);
    }
    if (c->tied_unembed) {
        m->w.unembed = m->w.wte;
        m->half[PARAM_UNEMBED] = m->half[PARAM_WTE];
    }
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(c, s);
    for (int i = 0; i < N_PACKED_TENSORS; i++) {
        size_t n = (size_t)s[i].layers * packed_floats(s[i].rows, s[i].inputs);
        m->packed.at[i] = n && at ? at + bytes : NULL;
        bytes += n * size16;
    }
    return bytes;
}

WeightRef model_param(const Model *m, int field) {
    if (m->cfg.weight_type != WEIGHTS_F32 && param_is_matrix(field))
        return (WeightRef){m->half[field], m->cfg.weight_type, 0};
    float **fields[N_PARAM_TENSORS];
    params_fields((Params *)&m->w, fields);
    return weight_f32(*fields[field]);
}

WeightRef model_packed(const Model *m, int which, int layer) {
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(&m->cfg, s);
    WeightRef all = {m->packed.at[which], m->cfg.weight_type, 1};
    return weight_at(all, (size_t)layer * packed_floats(s[which].rows, s[which].inputs));
}

/* [rows, inputs] of a matrix field's layer. */
static MatrixShape matrix_shape(const ModelConfig *c, int field) {
    if (field == PARAM_WTE) return (MatrixShape){c->vocab, c->d_model, 1, field};
    if (field == PARAM_WPE) return (MatrixShape){c->n_ctx, c->d_model, 1, field};
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(c, s);
    int which = field == PARAM_UNEMBED ? PACKED_UNEMBED : packed_of(c, field);
    if (which < 0) return (MatrixShape){0, 0, 0, field}; /* a matrix this model does not have */
    MatrixShape shape = s[which];
    shape.field = field;
    return shape;
}

WeightRef model_matrix(const Model *m, int field, int layer) {
    MatrixShape s = matrix_shape(&m->cfg, field);
    if (held_packed_only(&m->cfg, field)) return model_packed(m, packed_of(&m->cfg, field), layer);
    return weight_at(model_param(m, field), (size_t)layer * s.rows * s.inputs);
}

MatrixView model_view(const Model *m, int field, int layer) {
    return (MatrixView){model_matrix(m, field, layer), (size_t)matrix_shape(&m->cfg, field).inputs};
}

void model_store_matrix(Model *m, int field, int layer, const void *rows) {
    MatrixShape s = matrix_shape(&m->cfg, field);
    WeightRef to = model_matrix(m, field, layer);
    if (to.packed) pack_weights16((uint16_t *)to.p, rows, s.rows, s.inputs);
    else memcpy((void *)to.p, rows, (size_t)s.rows * s.inputs * weight_type_size(to.type));
}

void model_pack(Model *m) {
    MatrixShape s[N_PACKED_TENSORS];
    packed_shapes(&m->cfg, s);
    for (int i = 0; i < N_PACKED_TENSORS; i++) {
        WeightRef from = model_param(m, s[i].field);
        if (!from.p) continue; /* held only packed: model_store_matrix packed it */
        size_t size = weight_type_size(from.type);
        for (int l = 0; l < s[i].layers; l++) {
            void *to = (void *)model_packed(m, i, l).p;
            const void *rows = (const char *)from.p + (size_t)l * s[i].rows * s[i].inputs * size;
            if (from.type == WEIGHTS_F32) pack_weights(to, rows, s[i].rows, s[i].inputs);
            else pack_weights16(to, rows, s[i].rows, s[i].inputs);
        }
    }
}
