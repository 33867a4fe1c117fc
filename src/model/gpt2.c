/* GPT-2 (Hugging Face "gpt2"): learned positions, LayerNorm, fused c_attn, GELU, tied
 * unembedding: its config keys and its tensor table (Conv1D weights are stored [in, out] and
 * transposed to [out, in] by the loader, model.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

static int gpt2_parse_config(const cJSON *j, const char *where, ModelConfig *c) {
    long n_embd = 0, n_layer = 0, n_head = 0, vocab = 0, n_pos = 1024, n_inner = 0;
    double eps = 1e-5;
    const char *act = "gelu_new";
    int tied = 1, scale_attn = 1, inverse_layer_scale = 0;
    int rc = 0;
    if (!rc) rc = json_get_int(j, "n_embd", where, 1, 1, JSON_SIZE_MAX, &n_embd);
    if (!rc) rc = json_get_int(j, "n_layer", where, 1, 1, JSON_SIZE_MAX, &n_layer);
    if (!rc) rc = json_get_int(j, "n_head", where, 1, 1, JSON_SIZE_MAX, &n_head);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, 1, JSON_SIZE_MAX, &vocab);
    if (!rc) rc = json_get_int(j, "n_ctx", where, 0, 1, JSON_SIZE_MAX, &n_pos);
    if (!rc) rc = json_get_int(j, "n_positions", where, 0, 1, JSON_SIZE_MAX, &n_pos);
    if (!rc) rc = json_get_int(j, "n_inner", where, 0, 0, JSON_SIZE_MAX, &n_inner);
    if (!rc) rc = json_get_number(j, "layer_norm_epsilon", where, 0, &eps);
    if (!rc) rc = json_get_string(j, "activation_function", where, 0, &act);
    if (!rc) rc = json_get_bool(j, "tie_word_embeddings", where, 0, &tied);
    if (!rc) rc = json_get_bool(j, "scale_attn_weights", where, 0, &scale_attn);
    if (!rc) rc = json_get_bool(j, "scale_attn_by_inverse_layer_idx", where, 0, &inverse_layer_scale);
    if (rc) return rc;
    if (!scale_attn || inverse_layer_scale)
        return ps_fail(PS_EUSER, "%s: only the standard 1/sqrt(head size) attention scale is supported", where);
    if (strcmp(act, "gelu_new") == 0 || strcmp(act, "gelu_pytorch_tanh") == 0 || strcmp(act, "gelu_fast") == 0)
        c->act = ACT_GELU_TANH;
    else if (strcmp(act, "gelu") == 0)
        c->act = ACT_GELU_ERF;
    else
        return ps_fail(PS_EUSER, "%s: activation_function \"%s\" is not supported (gelu_new or gelu)", where, act);
    c->n_layer = (int)n_layer;
    c->d_model = (int)n_embd;
    c->n_head = c->n_kv_head = (int)n_head;
    c->d_head = n_head > 0 ? (int)(n_embd / n_head) : 0;
    if (n_head > 0 && n_embd % n_head)
        return ps_fail(PS_EUSER, "%s: n_embd %ld is not a multiple of n_head %ld", where, n_embd, n_head);
    long d_mlp = n_inner > 0 ? n_inner : 4 * n_embd; /* in long: 4 n_embd may not fit an int */
    if (d_mlp > JSON_SIZE_MAX) return ps_fail(PS_EUSER, "%s: an MLP of %ld is more than any model has", where, d_mlp);
    c->d_mlp = (int)d_mlp;
    c->vocab = (int)vocab;
    c->n_ctx = (int)n_pos;
    c->norm_eps = (float)eps;
    c->norm = NORM_LAYER;
    c->learned_pos = 1;
    c->tied_unembed = tied;
    c->linear_bias = 1;
    if (!cJSON_GetObjectItemCaseSensitive(j, "n_ctx")) config_assume(c, j, "n_positions", "%ld", n_pos);
    config_assume(c, j, "n_inner", "4 n_embd = %ld", d_mlp);
    config_assume(c, j, "layer_norm_epsilon", "%g", eps);
    config_assume(c, j, "activation_function", "%s", act);
    config_assume(c, j, "tie_word_embeddings", "%s", tied ? "true" : "false");
    return PS_OK;
}

/* Hub files have bare names; GPT2LMHeadModel.save_pretrained() prefixes "transformer.". */
static const char *gpt2_prefix(const StSet *st) {
    const StFile *f;
    return st_set_find(st, "wte.weight", &f) ? "" : "transformer.";
}

/* Conv1D weights are stored [in, out]; c_attn holds q, k and v side by side. */
static const TensorSpec gpt2_tensors[] = {
    {"%swte.weight", 0, TENSOR_COPY, {PARAM_WTE}, {DIM_VOCAB, DIM_MODEL}, 0},
    {"%swpe.weight", 0, TENSOR_COPY, {PARAM_WPE}, {DIM_CONTEXT, DIM_MODEL}, 0},
    {"%sh.%d.ln_1.weight", 1, TENSOR_COPY, {PARAM_LN1_W}, {DIM_MODEL}, 0},
    {"%sh.%d.ln_1.bias", 1, TENSOR_COPY, {PARAM_LN1_B}, {DIM_MODEL}, 0},
    {"%sh.%d.attn.c_attn.weight", 1, TENSOR_QKV_COLUMNS, {PARAM_WQ, PARAM_WK, PARAM_WV}, {DIM_MODEL, DIM_3Q}, 0},
    {"%sh.%d.attn.c_attn.bias", 1, TENSOR_QKV_COLUMNS, {PARAM_BQ, PARAM_BK, PARAM_BV}, {DIM_3Q}, 0},
    {"%sh.%d.attn.c_proj.weight", 1, TENSOR_CONV1D, {PARAM_WO}, {DIM_Q, DIM_MODEL}, 0},
    {"%sh.%d.attn.c_proj.bias", 1, TENSOR_COPY, {PARAM_BO}, {DIM_MODEL}, 0},
    {"%sh.%d.ln_2.weight", 1, TENSOR_COPY, {PARAM_LN2_W}, {DIM_MODEL}, 0},
    {"%sh.%d.ln_2.bias", 1, TENSOR_COPY, {PARAM_LN2_B}, {DIM_MODEL}, 0},
    {"%sh.%d.mlp.c_fc.weight", 1, TENSOR_CONV1D, {PARAM_W_IN}, {DIM_MODEL, DIM_MLP}, 0},
    {"%sh.%d.mlp.c_fc.bias", 1, TENSOR_COPY, {PARAM_B_IN}, {DIM_MLP}, 0},
    {"%sh.%d.mlp.c_proj.weight", 1, TENSOR_CONV1D, {PARAM_W_OUT}, {DIM_MLP, DIM_MODEL}, 0},
    {"%sh.%d.mlp.c_proj.bias", 1, TENSOR_COPY, {PARAM_B_OUT}, {DIM_MODEL}, 0},
    {"%sln_f.weight", 0, TENSOR_COPY, {PARAM_LNF_W}, {DIM_MODEL}, 0},
    {"%sln_f.bias", 0, TENSOR_COPY, {PARAM_LNF_B}, {DIM_MODEL}, 0},
    {"lm_head.weight", 0, TENSOR_COPY, {PARAM_UNEMBED}, {DIM_VOCAB, DIM_MODEL}, 1},
};

const Architecture arch_gpt2 = {
    "gpt2", gpt2_parse_config, gpt2_tensors, sizeof gpt2_tensors / sizeof gpt2_tensors[0],
    {[DIM_MODEL] = "n_embd", [DIM_Q] = "n_embd", [DIM_KV] = "n_embd", [DIM_MLP] = "n_inner (default 4 n_embd)",
     [DIM_VOCAB] = "vocab_size", [DIM_CONTEXT] = "n_positions", [DIM_3Q] = "3 n_embd"},
    gpt2_prefix};
