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
    if (!rc) rc = json_get_int(j, "hidden_size", where, 1, 1, JSON_SIZE_MAX, &d);
    if (!rc) rc = json_get_int(j, "intermediate_size", where, 1, 1, JSON_SIZE_MAX, &dm);
    if (!rc) rc = json_get_int(j, "num_hidden_layers", where, 1, 1, JSON_SIZE_MAX, &L);
    if (!rc) rc = json_get_int(j, "num_attention_heads", where, 1, 1, JSON_SIZE_MAX, &H);
    if (!rc) rc = json_get_int(j, "num_key_value_heads", where, 0, 1, JSON_SIZE_MAX, &Hkv);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, 1, JSON_SIZE_MAX, &V);
    if (!rc) rc = json_get_int(j, "max_position_embeddings", where, 0, 1, JSON_SIZE_MAX, &n_ctx);
    if (!rc) rc = json_get_int(j, "head_dim", where, 0, 1, JSON_SIZE_MAX, &d_head);
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
    config_assume(c, j, "num_key_value_heads", "num_attention_heads = %d", c->n_kv_head);
    config_assume(c, j, "head_dim", "hidden_size / num_attention_heads = %d", c->d_head);
    config_assume(c, j, "max_position_embeddings", "%ld", n_ctx);
    config_assume(c, j, "rms_norm_eps", "%g", eps);
    config_assume(c, j, "rope_theta", "%g", theta);
    config_assume(c, j, "tie_word_embeddings", "%s", tied ? "true" : "false");
    return PS_OK;
}

static const TensorSpec llama_tensors[] = {
    {"%smodel.embed_tokens.weight", 0, TENSOR_COPY, {PARAM_WTE}, {DIM_VOCAB, DIM_MODEL}, 0},
    {"%smodel.layers.%d.input_layernorm.weight", 1, TENSOR_COPY, {PARAM_LN1_W}, {DIM_MODEL}, 0},
    {"%smodel.layers.%d.self_attn.q_proj.weight", 1, TENSOR_COPY, {PARAM_WQ}, {DIM_Q, DIM_MODEL}, 0},
    {"%smodel.layers.%d.self_attn.k_proj.weight", 1, TENSOR_COPY, {PARAM_WK}, {DIM_KV, DIM_MODEL}, 0},
    {"%smodel.layers.%d.self_attn.v_proj.weight", 1, TENSOR_COPY, {PARAM_WV}, {DIM_KV, DIM_MODEL}, 0},
    {"%smodel.layers.%d.self_attn.o_proj.weight", 1, TENSOR_COPY, {PARAM_WO}, {DIM_MODEL, DIM_Q}, 0},
    {"%smodel.layers.%d.post_attention_layernorm.weight", 1, TENSOR_COPY, {PARAM_LN2_W}, {DIM_MODEL}, 0},
    {"%smodel.layers.%d.mlp.gate_proj.weight", 1, TENSOR_COPY, {PARAM_W_GATE}, {DIM_MLP, DIM_MODEL}, 0},
    {"%smodel.layers.%d.mlp.up_proj.weight", 1, TENSOR_COPY, {PARAM_W_IN}, {DIM_MLP, DIM_MODEL}, 0},
    {"%smodel.layers.%d.mlp.down_proj.weight", 1, TENSOR_COPY, {PARAM_W_OUT}, {DIM_MODEL, DIM_MLP}, 0},
    {"%smodel.norm.weight", 0, TENSOR_COPY, {PARAM_LNF_W}, {DIM_MODEL}, 0},
    {"lm_head.weight", 0, TENSOR_COPY, {PARAM_UNEMBED}, {DIM_VOCAB, DIM_MODEL}, 1},
};

const Architecture arch_llama = {
    "llama", llama_parse_config, llama_tensors, sizeof llama_tensors / sizeof llama_tensors[0],
    {[DIM_MODEL] = "hidden_size", [DIM_Q] = "num_attention_heads x head_dim", [DIM_KV] = "num_key_value_heads x head_dim",
     [DIM_MLP] = "intermediate_size", [DIM_VOCAB] = "vocab_size", [DIM_CONTEXT] = "max_position_embeddings",
     [DIM_3Q] = "3 hidden_size"},
    NULL};
