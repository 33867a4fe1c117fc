/* Llama (Hugging Face "llama"): RMSNorm, rotary embedding in the rotate-half layout, grouped
 * query attention, SwiGLU MLP, no biases, tied or separate lm_head. Weights are already
 * [out, in]. */
#include <stdio.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static int llama_parse_config(const cJSON *j, const char *where, ModelConfig *c) {
    long d = 0, dm = 0, L = 0, H = 0, Hkv = -1, V = 0, n_ctx = 2048, d_head = -1;
    double eps = 1e-6, theta = 10000.0;
    const char *act = "silu";
    int tied = 0, attn_bias = 0, mlp_bias = 0;
    int rc = 0;
    if (!rc) rc = json_get_int(j, "hidden_size", where, 1, &d);
    if (!rc) rc = json_get_int(j, "intermediate_size", where, 1, &dm);
    if (!rc) rc = json_get_int(j, "num_hidden_layers", where, 1, &L);
    if (!rc) rc = json_get_int(j, "num_attention_heads", where, 1, &H);
    if (!rc) rc = json_get_int(j, "num_key_value_heads", where, 0, &Hkv);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, &V);
    if (!rc) rc = json_get_int(j, "max_position_embeddings", where, 0, &n_ctx);
    if (!rc) rc = json_get_int(j, "head_dim", where, 0, &d_head);
    if (!rc) rc = json_get_number(j, "rms_norm_eps", where, 0, &eps);
    if (!rc) rc = json_get_number(j, "rope_theta", where, 0, &theta);
    if (!rc) rc = json_get_string(j, "hidden_act", where, 0, &act);
    if (!rc) rc = json_get_bool(j, "tie_word_embeddings", where, 0, &tied);
    if (!rc) rc = json_get_bool(j, "attention_bias", where, 0, &attn_bias);
    if (!rc) rc = json_get_bool(j, "mlp_bias", where, 0, &mlp_bias);
    if (rc) return rc;
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (scaling && !cJSON_IsNull(scaling))
        return ps_fail(PS_EUSER, "%s: rope_scaling is not supported (only plain rotary embedding)", where);
    if (attn_bias || mlp_bias)
        return ps_fail(PS_EUSER, "%s: attention_bias/mlp_bias are not supported for llama", where);
    if (strcmp(act, "silu") != 0)
        return ps_fail(PS_EUSER, "%s: hidden_act \"%s\" is not supported (silu)", where, act);
    if (!(theta > 0)) return ps_fail(PS_EUSER, "%s: rope_theta must be positive", where);
    c->n_layer = (int)L;
    c->d_model = (int)d;
    c->n_head = (int)H;
    c->n_kv_head = Hkv > 0 ? (int)Hkv : (int)H;
    if (d_head <= 0) {
        if (H <= 0 || d % H) return ps_fail(PS_EUSER, "%s: hidden_size %ld is not a multiple of %ld heads", where, d, H);
        d_head = d / H;
    }
    c->d_head = (int)d_head;
    c->d_mlp = (int)dm;
    c->vocab = (int)V;
    c->n_ctx = (int)n_ctx;
    c->norm_eps = (float)eps;
    c->norm = NORM_RMS;
    c->act = ACT_SILU;
    c->gated_mlp = 1;
    c->rotary_dims = (int)d_head;
    c->rope_theta = theta;
    c->tied_unembed = tied;
    return PS_OK;
}

static int llama_load_weights(const ModelConfig *c, const StSet *st, Params *p) {
    int64_t d = c->d_model, dm = c->d_mlp, qd = cfg_q_dim(c), kvd = cfg_kv_dim(c);
    char name[256];
    int rc = 0;
#define READ(dst, ndim, ...)                                                             \
    do {                                                                               \
        if (!rc) rc = st_read_f32(st, name, ndim, (const int64_t[]){__VA_ARGS__}, dst); \
    } while (0)
    snprintf(name, sizeof name, "model.embed_tokens.weight");
    READ(p->wte, 2, c->vocab, d);
    for (int l = 0; l < c->n_layer && !rc; l++) {
        size_t L = (size_t)l;
        snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        READ(p->ln1_w + L * d, 1, d);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj.weight", l);
        READ(p->wq + L * qd * d, 2, qd, d);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.k_proj.weight", l);
        READ(p->wk + L * kvd * d, 2, kvd, d);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.v_proj.weight", l);
        READ(p->wv + L * kvd * d, 2, kvd, d);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.o_proj.weight", l);
        READ(p->wo + L * d * qd, 2, d, qd);
        snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        READ(p->ln2_w + L * d, 1, d);
        snprintf(name, sizeof name, "model.layers.%d.mlp.gate_proj.weight", l);
        READ(p->w_gate + L * dm * d, 2, dm, d);
        snprintf(name, sizeof name, "model.layers.%d.mlp.up_proj.weight", l);
        READ(p->w_in + L * dm * d, 2, dm, d);
        snprintf(name, sizeof name, "model.layers.%d.mlp.down_proj.weight", l);
        READ(p->w_out + L * d * dm, 2, d, dm);
    }
    snprintf(name, sizeof name, "model.norm.weight");
    READ(p->lnf_w, 1, d);
    if (!c->tied_unembed) {
        snprintf(name, sizeof name, "lm_head.weight");
        READ(p->unembed, 2, c->vocab, d);
    }
#undef READ
    return rc;
}

const Architecture arch_llama = {"llama", llama_parse_config, llama_load_weights};
