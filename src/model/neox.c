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
    if (!rc) rc = json_get_int(j, "hidden_size", where, 1, 1, JSON_SIZE_MAX, &d);
    if (!rc) rc = json_get_int(j, "intermediate_size", where, 1, 1, JSON_SIZE_MAX, &dm);
    if (!rc) rc = json_get_int(j, "num_hidden_layers", where, 1, 1, JSON_SIZE_MAX, &L);
    if (!rc) rc = json_get_int(j, "num_attention_heads", where, 1, 1, JSON_SIZE_MAX, &H);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, 1, JSON_SIZE_MAX, &V);
    if (!rc) rc = json_get_int(j, "max_position_embeddings", where, 0, 1, JSON_SIZE_MAX, &n_ctx);
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
    config_assume(c, j, "max_position_embeddings", "%ld", n_ctx);
    config_assume(c, j, "layer_norm_eps", "%g", eps);
    if (!cJSON_GetObjectItemCaseSensitive(j, "rope_theta")) config_assume(c, j, "rotary_emb_base", "%g", theta);
    if (!cJSON_GetObjectItemCaseSensitive(j, "partial_rotary_factor")) config_assume(c, j, "rotary_pct", "%g", rotary_pct);
    config_assume(c, j, "hidden_act", "%s", act);
    config_assume(c, j, "use_parallel_residual", "%s", parallel ? "true" : "false");
    config_assume(c, j, "tie_word_embeddings", "%s", tied ? "true" : "false");
    return PS_OK;
}

/* query_key_value's rows run head by head ([head][q, k, v][d_head]). */
static const TensorSpec neox_tensors[] = {
    {"%sgpt_neox.embed_in.weight", 0, TENSOR_COPY, {PARAM_WTE}, {DIM_VOCAB, DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.input_layernorm.weight", 1, TENSOR_COPY, {PARAM_LN1_W}, {DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.input_layernorm.bias", 1, TENSOR_COPY, {PARAM_LN1_B}, {DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.attention.query_key_value.weight", 1, TENSOR_QKV_HEADS, {PARAM_WQ, PARAM_WK, PARAM_WV},
     {DIM_3Q, DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.attention.query_key_value.bias", 1, TENSOR_QKV_HEADS, {PARAM_BQ, PARAM_BK, PARAM_BV},
     {DIM_3Q}, 0},
    {"%sgpt_neox.layers.%d.attention.dense.weight", 1, TENSOR_COPY, {PARAM_WO}, {DIM_MODEL, DIM_Q}, 0},
    {"%sgpt_neox.layers.%d.attention.dense.bias", 1, TENSOR_COPY, {PARAM_BO}, {DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.post_attention_layernorm.weight", 1, TENSOR_COPY, {PARAM_LN2_W}, {DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.post_attention_layernorm.bias", 1, TENSOR_COPY, {PARAM_LN2_B}, {DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.mlp.dense_h_to_4h.weight", 1, TENSOR_COPY, {PARAM_W_IN}, {DIM_MLP, DIM_MODEL}, 0},
    {"%sgpt_neox.layers.%d.mlp.dense_h_to_4h.bias", 1, TENSOR_COPY, {PARAM_B_IN}, {DIM_MLP}, 0},
    {"%sgpt_neox.layers.%d.mlp.dense_4h_to_h.weight", 1, TENSOR_COPY, {PARAM_W_OUT}, {DIM_MODEL, DIM_MLP}, 0},
    {"%sgpt_neox.layers.%d.mlp.dense_4h_to_h.bias", 1, TENSOR_COPY, {PARAM_B_OUT}, {DIM_MODEL}, 0},
    {"%sgpt_neox.final_layer_norm.weight", 0, TENSOR_COPY, {PARAM_LNF_W}, {DIM_MODEL}, 0},
    {"%sgpt_neox.final_layer_norm.bias", 0, TENSOR_COPY, {PARAM_LNF_B}, {DIM_MODEL}, 0},
    {"embed_out.weight", 0, TENSOR_COPY, {PARAM_UNEMBED}, {DIM_VOCAB, DIM_MODEL}, 1},
};

const Architecture arch_gpt_neox = {
    "gpt_neox", neox_parse_config, neox_tensors, sizeof neox_tensors / sizeof neox_tensors[0],
    {[DIM_MODEL] = "hidden_size", [DIM_Q] = "hidden_size", [DIM_KV] = "hidden_size", [DIM_MLP] = "intermediate_size",
     [DIM_VOCAB] = "vocab_size", [DIM_CONTEXT] = "max_position_embeddings", [DIM_3Q] = "3 hidden_size"},
    NULL};
