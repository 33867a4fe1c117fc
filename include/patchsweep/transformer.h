/* The transformer block, one run's activation cache, and the full forward pass.
 *
 * A block is computed for B sequences at once. Its "kv side" is every row being (re)computed,
 * R rows per sequence starting at absolute position r0; its "q side" is the rows whose outputs
 * are needed: all R rows, or only the last one (the metric reads only the last position, so
 * the last layer needs nothing else). Keys and values of positions < r0 come from a cached
 * prefix: that is how a patch at position t recomputes only positions >= t.
 *
 * After each stage the block calls a hook, which is where patches are applied. The hook sees
 * the stage's buffers; a run may also start mid-block (from_stage), with the buffers of the
 * earlier stages filled in by the caller. */
#ifndef PATCHSWEEP_TRANSFORMER_H
#define PATCHSWEEP_TRANSFORMER_H

#include "patchsweep/model.h"

/* The points of a block where activations can be read or replaced, in compute order. */
typedef enum {
    ST_RESID_PRE,  /* block input */
    ST_QKV,        /* q, k, v (before rotary) */
    ST_Z,          /* attention output per head, before W_O */
    ST_ATTN_OUT,
    ST_RESID_MID,
    ST_MLP_POST,   /* MLP hidden activation after the nonlinearity (and gate) */
    ST_MLP_OUT,
    ST_RESID_POST, /* block output */
    N_STAGES
} Stage;

/* The activations of one layer in a block call, listed once: name, rows, width. Rows are
 * kv_rows (every recomputed row, [B, R]), q_rows (the rows whose outputs are needed, [B, Rq]) or
 * last_rows (one per sequence, only when the q side is the last row alone: the gathers). Widths:
 * d (model), qd (heads x d_head), kvd (key/value heads x d_head), dm (MLP), per_norm (1 for
 * LayerNorm's mean, 0 for RMSNorm), gated_dm (dm with a gated MLP, else 0), heads_keys (heads x
 * keys: the pattern). */
#define LAYER_ACTS(X)                                                                                       \
    X(resid_pre, kv_rows, d) X(ln1, kv_rows, d) X(ln1_mean, kv_rows, per_norm) X(ln1_rstd, kv_rows, 1)     \
    X(k, kv_rows, kvd) X(v, kv_rows, kvd) X(k_rot, kv_rows, kvd)                                           \
    X(q, q_rows, qd) X(q_rot, q_rows, qd) X(pattern, q_rows, heads_keys) X(z, q_rows, qd)                  \
    X(attn_out, q_rows, d) X(resid_mid, q_rows, d) X(ln2, q_rows, d) X(ln2_mean, q_rows, per_norm)         \
    X(ln2_rstd, q_rows, 1) X(mlp_pre, q_rows, dm) X(mlp_up, q_rows, gated_dm) X(mlp_post, q_rows, dm)     \
    X(mlp_out, q_rows, d) X(resid_post, q_rows, d) X(ln1_last, last_rows, d) X(resid_pre_last, last_rows, d)

typedef struct {
#define LAYER_ACTS_FIELD(name, rows, width) float *name;
    LAYER_ACTS(LAYER_ACTS_FIELD)
#undef LAYER_ACTS_FIELD
} LayerActs;

#define LAYER_ACTS_ONE(name, rows, width) +1
enum { N_LAYER_ACTS = 0 LAYER_ACTS(LAYER_ACTS_ONE) };
#undef LAYER_ACTS_ONE

/* Sizes in floats of the fields of LayerActs for B sequences of R kv rows and Rq q rows,
 * with n_keys keys per query row; gathers only if last_only. */
void layer_acts_sizes(const ModelConfig *c, int B, int R, int Rq, int n_keys, int last_only,
                      size_t sizes[N_LAYER_ACTS]);
/* The address of every field, in the list's order. */
void layer_acts_fields(LayerActs *a, float **fields[N_LAYER_ACTS]);
size_t layer_acts_point(LayerActs *a, float *block, const size_t sizes[N_LAYER_ACTS]);
/* The sum of sizes. */
size_t layer_acts_floats(const size_t sizes[N_LAYER_ACTS]);

typedef struct {
    int B, R, r0;
    int last_only;
    Stage from_stage;      /* stages <= this one are already in the buffers */
    const float **k_prefix; /* per sequence: rotated keys at positions < r0, [r0, kv_dim] */
    const float **v_prefix; /* per sequence: values at positions < r0 */
} BlockRun;

static inline int block_q_rows(const BlockRun *r) { return r->last_only ? 1 : r->R; }
static inline int block_q_pos0(const BlockRun *r) { return r->r0 + r->R - block_q_rows(r); }

typedef void (*BlockHook)(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run);

void block_forward(const Model *m, int layer, LayerActs *a, const BlockRun *run, BlockHook hook, void *ctx);

/* One sequence of T tokens, all layers: every activation plus the final norm and logits (a full
 * cache), or only what restarts a suffix (a lean cache, lean = 1): per layer the block input, the
 * rotated keys and the values (and k, the same bits, when there is no rotary embedding), and the
 * last layer's output; a layer's resid_post is the next layer's resid_pre, the same buffer. Every
 * other field of a lean cache is NULL; run_layer recomputes a layer's activations from it. */
/* Rows a lean cache's forward pass computes at a time (its scratch is this many rows of a layer). */
#define LEAN_CHUNK_ROWS 64

typedef struct {
    int T, lean;
    int chunk;                       /* lean: rows run_forward computes at a time (LEAN_CHUNK_ROWS) */
    unsigned long id;                /* unique per initialised cache (views are keyed by it) */
    LayerActs *layer;                /* [n_layer] views into block */
    float *lnf, *lnf_mean, *lnf_rstd; /* [T, d], [T], [T] (NULL in a lean cache) */
    float *logits;                   /* [T, V], or NULL when not wanted */
    float *block;
} RunCache;

void run_cache_init(RunCache *c, const ModelConfig *cfg, int T, int with_logits);
void run_cache_init_lean(RunCache *c, const ModelConfig *cfg, int T);
/* Floats a lean cache of T rows holds. */
size_t run_cache_lean_floats(const ModelConfig *cfg, int T);
/* Floats of one layer of T rows with every activation, the pattern included or not. */
size_t layer_floats(const ModelConfig *cfg, int T, int with_pattern);

/* Layer l of run c with every activation: c's own when c is full, else recomputed into scratch
 * (one layer of c->T rows laid out by layer_acts_point; its pattern, if it has one, is filled
 * too) from the lean cache's block input — the same function on the same input as the forward
 * pass, so the same bits. */
const LayerActs *run_layer(const Model *m, const RunCache *c, int l, LayerActs *scratch);
/* A full cache (every activation, patterns included) recomputed from a lean one c, the same bits
 * as a full forward pass; run_cache_free frees it. */
void run_expand(const Model *m, const RunCache *c, RunCache *full);
/* Layer scratch for run_layer: *block must be freed. */
void layer_scratch_init(LayerActs *a, float **block, const ModelConfig *cfg, int T, int with_pattern);
void run_cache_free(RunCache *c);
/* Zeroes every buffer (gradient caches accumulate). */
void run_cache_zero(RunCache *c, const ModelConfig *cfg);

/* Full forward pass filling the cache (full or lean). noise, if not NULL, is added to the
 * embeddings ([T, d]); hook, if not NULL, runs after every stage of every layer. The final norm
 * and logits are computed when the cache has room for them. */
void run_forward(const Model *m, const int *tokens, int T, const float *noise, RunCache *c, BlockHook hook,
                 void *ctx);

/* ---- backward ------------------------------------------------------------------------------
 * Gradients of a scalar loss with respect to every activation of one full run, in a RunCache
 * laid out like the activations (d->layer[l].z is dL/dz, d->layer[l].pattern is dL/dpattern,
 * the G of the QK fix). */

/* One block of one full sequence of T rows, backward. On entry d->resid_post holds dL/d(block output); on exit every field of
 * d holds the gradient of its activation and d->resid_pre that of the block input. Parameter
 * gradients accumulate into pg when it is not NULL. With cut (GradDrop), no gradient flows
 * through the block's attention and MLP writes (forward values unchanged, skip connection kept):
 * resid_pre and resid_mid get resid_post's gradient, every other field zero. */
void block_backward(const Model *m, int layer, int T, const LayerActs *a, LayerActs *d, Params *pg, int cut);

/* Backward through layers top..0, starting from d->layer[top].resid_post, with layer cut_layer
 * cut (-1: none). Parameter gradients (pg, may be NULL) include the embeddings. */
void run_backward(const Model *m, const int *tokens, const RunCache *acts, RunCache *d, Params *pg, int top,
                  int cut_layer);

#endif
