/* GPT-NeoX / Pythia (Hugging Face "gpt_neox"): LayerNorm, a fused query_key_value projection
 * whose rows are laid out head by head ([head][q, k, v][d_head]), rotary embedding on the
 * leading rotary_pct of each head (rotate-half), exact-erf GELU, biases everywhere, a separate
 * unembedding (embed_out), and usually the parallel residual: the MLP reads the block input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static int neox_parse_config(const cJSON *j, const char *where, ModelConfig *c) {
    long d = 0, dm = 0, L = 0, H = 0, V = 0, n_ctx = 2048;
    double eps = 1e-5, theta = 10000.0, rotary_pct = 0.25;
    const char *act = "gelu";
    int parallel = 1, tied = 0, attn_bias = 1;
    int rc = 0;
    if (!rc) rc = json_get_int(j, "hidden_size", where, 1, &d);
    if (!rc) rc = json_get_int(j, "intermediate_size", where, 1, &dm);
    if (!rc) rc = json_get_int(j, "num_hidden_layers", where, 1, &L);
    if (!rc) rc = json_get_int(j, "num_attention_heads", where, 1, &H);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, &V);
    if (!rc) rc = json_get_int(j, "max_position_embeddings", where, 0, &n_ctx);
    if (!rc) rc = json_get_number(j, "layer_norm_eps", where, 0, &eps);
    /* the older and the newer names of the rotary settings */
    if (!rc) rc = json_get_number(j, "rotary_emb_base", where, 0, &theta);
    if (!rc) rc = json_get_number(j, "rope_theta", where, 0, &theta);
    if (!rc) rc = json_get_number(j, "rotary_pct", where, 0, &rotary_pct);
    if (!rc) rc = json_get_number(j, "partial_rotary_factor", where, 0, &rotary_pct);
    if (!rc) rc = json_get_string(j, "hidden_act", where, 0, &act);
    if (!rc) rc = json_get_bool(j, "use_parallel_residual", where, 0, &parallel);
    if (!rc) rc = json_get_bool(j, "tie_word_embeddings", where, 0, &tied);
    if (!rc) rc = json_get_bool(j, "attention_bias", where, 0, &attn_bias);
    if (rc) return rc;
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling))
        return ps_fail(PS_EUSER, "%s: rope_scaling is not supported (only plain rotary embedding)", where);
    if (!attn_bias) return ps_fail(PS_EUSER, "%s: attention_bias false is not supported for gpt_neox", where);
    if (strcmp(act, "gelu") == 0)
        c->act = ACT_GELU_ERF;
    else if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_fast") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0)
        c->act = ACT_GELU_TANH;
    else
        return ps_fail(PS_EUSER, "%s: hidden_act \"%s\" is not supported (gelu or gelu_new)", where, act);
    if (!(theta > 0)) return ps_fail(PS_EUSER, "%s: rotary_emb_base must be positive", where);
    if (!(rotary_pct >= 0 && rotary_pct <= 1)) return ps_fail(PS_EUSER, "%s: rotary_pct must be in [0, 1]", where);
    if (H <= 0 || d % H) return ps_fail(PS_EUSER, "%s: hidden_size %ld is not a multiple of %ld heads", where, d, H);
    c->n_layer = (int)L;
    c->d_model = (int)d;
    c->n_head = c->n_kv_head = (int)H;
    c->d_head = (int)(d / H);
    c->d_mlp = (int)dm;
    c->vocab = (int)V;
    c->n_ctx = (int)n_ctx;
    c->norm_eps = (float)eps;
    c->norm = NORM_LAYER;
    c->rotary_dims = (int)(c->d_head * rotary_pct); /* int() as Hugging Face computes it */
    c->rope_theta = theta;
    c->tied_unembed = tied;
    c->linear_bias = 1;
    c->parallel_residual = parallel;
    return PS_OK;
}

static int neox_load_weights(const ModelConfig *c, const StSet *st, Params *p) {
    int64_t d = c->d_model, dm = c->d_mlp, dh = c->d_head, H = c->n_head;
    char name[256];
    float *qkv = alloc_floats((size_t)(3 * d * d));
    int rc = 0;
#define READ(dst, ndim, ...)                                                             \
    do {                                                                               \
        if (!rc) rc = st_read_f32(st, name, ndim, (const int64_t[]){__VA_ARGS__}, dst); \
    } while (0)
    snprintf(name, sizeof name, "gpt_neox.embed_in.weight");
    READ(p->wte, 2, c->vocab, d);
    for (int l = 0; l < c->n_layer && !rc; l++) {
        size_t ld = (size_t)l * d;
        const char *pre = "gpt_neox.layers";
        snprintf(name, sizeof name, "%s.%d.input_layernorm.weight", pre, l);
        READ(p->ln1_w + ld, 1, d);
        snprintf(name, sizeof name, "%s.%d.input_layernorm.bias", pre, l);
        READ(p->ln1_b + ld, 1, d);
        /* rows of query_key_value: head h's q, then its k, then its v, d_head rows each */
        snprintf(name, sizeof name, "%s.%d.attention.query_key_value.weight", pre, l);
        READ(qkv, 2, 3 * d, d);
        for (int64_t h = 0; h < H && !rc; h++) {
            float *dst[3] = {p->wq, p->wk, p->wv};
            for (int part = 0; part < 3; part++)
                memcpy(dst[part] + (ld + (size_t)(h * dh)) * d, qkv + (size_t)((3 * h + part) * dh) * d,
                       sizeof(float) * (size_t)(dh * d));
        }
        snprintf(name, sizeof name, "%s.%d.attention.query_key_value.bias", pre, l);
        READ(qkv, 1, 3 * d);
        for (int64_t h = 0; h < H && !rc; h++) {
            float *dst[3] = {p->bq, p->bk, p->bv};
            for (int part = 0; part < 3; part++)
                memcpy(dst[part] + ld + (size_t)(h * dh), qkv + (size_t)((3 * h + part) * dh), sizeof(float) * (size_t)dh);
        }
        snprintf(name, sizeof name, "%s.%d.attention.dense.weight", pre, l);
        READ(p->wo + ld * d, 2, d, d);
        snprintf(name, sizeof name, "%s.%d.attention.dense.bias", pre, l);
        READ(p->bo + ld, 1, d);
        snprintf(name, sizeof name, "%s.%d.post_attention_layernorm.weight", pre, l);
        READ(p->ln2_w + ld, 1, d);
        snprintf(name, sizeof name, "%s.%d.post_attention_layernorm.bias", pre, l);
        READ(p->ln2_b + ld, 1, d);
        snprintf(name, sizeof name, "%s.%d.mlp.dense_h_to_4h.weight", pre, l);
        READ(p->w_in + (size_t)l * dm * d, 2, dm, d);
        snprintf(name, sizeof name, "%s.%d.mlp.dense_h_to_4h.bias", pre, l);
        READ(p->b_in + (size_t)l * dm, 1, dm);
        snprintf(name, sizeof name, "%s.%d.mlp.dense_4h_to_h.weight", pre, l);
        READ(p->w_out + (size_t)l * d * dm, 2, d, dm);
        snprintf(name, sizeof name, "%s.%d.mlp.dense_4h_to_h.bias", pre, l);
        READ(p->b_out + ld, 1, d);
    }
    snprintf(name, sizeof name, "gpt_neox.final_layer_norm.weight");
    READ(p->lnf_w, 1, d);
    snprintf(name, sizeof name, "gpt_neox.final_layer_norm.bias");
    READ(p->lnf_b, 1, d);
    if (!c->tied_unembed) {
        snprintf(name, sizeof name, "embed_out.weight");
        READ(p->unembed, 2, c->vocab, d);
    }
#undef READ
    free(qkv);
    return rc;
}

const Architecture arch_gpt_neox = {"gpt_neox", neox_parse_config, neox_load_weights};
