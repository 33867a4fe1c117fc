/* A transformer language model held in memory: its configuration, all parameters in one
 * float32 block with a table of pointers (llm.c style), and an optional tokenizer. */
#ifndef PATCHSWEEP_MODEL_H
#define PATCHSWEEP_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "patchsweep/kernels.h"
#include "patchsweep/safetensors.h"

typedef enum { NORM_LAYER, NORM_RMS } NormKind;
typedef enum { ACT_GELU_TANH, ACT_GELU_ERF, ACT_SILU } ActKind;

typedef struct {
    char model_type[32];
    int n_layer, d_model, n_head, n_kv_head, d_head, d_mlp, vocab, n_ctx;
    float norm_eps;
    NormKind norm;
    ActKind act;
    int gated_mlp;       /* down(act(gate(x)) * up(x)) instead of out(act(in(x))) */
    int learned_pos;     /* absolute position embeddings added to the token embeddings */
    int rotary_dims;     /* leading dims of each head that get rotary embedding; 0 = none */
    double rope_theta;
    int tied_unembed;    /* unembedding = token embedding matrix */
    int linear_bias;     /* the attention and MLP projections have biases */
    int parallel_residual; /* GPT-NeoX: the MLP reads the block input, not resid_mid, and
                            * resid_post = resid_pre + attn_out + mlp_out */
    char assumed[512];   /* what config.json left out and was assumed: "rms_norm_eps = 1e-06, ..." */
    int bos_token_id;    /* config.json's, or -1 (model_bos prefers the tokenizer's) */
    WeightType weight_type; /* how the matrices are held in memory: BF16 / F16 when every matrix of the
                             * checkpoint is stored so, else F32 (model_check_checkpoint sets it; it is
                             * not part of model_config_json: the values, not their storage, make the model) */
} ModelConfig;

/* Records "key = value" in c->assumed when config.json does not set key (plan prints it, the
 * results file keeps it, and load errors cite it). */
void config_assume(ModelConfig *c, const cJSON *json, const char *key, const char *value_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Derived sizes. */
static inline int cfg_q_dim(const ModelConfig *c) { return c->n_head * c->d_head; }
static inline int cfg_kv_dim(const ModelConfig *c) { return c->n_kv_head * c->d_head; }

/* Every parameter, stacked over layers (layer outermost). Matrices are [out, in] (the
 * nn.Linear layout) whatever the checkpoint used. A NULL pointer is a parameter the
 * architecture does not have (biases of Llama, the gate of GPT-2, ...). */
typedef struct {
    float *wte;            /* [V, d] */
    float *wpe;            /* [n_ctx, d] */
    float *ln1_w, *ln1_b;  /* [L, d] */
    float *wq, *bq;        /* [L, q_dim, d], [L, q_dim] */
    float *wk, *bk;        /* [L, kv_dim, d], [L, kv_dim] */
    float *wv, *bv;        /* [L, kv_dim, d], [L, kv_dim] */
    float *wo, *bo;        /* [L, d, q_dim], [L, d] */
    float *ln2_w, *ln2_b;  /* [L, d] */
    float *w_gate;         /* [L, d_mlp, d] */
    float *w_in, *b_in;    /* [L, d_mlp, d], [L, d_mlp] */
    float *w_out, *b_out;  /* [L, d, d_mlp], [L, d] */
    float *lnf_w, *lnf_b;  /* [d] */
    float *unembed;        /* [V, d]; points at wte when tied */
} Params;

/* The fields of Params, in order (indices into params_fields). */
enum {
    PARAM_WTE, PARAM_WPE, PARAM_LN1_W, PARAM_LN1_B, PARAM_WQ, PARAM_BQ, PARAM_WK, PARAM_BK, PARAM_WV, PARAM_BV,
    PARAM_WO, PARAM_BO, PARAM_LN2_W, PARAM_LN2_B, PARAM_W_GATE, PARAM_W_IN, PARAM_B_IN, PARAM_W_OUT, PARAM_B_OUT,
    PARAM_LNF_W, PARAM_LNF_B, PARAM_UNEMBED, N_PARAM_TENSORS
};
/* The address of every field of p, in order. */
void params_fields(Params *p, float **fields[N_PARAM_TENSORS]);
/* Sizes in floats, in the order of the fields of Params. */
void param_sizes(const ModelConfig *c, size_t sizes[N_PARAM_TENSORS]);
/* Points every field of p into block (which holds the sum of sizes, all float32: a model of
 * weight type F32, or gradients); returns that sum. */
size_t params_point(Params *p, float *block, const ModelConfig *c);
/* 1 for the fields a 16-bit model holds in 16 bits: the embeddings, the unembedding and every
 * projection matrix. Norm gains and biases stay float32 (exactly the checkpoint's values). */
int param_is_matrix(int field);

/* The matrices once more, packed for the forward product (ops.h: pack_weights), stacked over
 * layers, in the model's weight type: layer l of wq starts l * packed_floats(q_dim, d) elements
 * in (model_packed). The forward pass reads only these; the backward pass and everything else
 * read the parameters. NULL where the parameter is. */
enum { PACKED_WQ, PACKED_WK, PACKED_WV, PACKED_WO, PACKED_W_GATE, PACKED_W_IN, PACKED_W_OUT, PACKED_UNEMBED,
       N_PACKED_TENSORS };
typedef struct {
    void *at[N_PACKED_TENSORS];
} Packed;

typedef struct Tokenizer Tokenizer;

typedef struct {
    ModelConfig cfg;
    Params w;              /* float32 parameters; in a 16-bit model the matrices are NULL here */
    uint16_t *half[N_PARAM_TENSORS]; /* a 16-bit model's embeddings (wte, wpe; unembed when tied), else NULL */
    Packed packed;
    float *weights;        /* the one block (model_point): the float32 parameters (n_weights floats),
                            * a 16-bit model's embeddings, then the packed copies */
    int owns_weights;      /* 0 when the block belongs to the caller (shared between ranks) */
    size_t n_weights;      /* the float32 parameters: all of a F32 model's (what training updates) */
    double *rope_inv_freq; /* [rotary_dims / 2] */
    Tokenizer *tokenizer;  /* NULL when the folder has no tokenizer.json */
    uint64_t fingerprint;  /* hash of the configuration and every weight */
    char dir[4096];
} Model;

/* Where a checkpoint tensor goes: a table per architecture, read by one loop (model.c). */
typedef enum {
    TENSOR_COPY,        /* stored as Params holds it: [out, in] matrices, vectors */
    TENSOR_CONV1D,      /* GPT-2's Conv1D: stored [in, out], transposed into place */
    TENSOR_QKV_COLUMNS, /* GPT-2's c_attn: Conv1D [in, 3 q_dim], columns q | k | v (its bias [3 q_dim] likewise) */
    TENSOR_QKV_HEADS,   /* GPT-NeoX's query_key_value: rows head by head, q, k, v of d_head rows each */
} TensorLayout;

/* Sizes a stored shape is made of. */
typedef enum { DIM_NONE, DIM_MODEL, DIM_Q, DIM_KV, DIM_MLP, DIM_VOCAB, DIM_CONTEXT, DIM_3Q } TensorDim;

typedef struct {
    const char *name;     /* printf pattern, given the checkpoint's prefix and the layer: "%sh.%d.ln_1.weight" */
    int per_layer;
    TensorLayout layout;
    int fields[3];        /* PARAM_* it fills: one, or q, k, v for the fused layouts */
    TensorDim shape[2];   /* as stored; a vector has shape[1] = DIM_NONE */
    int untied_only;      /* read only when the unembedding is not the embedding */
} TensorSpec;

/* An architecture knows its config.json keys and its tensor names; the compute is shared
 * (src/model/transformer.c), switched by the flags in ModelConfig. */
typedef struct {
    const char *model_type;
    int (*parse_config)(const cJSON *json, const char *where, ModelConfig *cfg);
    const TensorSpec *tensors;
    int n_tensors;
    /* The config.json keys each TensorDim comes from, for messages ("num_key_value_heads x head_dim"). */
    const char *dim_keys[8];
    /* The prefix of the tensor names in this folder's files ("" when NULL). */
    const char *(*prefix)(const StSet *st);
} Architecture;

extern const Architecture arch_gpt2, arch_llama, arch_gpt_neox;

int model_config_parse(const cJSON *json, const char *where, ModelConfig *cfg);
/* Loads a Hugging Face model folder: model_read_config + model_check_checkpoint + model_alloc +
 * model_read_weights + model_read_tokenizer, and the fingerprint. */
int model_load(Model *m, const char *dir);
/* The configuration, the checkpoint's headers checked against it, and the tokenizer, without
 * reading or allocating a weight (m->weights stays NULL): what `plan` needs, in seconds and a
 * few megabytes whatever the model's size. */
int model_load_shape(Model *m, const char *dir);
/* The pieces, for callers that place the weights themselves (one copy per node, shared by its
 * MPI ranks: src/sweep/runner.c). */
int model_read_config(const char *dir, ModelConfig *cfg);
/* Checks that the folder's checkpoint has every tensor the configuration implies, with the shape
 * it implies, reading headers only: before anything the size of the model is allocated. A
 * mismatch names the config.json keys behind the expected shape and what was assumed. Sets
 * cfg->weight_type from the matrices' dtypes. */
int model_check_checkpoint(ModelConfig *cfg, const char *dir);
/* Bytes of the whole block: the parameters and their packed copies, in cfg->weight_type. */
size_t model_weight_bytes(const ModelConfig *cfg);
/* Sets m up around a block of model_weight_bytes (aligned as malloc aligns); NULL allocates one. */
void model_attach(Model *m, const ModelConfig *cfg, void *weights);
/* Points m's parameters, half and packed into block by m->cfg (NULL: only counts); returns the
 * bytes it spans. */
size_t model_point(Model *m, void *block);
/* Parameter field (PARAM_*) as held, all layers: float32 vectors, a float32 model's matrices, a
 * 16-bit model's embeddings in 16 bits; {NULL} for a 16-bit model's projections (packed only). */
WeightRef model_param(const Model *m, int field);
/* Layer `layer` of a matrix field (param_is_matrix) wherever it is held: its rows, or a 16-bit
 * model's packed copy (.packed = 1). matmul_backward_ref reads either. */
WeightRef model_matrix(const Model *m, int field, int layer);
/* Element [o, c] of a layer's matrix, widened to float32, read through a view taken once. */
typedef struct {
    WeightRef w;
    size_t inputs; /* C of the [rows, C] matrix */
} MatrixView;
MatrixView model_view(const Model *m, int field, int layer);
static inline float view_value(MatrixView v, int o, int c) {
    /* packed: panel o / PANEL, row c, column o % PANEL */
    size_t i = v.w.packed ? ((size_t)(o / PANEL) * v.inputs + (size_t)c) * PANEL + (size_t)(o % PANEL)
                          : (size_t)o * v.inputs + (size_t)c;
    return weight_value(v.w, i);
}
/* Stores layer `layer` of a matrix field from row-major values in the model's weight type: into
 * its rows, or packed (a 16-bit model's projections). model_pack then packs the rest. */
void model_store_matrix(Model *m, int field, int layer, const void *rows);
WeightRef model_packed(const Model *m, int which, int layer);
/* Reads the checkpoint into the parameters and packs them. */
int model_read_weights(Model *m, const char *dir);
/* Packs the matrices again from the parameters: after anything writes them (training, tests). */
void model_pack(Model *m);
int model_read_tokenizer(Model *m, const char *dir);
uint64_t model_fingerprint(const Model *m);
/* A model with the given shape and weights drawn from a seeded normal (benchmarks, tests). */
void model_init_random(Model *m, const ModelConfig *cfg, uint64_t seed, float scale);
/* model_attach with a fresh zeroed block. */
void model_alloc(Model *m, const ModelConfig *cfg);
void model_free(Model *m);
/* The model's beginning-of-sequence token: its tokenizer's (tokenizer_bos), else config.json's
 * bos_token_id; -1 when neither names one. */
int model_bos(const Model *m);
/* The configuration as JSON text (caller frees), for provenance. */
char *model_config_json(const ModelConfig *cfg);

/* Tokenizer: a Hugging Face tokenizer.json (BPE or WordLevel model; docs/tokenizers.md lists the
 * components supported), encoding and decoding as the Hugging Face tokenizers library does.
 * tokenizer_load reads path, and the tokenizer_config.json beside it for bos_token if present;
 * vocab is the model's vocabulary size (ids below it that the file does not name are allowed),
 * or 0. A malformed or unsupported file: PS_EUSER with one line naming the file and the field. */
int tokenizer_load(Tokenizer **out, const char *path, int vocab);
void tokenizer_free(Tokenizer *t);
/* The token's display form (byte-level tokens as their text, control characters escaped);
 * NULL when id names nothing. */
const char *tokenizer_token(const Tokenizer *t, int id);
int tokenizer_find(const Tokenizer *t, const char *token); /* -1 when absent */
int tokenizer_is_word_level(const Tokenizer *t);            /* text = tokens separated by whitespace */
int tokenizer_size(const Tokenizer *t);                     /* ids are 0 .. size-1 */
/* text (NUL-terminated UTF-8) into *ids (malloc'd, *n of them). Special tokens written in the
 * text are recognised; add_special_tokens lets the file's template add its own (BOS, ...).
 * Invalid UTF-8: PS_EUSER. */
int tokenizer_encode(const Tokenizer *t, const char *text, int add_special_tokens, int **ids, int *n);
/* ids back into text (malloc'd). Ids that name nothing are skipped, as Hugging Face does;
 * skip_special leaves out special tokens. */
char *tokenizer_decode(const Tokenizer *t, const int *ids, int n, int skip_special);
/* The beginning-of-sequence token: the first token the template adds, else the bos_token of
 * tokenizer_config.json; -1 when neither says. */
int tokenizer_bos(const Tokenizer *t);
/* 1 when encoding with add_special_tokens puts tokenizer_bos first (Llama-2, newer Llama-3
 * files); 0 when it does not (GPT-2, Pythia: callers prepend it themselves if they want it). */
int tokenizer_adds_bos(const Tokenizer *t);

#endif
