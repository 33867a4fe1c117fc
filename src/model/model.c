/* Loading a Hugging Face model folder: config.json picks the architecture, whose file maps
 * checkpoint tensors into the shared parameter layout. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static const Architecture *const architectures[] = {&arch_gpt2, &arch_llama, &arch_gpt_neox};

void config_assume(ModelConfig *c, const cJSON *json, const char *key, const char *value_fmt, ...) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(json, key);
    if (it && !cJSON_IsNull(it)) return;
    char value[128];
    va_list ap;
    va_start(ap, value_fmt);
    vsnprintf(value, sizeof value, value_fmt, ap);
    va_end(ap);
    size_t used = strlen(c->assumed);
    snprintf(c->assumed + used, sizeof c->assumed - used, "%s%s = %s", used ? ", " : "", key, value);
}

static int check_config(const ModelConfig *c, const char *where) {
    struct { const char *what; long value; } positive[] = {
        {"number of layers", c->n_layer}, {"model width", c->d_model}, {"number of heads", c->n_head},
        {"number of key/value heads", c->n_kv_head}, {"head size", c->d_head}, {"MLP width", c->d_mlp},
        {"vocabulary size", c->vocab}, {"context length", c->n_ctx},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++)
        if (positive[i].value <= 0 || positive[i].value > (1L << 30))
            return ps_fail(PS_EUSER, "%s: %s is %ld, expected a positive integer", where, positive[i].what,
                           positive[i].value);
    if ((long)c->n_head * c->d_head > (1L << 30) || (long)c->n_kv_head * c->d_head > (1L << 30))
        return ps_fail(PS_EUSER, "%s: %d heads of size %d are more than any model has", where, c->n_head, c->d_head);
    if (c->n_head % c->n_kv_head != 0)
        return ps_fail(PS_EUSER, "%s: %d heads cannot share %d key/value heads evenly", where, c->n_head, c->n_kv_head);
    if (c->rotary_dims % 2 || c->rotary_dims > c->d_head)
        return ps_fail(PS_EUSER, "%s: rotary dimensions %d must be even and at most the head size %d", where,
                       c->rotary_dims, c->d_head);
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return ps_fail(PS_EUSER, "%s: normalisation epsilon must be positive", where);
    return PS_OK;
}

int model_config_parse(const cJSON *json, const char *where, ModelConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    const char *type = NULL;
    int rc = json_get_string(json, "model_type", where, 1, &type);
    if (rc) return rc;
    for (size_t i = 0; i < sizeof architectures / sizeof architectures[0]; i++) {
        if (strcmp(type, architectures[i]->model_type) != 0) continue;
        snprintf(cfg->model_type, sizeof cfg->model_type, "%s", type);
        rc = architectures[i]->parse_config(json, where, cfg);
        /* the same key in every architecture, read where it is a plain token id (some configs hold
         * null or a list; nothing depends on it but heads' probe sequences, so those are ignored) */
        const cJSON *bos = cJSON_GetObjectItemCaseSensitive(json, "bos_token_id");
        cfg->bos_token_id = cJSON_IsNumber(bos) && bos->valuedouble >= 0 && bos->valuedouble < (1 << 30) &&
                                    bos->valuedouble == (int)bos->valuedouble ? (int)bos->valuedouble : -1;
        return rc ? rc : check_config(cfg, where);
    }
    return ps_fail(PS_EUSER, "%s: model_type \"%s\" is not supported (supported: gpt2, llama, gpt_neox)", where, type);
}

void model_attach(Model *m, const ModelConfig *cfg, void *weights) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->owns_weights = weights == NULL;
    m->weights = weights ? weights : xcalloc(model_weight_bytes(cfg), 1);
    model_point(m, m->weights);
    int half = cfg->rotary_dims / 2;
    m->rope_inv_freq = alloc_doubles((size_t)(half ? half : 1));
    /* inv_freq_j = theta^(-2j / rotary_dims), the rotate-half convention of GPT-NeoX and HF Llama. */
    for (int j = 0; j < half; j++) m->rope_inv_freq[j] = det_pow(cfg->rope_theta, -2.0 * j / cfg->rotary_dims);
}

void model_alloc(Model *m, const ModelConfig *cfg) { model_attach(m, cfg, NULL); }

size_t model_weight_bytes(const ModelConfig *cfg) {
    Model shape = {.cfg = *cfg};
    return model_point(&shape, NULL);
}

int model_bos(const Model *m) {
    int bos = m->tokenizer ? tokenizer_bos(m->tokenizer) : -1;
    return bos >= 0 ? bos : m->cfg.bos_token_id < m->cfg.vocab ? m->cfg.bos_token_id : -1;
}

/* The configuration and every parameter's value as float32, field by field in the order of
 * Params: a 16-bit model and the float32 model of its widened values have the same fingerprint
 * (and the same results, bit for bit). */
uint64_t model_fingerprint(const Model *m) {
    char *json = model_config_json(&m->cfg);
    uint64_t h = hash_bytes(HASH_INIT, json, strlen(json));
    free(json);
    size_t sizes[N_PARAM_TENSORS];
    param_sizes(&m->cfg, sizes);
    int C_max = m->cfg.d_model > m->cfg.d_mlp ? m->cfg.d_model : m->cfg.d_mlp;
    float *row = alloc_floats((size_t)(C_max > cfg_q_dim(&m->cfg) ? C_max : cfg_q_dim(&m->cfg)));
    for (int f = 0; f < N_PARAM_TENSORS; f++) {
        WeightRef w = model_param(m, f);
        if (!sizes[f]) continue;
        if (w.type == WEIGHTS_F32) {
            h = hash_bytes(h, w.p, sizes[f] * sizeof(float));
            continue;
        }
        /* 16 bits: row by row of each layer, widened, wherever the matrix is held */
        int layers = f == PARAM_WTE || f == PARAM_WPE || f == PARAM_UNEMBED ? 1 : m->cfg.n_layer;
        size_t per_layer = sizes[f] / (size_t)layers;
        int inputs = f == PARAM_WO ? cfg_q_dim(&m->cfg) : f == PARAM_W_OUT ? m->cfg.d_mlp : m->cfg.d_model;
        int rows = (int)(per_layer / (size_t)inputs);
        for (int l = 0; l < layers; l++) {
            MatrixView v = model_view(m, f, l);
            for (int o = 0; o < rows; o++) {
                for (int c = 0; c < inputs; c++) row[c] = view_value(v, o, c);
                h = hash_bytes(h, row, (size_t)inputs * sizeof(float));
            }
        }
    }
    free(row);
    return h;
}

void model_init_random(Model *m, const ModelConfig *cfg, uint64_t seed, float scale) {
    ModelConfig f32 = *cfg; /* drawn in float32 */
    f32.weight_type = WEIGHTS_F32;
    model_alloc(m, &f32);
    Rng rng;
    rng_seed(&rng, seed, 0, 0);
    for (size_t i = 0; i < m->n_weights; i++) m->weights[i] = (float)(scale * rng_normal(&rng));
    /* Norm gains start at one, as in every real checkpoint. */
    size_t L = (size_t)cfg->n_layer, d = (size_t)cfg->d_model;
    for (size_t i = 0; i < L * d; i++) m->w.ln1_w[i] = m->w.ln2_w[i] = 1.0f;
    for (size_t i = 0; i < d; i++) m->w.lnf_w[i] = 1.0f;
    model_pack(m);
    m->fingerprint = model_fingerprint(m);
    snprintf(m->dir, sizeof m->dir, "(random, seed %llu)", (unsigned long long)seed);
}

int model_read_config(const char *dir, ModelConfig *cfg) {
    char path[4096];
    if (path_join(path, sizeof path, dir, "config.json")) return PS_EUSER;
    cJSON *json;
    int rc = json_parse_file(path, &json);
    if (rc) return rc;
    rc = model_config_parse(json, path, cfg);
    cJSON_Delete(json);
    return rc;
}

static int64_t tensor_dim(const ModelConfig *c, TensorDim dim) {
    switch (dim) {
    case DIM_MODEL: return c->d_model;
    case DIM_Q: return cfg_q_dim(c);
    case DIM_KV: return cfg_kv_dim(c);
    case DIM_MLP: return c->d_mlp;
    case DIM_VOCAB: return c->vocab;
    case DIM_CONTEXT: return c->n_ctx;
    case DIM_3Q: return 3 * (int64_t)cfg_q_dim(c);
    default: return 1;
    }
}

/* dst[i] = src[j] for elements of es bytes (4: float32, 2: 16 bits). */
static inline void copy_element(char *dst, size_t i, const char *src, size_t j, size_t es) {
    if (es == 4) memcpy(dst + i * 4, src + j * 4, 4);
    else memcpy(dst + i * 2, src + j * 2, 2);
}

/* Puts one stored tensor (src: rows x cols, or a vector of rows, of es-byte elements) into its
 * fields' slices. */
static void place_tensor(const ModelConfig *c, const TensorSpec *t, const void *stored, size_t es, int64_t rows,
                         int64_t cols, void *const to[3]) {
    int vector = t->shape[1] == DIM_NONE;
    int64_t qd = cfg_q_dim(c), dh = c->d_head;
    const char *src = stored;
    char *const dst[3] = {to[0], to[1], to[2]};
    switch (t->layout) {
    case TENSOR_COPY: memcpy(dst[0], src, es * (size_t)(rows * cols)); break;
    case TENSOR_CONV1D: /* stored [in, out]: dst[o][i] = src[i][o] */
        for (int64_t o = 0; o < cols; o++)
            for (int64_t i = 0; i < rows; i++) copy_element(dst[0], (size_t)(o * rows + i), src, (size_t)(i * cols + o), es);
        break;
    case TENSOR_QKV_COLUMNS: /* a Conv1D [in, 3 qd] whose columns are q | k | v, or its bias [3 qd] */
        for (int part = 0; part < 3; part++)
            for (int64_t o = 0; o < qd; o++) {
                if (vector) copy_element(dst[part], (size_t)o, src, (size_t)(part * qd + o), es);
                else
                    for (int64_t i = 0; i < rows; i++)
                        copy_element(dst[part], (size_t)(o * rows + i), src, (size_t)(i * cols + part * qd + o), es);
            }
        break;
    case TENSOR_QKV_HEADS: /* rows (3h + part) d_head .. + d_head of a [3 qd, in] weight or [3 qd] bias */
        for (int64_t h = 0; h < c->n_head; h++)
            for (int part = 0; part < 3; part++)
                memcpy(dst[part] + (size_t)(h * dh * cols) * es, src + (size_t)((3 * h + part) * dh * cols) * es,
                       es * (size_t)(dh * cols));
        break;
    }
}

static const Architecture *architecture_of(const ModelConfig *c) {
    for (size_t i = 0; i < sizeof architectures / sizeof architectures[0]; i++)
        if (strcmp(c->model_type, architectures[i]->model_type) == 0) return architectures[i];
    return NULL;
}

/* st_check's failure, with where the expected shape came from. */
static int explain_mismatch(const Architecture *arch, const ModelConfig *c, const TensorSpec *t) {
    char line[1024], why[600];
    snprintf(line, sizeof line, "%s", ps_error());
    if (t->untied_only && strstr(line, "missing tensor"))
        snprintf(why, sizeof why, "config.json does not tie the unembedding to the embeddings (tie_word_embeddings), so it "
                                  "must be a tensor of its own");
    else if (t->shape[1] == DIM_NONE)
        snprintf(why, sizeof why, "[%s] from config.json", arch->dim_keys[t->shape[0]]);
    else
        snprintf(why, sizeof why, "[%s, %s] from config.json", arch->dim_keys[t->shape[0]], arch->dim_keys[t->shape[1]]);
    if (c->assumed[0]) return ps_fail(PS_EUSER, "%s: %s (it leaves out, so we assumed: %s)", line, why, c->assumed);
    return ps_fail(PS_EUSER, "%s: %s", line, why);
}

/* BF16 or F16 when every matrix tensor is stored in it, else F32 (a checkpoint that mixes them is
 * widened at load). */
static WeightType checkpoint_weight_type(const Architecture *arch, const ModelConfig *c, const StSet *st,
                                         const char *prefix) {
    int all_bf16 = 1, all_f16 = 1;
    for (int i = 0; i < arch->n_tensors; i++) {
        const TensorSpec *t = &arch->tensors[i];
        if ((t->untied_only && c->tied_unembed) || !param_is_matrix(t->fields[0])) continue;
        for (int l = 0; l < (t->per_layer ? c->n_layer : 1); l++) {
            char name[256];
            snprintf(name, sizeof name, t->name, prefix, l);
            const StFile *f;
            const StTensor *found = st_set_find(st, name, &f);
            all_bf16 = all_bf16 && found && strcmp(found->dtype, "BF16") == 0;
            all_f16 = all_f16 && found && strcmp(found->dtype, "F16") == 0;
        }
    }
    return all_bf16 ? WEIGHTS_BF16 : all_f16 ? WEIGHTS_F16 : WEIGHTS_F32;
}

int model_check_checkpoint(ModelConfig *c, const char *dir) {
    const Architecture *arch = architecture_of(c);
    StSet st;
    int rc = st_set_open(&st, dir);
    const char *prefix = !rc && arch->prefix ? arch->prefix(&st) : "";
    if (!rc) c->weight_type = checkpoint_weight_type(arch, c, &st, prefix);
    for (int i = 0; i < arch->n_tensors && !rc; i++) {
        const TensorSpec *t = &arch->tensors[i];
        if (t->untied_only && c->tied_unembed) continue;
        int ndim = t->shape[1] == DIM_NONE ? 1 : 2;
        int64_t shape[2] = {tensor_dim(c, t->shape[0]), tensor_dim(c, t->shape[1])};
        for (int l = 0; l < (t->per_layer ? c->n_layer : 1) && !rc; l++) {
            char name[256];
            snprintf(name, sizeof name, t->name, prefix, l);
            if (st_check(&st, name, ndim, shape)) rc = explain_mismatch(arch, c, t);
        }
    }
    st_set_close(&st);
    return rc;
}

/* Reads every tensor of the architecture's table into the parameters: as stored for a 16-bit
 * model's matrices, widened to float32 for everything else. */
static int read_tensors(const Architecture *arch, Model *m, const StSet *st) {
    const ModelConfig *c = &m->cfg;
    size_t sizes[N_PARAM_TENSORS];
    param_sizes(c, sizes);
    const char *prefix = arch->prefix ? arch->prefix(st) : "";
    size_t largest = 1;
    for (int i = 0; i < arch->n_tensors; i++) {
        const TensorSpec *t = &arch->tensors[i];
        size_t n = (size_t)(tensor_dim(c, t->shape[0]) * tensor_dim(c, t->shape[1]));
        if (n > largest) largest = n;
    }
    float *stored = alloc_floats(largest);
    uint16_t *staged = xmalloc(3 * largest * sizeof(uint16_t)); /* a 16-bit matrix's parts, as rows */
    int rc = PS_OK;
    for (int i = 0; i < arch->n_tensors && !rc; i++) {
        const TensorSpec *t = &arch->tensors[i];
        if (t->untied_only && c->tied_unembed) continue;
        int ndim = t->shape[1] == DIM_NONE ? 1 : 2;
        int64_t shape[2] = {tensor_dim(c, t->shape[0]), tensor_dim(c, t->shape[1])};
        WeightType type = model_param(m, t->fields[0]).type;
        size_t es = weight_type_size(type);
        int fused = t->layout == TENSOR_QKV_COLUMNS || t->layout == TENSOR_QKV_HEADS;
        for (int l = 0; l < (t->per_layer ? c->n_layer : 1) && !rc; l++) {
            char name[256];
            snprintf(name, sizeof name, t->name, prefix, l);
            if (type == WEIGHTS_F32) rc = st_read_f32(st, name, ndim, shape, stored);
            else rc = st_read_16(st, name, ndim, shape, type == WEIGHTS_BF16 ? "BF16" : "F16", (uint16_t *)stored);
            void *dst[3] = {NULL, NULL, NULL};
            for (int k = 0; k < (fused ? 3 : 1); k++) { /* layer l's slice of each field */
                int f = t->fields[k];
                size_t at = (size_t)l * (t->per_layer ? sizes[f] / (size_t)c->n_layer : 0);
                dst[k] = type == WEIGHTS_F32 ? (void *)((char *)model_param(m, f).p + at * es) : staged + k * largest;
            }
            if (rc) break;
            place_tensor(c, t, stored, es, shape[0], ndim == 2 ? shape[1] : 1, dst);
            for (int k = 0; k < (fused ? 3 : 1) && type != WEIGHTS_F32; k++)
                model_store_matrix(m, t->fields[k], t->per_layer ? l : 0, dst[k]);
        }
    }
    free(stored);
    free(staged);
    return rc;
}

int model_read_weights(Model *m, const char *dir) {
    const Architecture *arch = architecture_of(&m->cfg);
    StSet st;
    int rc = st_set_open(&st, dir);
    if (!rc) rc = read_tensors(arch, m, &st);
    st_set_close(&st);
    if (!rc) model_pack(m);
    return rc;
}

int model_read_tokenizer(Model *m, const char *dir) {
    char path[4096];
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    if (path_join(path, sizeof path, dir, "tokenizer.json")) return PS_EUSER;
    return file_exists(path) ? tokenizer_load(&m->tokenizer, path, m->cfg.vocab) : PS_OK;
}

int model_load_shape(Model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    int rc = model_read_config(dir, &m->cfg);
    if (!rc) rc = model_check_checkpoint(&m->cfg, dir);
    if (!rc) rc = model_read_tokenizer(m, dir);
    if (rc) model_free(m);
    return rc;
}

int model_load(Model *m, const char *dir) {
    memset(m, 0, sizeof *m);
    ModelConfig cfg;
    int rc = model_read_config(dir, &cfg);
    if (!rc) rc = model_check_checkpoint(&cfg, dir);
    if (rc) return rc;
    model_alloc(m, &cfg);
    rc = model_read_weights(m, dir);
    if (!rc) rc = model_read_tokenizer(m, dir);
    if (rc) {
        model_free(m);
        return rc;
    }
    m->fingerprint = model_fingerprint(m);
    return PS_OK;
}

void model_free(Model *m) {
    if (m->owns_weights) free(m->weights);
    free(m->rope_inv_freq);
    if (m->tokenizer) tokenizer_free(m->tokenizer);
    memset(m, 0, sizeof *m);
}

char *model_config_json(const ModelConfig *c) {
    static const char *norm_names[] = {"layernorm", "rmsnorm"};
    static const char *act_names[] = {"gelu_tanh", "gelu_erf", "silu"};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddNumberToObject(o, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(o, "d_model", c->d_model);
    cJSON_AddNumberToObject(o, "n_head", c->n_head);
    cJSON_AddNumberToObject(o, "n_kv_head", c->n_kv_head);
    cJSON_AddNumberToObject(o, "d_head", c->d_head);
    cJSON_AddNumberToObject(o, "d_mlp", c->d_mlp);
    cJSON_AddNumberToObject(o, "vocab", c->vocab);
    cJSON_AddNumberToObject(o, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(o, "norm_eps", c->norm_eps);
    cJSON_AddStringToObject(o, "norm", norm_names[c->norm]);
    cJSON_AddStringToObject(o, "act", act_names[c->act]);
    cJSON_AddBoolToObject(o, "gated_mlp", c->gated_mlp);
    cJSON_AddBoolToObject(o, "learned_pos", c->learned_pos);
    cJSON_AddNumberToObject(o, "rotary_dims", c->rotary_dims);
    cJSON_AddNumberToObject(o, "rope_theta", c->rope_theta);
    cJSON_AddBoolToObject(o, "tied_unembed", c->tied_unembed);
    cJSON_AddBoolToObject(o, "linear_bias", c->linear_bias);
    /* only when set, so the fingerprints of sequential models (and their results files) stay */
    if (c->parallel_residual) cJSON_AddBoolToObject(o, "parallel_residual", 1);
    return json_take_text(o);
}
