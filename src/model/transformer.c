/* The block forward (shared by every architecture, switched by ModelConfig flags) and the
 * full forward pass with a complete activation cache. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/ops.h"
#include "patchsweep/transformer.h"

void layer_acts_sizes(const ModelConfig *c, int B, int R, int Rq, int n_keys, int last_only,
                      size_t s[N_LAYER_ACTS]) {
    size_t kv_rows = (size_t)B * R, q_rows = (size_t)B * Rq, last_rows = last_only ? (size_t)B : 0;
    size_t d = (size_t)c->d_model, qd = (size_t)cfg_q_dim(c), kvd = (size_t)cfg_kv_dim(c), dm = (size_t)c->d_mlp;
    size_t per_norm = c->norm == NORM_LAYER, gated_dm = c->gated_mlp ? dm : 0;
    size_t heads_keys = (size_t)c->n_head * (size_t)n_keys;
    size_t sizes[N_LAYER_ACTS] = {
#define LAYER_ACTS_SIZE(name, rows, width) (rows) * (width),
        LAYER_ACTS(LAYER_ACTS_SIZE)
#undef LAYER_ACTS_SIZE
    };
    memcpy(s, sizes, sizeof sizes);
}

void layer_acts_fields(LayerActs *a, float **fields[N_LAYER_ACTS]) {
    float **list[N_LAYER_ACTS] = {
#define LAYER_ACTS_ADDRESS(name, rows, width) &a->name,
        LAYER_ACTS(LAYER_ACTS_ADDRESS)
#undef LAYER_ACTS_ADDRESS
    };
    memcpy(fields, list, sizeof list);
}

size_t layer_acts_point(LayerActs *a, float *block, const size_t s[N_LAYER_ACTS]) {
    float **fields[N_LAYER_ACTS];
    layer_acts_fields(a, fields);
    size_t total = 0;
    for (int i = 0; i < N_LAYER_ACTS; i++) {
        *fields[i] = s[i] ? block + total : NULL;
        total += s[i];
    }
    return total;
}

size_t layer_acts_floats(const size_t s[N_LAYER_ACTS]) {
    size_t total = 0;
    for (int i = 0; i < N_LAYER_ACTS; i++) total += s[i];
    return total;
}

/* dst[b] = src[b, R-1] for rows of width w */
static void gather_last_rows(float *dst, const float *src, int B, int R, int w) {
    for (int b = 0; b < B; b++)
        memcpy(dst + (size_t)b * w, src + ((size_t)b * R + R - 1) * w, (size_t)w * sizeof(float));
}

/* The rows of the block input that the q side computes: all of them, or the last one gathered. */
static const float *resid_pre_q_rows(LayerActs *a, const BlockRun *run, int d) {
    if (!run->last_only) return a->resid_pre;
    gather_last_rows(a->resid_pre_last, a->resid_pre, run->B, run->R, d);
    return a->resid_pre_last;
}

void block_forward(const Model *m, int l, LayerActs *a, const BlockRun *run, BlockHook hook, void *ctx) {
    const ModelConfig *c = &m->cfg;
    const Params *w = &m->w;
    int d = c->d_model, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dm = c->d_mlp;
    int B = run->B, R = run->R, Rq = block_q_rows(run);
    int n_kv = B * R, n_q = B * Rq;
    Stage from = run->from_stage;
    size_t L = (size_t)l;
#define LAYER(p, size) ((p) ? (p) + L * (size) : NULL)
#define PACKED(which) model_packed(m, which, l)
#define HOOK(stage) \
    if (hook && from <= (stage)) hook(ctx, stage, l, a, run)

    HOOK(ST_RESID_PRE);
    if (from < ST_QKV) {
        norm_forward(c->norm, a->ln1, a->ln1_mean, a->ln1_rstd, a->resid_pre, LAYER(w->ln1_w, d),
                     LAYER(w->ln1_b, d), n_kv, d, c->norm_eps);
        matmul_forward_ref(a->k, a->ln1, PACKED(PACKED_WK), LAYER(w->bk, kvd), n_kv, d, kvd);
        matmul_forward_ref(a->v, a->ln1, PACKED(PACKED_WV), LAYER(w->bv, kvd), n_kv, d, kvd);
        const float *ln1_q = a->ln1;
        if (run->last_only) {
            gather_last_rows(a->ln1_last, a->ln1, B, R, d);
            ln1_q = a->ln1_last;
        }
        matmul_forward_ref(a->q, ln1_q, PACKED(PACKED_WQ), LAYER(w->bq, qd), n_q, d, qd);
    }
    HOOK(ST_QKV);
    if (from < ST_Z) {
        if (c->rotary_dims) {
            rope_forward(a->q_rot, a->q, B, Rq, block_q_pos0(run), c->n_head, c->d_head, c->rotary_dims,
                         m->rope_inv_freq);
            rope_forward(a->k_rot, a->k, B, R, run->r0, c->n_kv_head, c->d_head, c->rotary_dims, m->rope_inv_freq);
        } else {
            memcpy(a->q_rot, a->q, (size_t)n_q * qd * sizeof(float));
            memcpy(a->k_rot, a->k, (size_t)n_kv * kvd * sizeof(float));
        }
        /* the pattern is kept when the buffers have room for it (a full run that a backward pass
         * or the QK fix reads), else computed row by row and dropped */
        AttnShape shape = {c->n_head, c->n_kv_head, c->d_head, Rq, block_q_pos0(run), R, run->r0};
        attention_forward_batch(a->z, a->pattern, a->q_rot, a->k_rot, a->v, (const float *const *)run->k_prefix,
                                (const float *const *)run->v_prefix, B, &shape);
    }
    HOOK(ST_Z);
    if (from < ST_ATTN_OUT)
        matmul_forward_ref(a->attn_out, a->z, PACKED(PACKED_WO), LAYER(w->bo, d), n_q, qd, d);
    HOOK(ST_ATTN_OUT);
    if (from < ST_RESID_MID) residual_forward(a->resid_mid, resid_pre_q_rows(a, run, d), a->attn_out, n_q * d);
    HOOK(ST_RESID_MID);
    if (from < ST_MLP_POST) {
        /* sequential: the MLP reads resid_mid; parallel residual (GPT-NeoX): the block input */
        const float *mlp_in = c->parallel_residual ? resid_pre_q_rows(a, run, d) : a->resid_mid;
        norm_forward(c->norm, a->ln2, a->ln2_mean, a->ln2_rstd, mlp_in, LAYER(w->ln2_w, d),
                     LAYER(w->ln2_b, d), n_q, d, c->norm_eps);
        if (c->gated_mlp) {
            matmul_forward_ref(a->mlp_pre, a->ln2, PACKED(PACKED_W_GATE), NULL, n_q, d, dm);
            matmul_forward_ref(a->mlp_up, a->ln2, PACKED(PACKED_W_IN), LAYER(w->b_in, dm), n_q, d, dm);
            swiglu_forward(a->mlp_post, a->mlp_pre, a->mlp_up, n_q * dm);
        } else {
            matmul_forward_ref(a->mlp_pre, a->ln2, PACKED(PACKED_W_IN), LAYER(w->b_in, dm), n_q, d, dm);
            act_forward(c->act, a->mlp_post, a->mlp_pre, n_q * dm);
        }
    }
    HOOK(ST_MLP_POST);
    if (from < ST_MLP_OUT)
        matmul_forward_ref(a->mlp_out, a->mlp_post, PACKED(PACKED_W_OUT), LAYER(w->b_out, d), n_q, dm, d);
    HOOK(ST_MLP_OUT);
    if (from < ST_RESID_POST) residual_forward(a->resid_post, a->resid_mid, a->mlp_out, n_q * d);
    HOOK(ST_RESID_POST);
#undef HOOK
#undef PACKED
#undef LAYER
}

/* ---- the run cache -------------------------------------------------------------------------------- */

static size_t final_sizes(const ModelConfig *c, int T, int with_logits, size_t s[4]) {
    int ln = c->norm == NORM_LAYER;
    s[0] = (size_t)T * c->d_model;
    s[1] = ln ? (size_t)T : 0;
    s[2] = (size_t)T;
    s[3] = with_logits ? (size_t)T * c->vocab : 0;
    return s[0] + s[1] + s[2] + s[3];
}

static unsigned long next_cache_id = 1;

void run_cache_init(RunCache *c, const ModelConfig *cfg, int T, int with_logits) {
    memset(c, 0, sizeof *c);
    c->T = T;
    c->id = next_cache_id++;
    size_t layer[N_LAYER_ACTS], fin[4], per_layer = 0;
    layer_acts_sizes(cfg, 1, T, T, T, 0, layer);
    for (int i = 0; i < N_LAYER_ACTS; i++) per_layer += layer[i];
    size_t total = per_layer * cfg->n_layer + final_sizes(cfg, T, with_logits, fin);
    c->block = alloc_floats(total);
    c->layer = xcalloc((size_t)cfg->n_layer, sizeof(LayerActs));
    float *p = c->block;
    for (int l = 0; l < cfg->n_layer; l++) p += layer_acts_point(&c->layer[l], p, layer);
    float **fields[4] = {&c->lnf, &c->lnf_mean, &c->lnf_rstd, &c->logits};
    for (int i = 0; i < 4; i++) {
        *fields[i] = fin[i] ? p : NULL;
        p += fin[i];
    }
}

size_t run_cache_lean_floats(const ModelConfig *cfg, int T) {
    size_t d = (size_t)cfg->d_model, kvd = (size_t)cfg_kv_dim(cfg);
    return (size_t)T * ((d + 2 * kvd) * cfg->n_layer + d);
}

void run_cache_init_lean(RunCache *c, const ModelConfig *cfg, int T) {
    memset(c, 0, sizeof *c);
    c->T = T;
    c->lean = 1;
    c->chunk = LEAN_CHUNK_ROWS;
    c->id = next_cache_id++;
    size_t d = (size_t)cfg->d_model, kvd = (size_t)cfg_kv_dim(cfg);
    c->block = alloc_floats(run_cache_lean_floats(cfg, T));
    c->layer = xcalloc((size_t)cfg->n_layer, sizeof(LayerActs));
    float *p = c->block;
    for (int l = 0; l < cfg->n_layer; l++) {
        LayerActs *a = &c->layer[l];
        a->resid_pre = p, p += (size_t)T * d;
        a->k_rot = p, p += (size_t)T * kvd;
        a->v = p, p += (size_t)T * kvd;
        if (!cfg->rotary_dims) a->k = a->k_rot; /* without rotary, k_rot is a copy of k */
        if (l > 0) c->layer[l - 1].resid_post = a->resid_pre;
    }
    c->layer[cfg->n_layer - 1].resid_post = p;
}

size_t layer_floats(const ModelConfig *cfg, int T, int with_pattern) {
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(cfg, 1, T, T, with_pattern ? T : 0, 0, sizes);
    return layer_acts_floats(sizes);
}

void layer_scratch_init(LayerActs *a, float **block, const ModelConfig *cfg, int T, int with_pattern) {
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(cfg, 1, T, T, with_pattern ? T : 0, 0, sizes);
    *block = alloc_floats(layer_acts_floats(sizes));
    layer_acts_point(a, *block, sizes);
}

/* Layer l of a lean cache into scratch, from its block input. */
static void lean_layer(const Model *m, const RunCache *c, int l, LayerActs *scratch, BlockHook hook, void *ctx) {
    size_t n = (size_t)c->T * m->cfg.d_model;
    if (scratch->resid_pre != c->layer[l].resid_pre) memcpy(scratch->resid_pre, c->layer[l].resid_pre, sizeof(float) * n);
    BlockRun run = {.B = 1, .R = c->T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    block_forward(m, l, scratch, &run, hook, ctx);
}

const LayerActs *run_layer(const Model *m, const RunCache *c, int l, LayerActs *scratch) {
    if (!c->lean) return &c->layer[l];
    lean_layer(m, c, l, scratch, NULL, NULL);
    return scratch;
}

void run_expand(const Model *m, const RunCache *c, RunCache *full) {
    const ModelConfig *cfg = &m->cfg;
    int L = cfg->n_layer, d = cfg->d_model;
    run_cache_init(full, cfg, c->T, 0);
    for (int l = 0; l < L; l++) lean_layer(m, c, l, &full->layer[l], NULL, NULL);
    norm_forward(cfg->norm, full->lnf, full->lnf_mean, full->lnf_rstd, full->layer[L - 1].resid_post, m->w.lnf_w,
                 m->w.lnf_b, c->T, d, cfg->norm_eps);
}

void run_cache_zero(RunCache *c, const ModelConfig *cfg) {
    size_t layer[N_LAYER_ACTS], fin[4], total = 0;
    layer_acts_sizes(cfg, 1, c->T, c->T, c->T, 0, layer);
    for (int i = 0; i < N_LAYER_ACTS; i++) total += layer[i] * cfg->n_layer;
    total += final_sizes(cfg, c->T, c->logits != NULL, fin);
    memset(c->block, 0, total * sizeof(float));
}

void run_cache_free(RunCache *c) {
    free(c->block);
    free(c->layer);
    memset(c, 0, sizeof *c);
}

/* A lean cache's forward, layer by layer, each layer in chunks of c->chunk rows: a chunk reads
 * the keys and values of the rows before it from the cache (as the engine's suffixes do), so
 * the scratch is a chunk of one layer, not the whole. The bits are the full pass's: a row's
 * values depend on nothing computed beside it, and the keys after a query's position enter its
 * attention with weight exactly 0. */
static void lean_forward(const Model *m, RunCache *c, BlockHook hook, void *ctx) {
    const ModelConfig *cfg = &m->cfg;
    size_t d = (size_t)cfg->d_model, kvd = (size_t)cfg_kv_dim(cfg);
    int chunk = c->chunk < c->T ? c->chunk : c->T;
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(cfg, 1, chunk, chunk, 0, 0, sizes);
    float *block = alloc_floats(layer_acts_floats(sizes));
    for (int l = 0; l < cfg->n_layer; l++) {
        LayerActs *keep = &c->layer[l];
        const float *k_prefix = keep->k_rot, *v_prefix = keep->v;
        for (int r0 = 0; r0 < c->T; r0 += chunk) {
            int R = c->T - r0 < chunk ? c->T - r0 : chunk;
            LayerActs a;
            layer_acts_sizes(cfg, 1, R, R, 0, 0, sizes);
            layer_acts_point(&a, block, sizes);
            memcpy(a.resid_pre, keep->resid_pre + r0 * d, sizeof(float) * R * d);
            BlockRun run = {.B = 1, .R = R, .r0 = r0, .last_only = 0, .from_stage = ST_RESID_PRE,
                            .k_prefix = &k_prefix, .v_prefix = &v_prefix};
            block_forward(m, l, &a, &run, hook, ctx);
            memcpy(keep->k_rot + r0 * kvd, a.k_rot, sizeof(float) * R * kvd);
            memcpy(keep->v + r0 * kvd, a.v, sizeof(float) * R * kvd);
            memcpy(keep->resid_post + r0 * d, a.resid_post, sizeof(float) * R * d);
        }
    }
    free(block);
}

void run_forward(const Model *m, const int *tokens, int T, const float *noise, RunCache *c, BlockHook hook,
                 void *ctx) {
    const ModelConfig *cfg = &m->cfg;
    int d = cfg->d_model, L = cfg->n_layer;
    embedding_forward(c->layer[0].resid_pre, tokens, T, model_param(m, PARAM_WTE), model_param(m, PARAM_WPE), noise, d);
    if (c->lean) {
        lean_forward(m, c, hook, ctx);
        return;
    }
    BlockRun run = {.B = 1, .R = T, .r0 = 0, .last_only = 0, .from_stage = ST_RESID_PRE};
    for (int l = 0; l < L; l++) {
        if (l > 0) memcpy(c->layer[l].resid_pre, c->layer[l - 1].resid_post, (size_t)T * d * sizeof(float));
        block_forward(m, l, &c->layer[l], &run, hook, ctx);
    }
    const float *resid = c->layer[L - 1].resid_post;
    norm_forward(cfg->norm, c->lnf, c->lnf_mean, c->lnf_rstd, resid, m->w.lnf_w, m->w.lnf_b, T, d, cfg->norm_eps);
    if (c->logits) matmul_forward_ref(c->logits, c->lnf, model_packed(m, PACKED_UNEMBED, 0), NULL, T, d, cfg->vocab);
}

/* ---- backward ------------------------------------------------------------------------------------ */

/* Zeroes every gradient buffer of a layer but resid_post (the incoming gradient). */
static void zero_layer_grads(const ModelConfig *c, LayerActs *d, int T) {
    size_t sizes[N_LAYER_ACTS];
    float **fields[N_LAYER_ACTS];
    layer_acts_sizes(c, 1, T, T, T, 0, sizes);
    layer_acts_fields(d, fields);
    for (int i = 0; i < N_LAYER_ACTS; i++)
        if (*fields[i] && *fields[i] != d->resid_post) memset(*fields[i], 0, sizes[i] * sizeof(float));
}

void block_backward(const Model *m, int l, int T, const LayerActs *a, LayerActs *d, Params *pg, int cut) {
    const ModelConfig *c = &m->cfg;
    const Params *w = &m->w;
    int dim = c->d_model, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c), dm = c->d_mlp;
    size_t L = (size_t)l;
#define LAYER(p, size) ((p) ? (p) + L * (size) : NULL)
#define MATRIX(field, size) model_matrix(m, field, l)
    zero_layer_grads(c, d, T);
    /* resid_post = resid_mid + mlp_out */
    residual_backward(d->resid_mid, cut ? NULL : d->mlp_out, d->resid_post, T * dim);
    if (cut) { /* GradDrop: only the skip connection carries gradient through this block */
        memcpy(d->resid_pre, d->resid_mid, sizeof(float) * (size_t)T * dim);
        return;
    }
    /* mlp_out = mlp_post W_out^T + b_out */
    matmul_backward_ref(d->mlp_post, pg ? LAYER(pg->w_out, (size_t)dim * dm) : NULL, pg ? LAYER(pg->b_out, dim) : NULL,
                    d->mlp_out, a->mlp_post, MATRIX(PARAM_W_OUT, (size_t)dim * dm), T, dm, dim);
    if (c->gated_mlp) { /* mlp_post = silu(ln2 W_gate^T) * (ln2 W_in^T) */
        swiglu_backward(d->mlp_pre, d->mlp_up, d->mlp_post, a->mlp_pre, a->mlp_up, T * dm);
        matmul_backward_ref(d->ln2, pg ? LAYER(pg->w_gate, (size_t)dm * dim) : NULL, NULL, d->mlp_pre, a->ln2,
                        MATRIX(PARAM_W_GATE, (size_t)dm * dim), T, dim, dm);
        matmul_backward_ref(d->ln2, pg ? LAYER(pg->w_in, (size_t)dm * dim) : NULL, pg ? LAYER(pg->b_in, dm) : NULL,
                        d->mlp_up, a->ln2, MATRIX(PARAM_W_IN, (size_t)dm * dim), T, dim, dm);
    } else { /* mlp_post = act(ln2 W_in^T + b_in) */
        act_backward(c->act, d->mlp_pre, d->mlp_post, a->mlp_pre, T * dm);
        matmul_backward_ref(d->ln2, pg ? LAYER(pg->w_in, (size_t)dm * dim) : NULL, pg ? LAYER(pg->b_in, dm) : NULL,
                        d->mlp_pre, a->ln2, MATRIX(PARAM_W_IN, (size_t)dm * dim), T, dim, dm);
    }
    /* ln2 = norm(resid_mid), or norm(resid_pre) with the parallel residual */
    norm_backward(c->norm, c->parallel_residual ? d->resid_pre : d->resid_mid, pg ? LAYER(pg->ln2_w, dim) : NULL,
                  pg ? LAYER(pg->ln2_b, dim) : NULL, d->ln2, c->parallel_residual ? a->resid_pre : a->resid_mid,
                  LAYER(w->ln2_w, dim), a->ln2_mean, a->ln2_rstd, T, dim);
    /* resid_mid = resid_pre + attn_out */
    residual_backward(d->resid_pre, d->attn_out, d->resid_mid, T * dim);
    /* attn_out = z W_o^T + b_o */
    matmul_backward_ref(d->z, pg ? LAYER(pg->wo, (size_t)dim * qd) : NULL, pg ? LAYER(pg->bo, dim) : NULL, d->attn_out,
                    a->z, MATRIX(PARAM_WO, (size_t)dim * qd), T, qd, dim);
    AttnShape shape = {c->n_head, c->n_kv_head, c->d_head, T, 0, T, 0};
    attention_backward(d->q_rot, d->k_rot, d->v, d->pattern, d->z, a->q_rot, a->k_rot, a->v, a->pattern, &shape);
    if (c->rotary_dims) {
        rope_backward(d->q, d->q_rot, 1, T, 0, c->n_head, c->d_head, c->rotary_dims, m->rope_inv_freq);
        rope_backward(d->k, d->k_rot, 1, T, 0, c->n_kv_head, c->d_head, c->rotary_dims, m->rope_inv_freq);
    } else {
        residual_backward(d->q, NULL, d->q_rot, T * qd);
        residual_backward(d->k, NULL, d->k_rot, T * kvd);
    }
    /* q, k, v = ln1 W^T + b */
    matmul_backward_ref(d->ln1, pg ? LAYER(pg->wq, (size_t)qd * dim) : NULL, pg ? LAYER(pg->bq, qd) : NULL, d->q, a->ln1,
                    MATRIX(PARAM_WQ, (size_t)qd * dim), T, dim, qd);
    matmul_backward_ref(d->ln1, pg ? LAYER(pg->wk, (size_t)kvd * dim) : NULL, pg ? LAYER(pg->bk, kvd) : NULL, d->k, a->ln1,
                    MATRIX(PARAM_WK, (size_t)kvd * dim), T, dim, kvd);
    matmul_backward_ref(d->ln1, pg ? LAYER(pg->wv, (size_t)kvd * dim) : NULL, pg ? LAYER(pg->bv, kvd) : NULL, d->v, a->ln1,
                    MATRIX(PARAM_WV, (size_t)kvd * dim), T, dim, kvd);
    norm_backward(c->norm, d->resid_pre, pg ? LAYER(pg->ln1_w, dim) : NULL, pg ? LAYER(pg->ln1_b, dim) : NULL, d->ln1,
                  a->resid_pre, LAYER(w->ln1_w, dim), a->ln1_mean, a->ln1_rstd, T, dim);
#undef MATRIX
#undef LAYER
}

void run_backward(const Model *m, const int *tokens, const RunCache *acts, RunCache *d, Params *pg, int top,
                  int cut_layer) {
    int T = acts->T, dim = m->cfg.d_model;
    for (int l = top; l >= 0; l--) {
        if (l < top) memcpy(d->layer[l].resid_post, d->layer[l + 1].resid_pre, sizeof(float) * (size_t)T * dim);
        block_backward(m, l, T, &acts->layer[l], &d->layer[l], pg, l == cut_layer);
    }
    if (pg) embedding_backward(pg->wte, pg->wpe, d->layer[0].resid_pre, tokens, T, dim);
}
