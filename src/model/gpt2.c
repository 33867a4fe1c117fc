/* GPT-2 (Hugging Face "gpt2"): learned positions, LayerNorm, fused c_attn, GELU, tied
 * unembedding. Its Conv1D weights are stored [in, out]; we transpose them to [out, in]. */
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
    if (!rc) rc = json_get_int(j, "n_embd", where, 1, &n_embd);
    if (!rc) rc = json_get_int(j, "n_layer", where, 1, &n_layer);
    if (!rc) rc = json_get_int(j, "n_head", where, 1, &n_head);
    if (!rc) rc = json_get_int(j, "vocab_size", where, 1, &vocab);
    if (!rc) rc = json_get_int(j, "n_ctx", where, 0, &n_pos);
    if (!rc) rc = json_get_int(j, "n_positions", where, 0, &n_pos);
    if (!rc) rc = json_get_int(j, "n_inner", where, 0, &n_inner);
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
    c->d_mlp = n_inner > 0 ? (int)n_inner : 4 * (int)n_embd;
    c->vocab = (int)vocab;
    c->n_ctx = (int)n_pos;
    c->norm_eps = (float)eps;
    c->norm = NORM_LAYER;
    c->learned_pos = 1;
    c->tied_unembed = tied;
    c->linear_bias = 1;
    return PS_OK;
}

/* dst[o][i] = src[i][col0 + o] for a Conv1D weight src [n_in, src_cols]. */
static void conv1d_to_linear(float *dst, const float *src, int n_in, int src_cols, int col0, int n_out) {
    for (int o = 0; o < n_out; o++)
        for (int i = 0; i < n_in; i++) dst[(size_t)o * n_in + i] = src[(size_t)i * src_cols + col0 + o];
}

static int gpt2_load_weights(const ModelConfig *c, const StSet *st, Params *p) {
    const StFile *f;
    /* Hub files have bare names; GPT2LMHeadModel.save_pretrained() prefixes "transformer.". */
    const char *pre = st_set_find(st, "wte.weight", &f) ? "" : "transformer.";
    int64_t d = c->d_model, dm = c->d_mlp;
    char name[256];
    float *tmp = alloc_floats((size_t)(d * (3 * d > dm ? 3 * d : dm)));
    int rc = 0;
#define READ(dst, ndim, ...)                                                             \
    do {                                                                               \
        if (!rc) rc = st_read_f32(st, name, ndim, (const int64_t[]){__VA_ARGS__}, dst); \
    } while (0)
    snprintf(name, sizeof name, "%swte.weight", pre);
    READ(p->wte, 2, c->vocab, d);
    snprintf(name, sizeof name, "%swpe.weight", pre);
    READ(p->wpe, 2, c->n_ctx, d);
    for (int l = 0; l < c->n_layer && !rc; l++) {
        size_t ld = (size_t)l * d;
        snprintf(name, sizeof name, "%sh.%d.ln_1.weight", pre, l);
        READ(p->ln1_w + ld, 1, d);
        snprintf(name, sizeof name, "%sh.%d.ln_1.bias", pre, l);
        READ(p->ln1_b + ld, 1, d);
        snprintf(name, sizeof name, "%sh.%d.attn.c_attn.weight", pre, l);
        READ(tmp, 2, d, 3 * d);
        if (!rc) {
            conv1d_to_linear(p->wq + ld * d, tmp, (int)d, (int)(3 * d), 0, (int)d);
            conv1d_to_linear(p->wk + ld * d, tmp, (int)d, (int)(3 * d), (int)d, (int)d);
            conv1d_to_linear(p->wv + ld * d, tmp, (int)d, (int)(3 * d), (int)(2 * d), (int)d);
        }
        snprintf(name, sizeof name, "%sh.%d.attn.c_attn.bias", pre, l);
        READ(tmp, 1, 3 * d);
        if (!rc) {
            memcpy(p->bq + ld, tmp, (size_t)d * sizeof(float));
            memcpy(p->bk + ld, tmp + d, (size_t)d * sizeof(float));
            memcpy(p->bv + ld, tmp + 2 * d, (size_t)d * sizeof(float));
        }
        snprintf(name, sizeof name, "%sh.%d.attn.c_proj.weight", pre, l);
        READ(tmp, 2, d, d);
        if (!rc) conv1d_to_linear(p->wo + ld * d, tmp, (int)d, (int)d, 0, (int)d);
        snprintf(name, sizeof name, "%sh.%d.attn.c_proj.bias", pre, l);
        READ(p->bo + ld, 1, d);
        snprintf(name, sizeof name, "%sh.%d.ln_2.weight", pre, l);
        READ(p->ln2_w + ld, 1, d);
        snprintf(name, sizeof name, "%sh.%d.ln_2.bias", pre, l);
        READ(p->ln2_b + ld, 1, d);
        snprintf(name, sizeof name, "%sh.%d.mlp.c_fc.weight", pre, l);
        READ(tmp, 2, d, dm);
        if (!rc) conv1d_to_linear(p->w_in + (size_t)l * dm * d, tmp, (int)d, (int)dm, 0, (int)dm);
        snprintf(name, sizeof name, "%sh.%d.mlp.c_fc.bias", pre, l);
        READ(p->b_in + (size_t)l * dm, 1, dm);
        snprintf(name, sizeof name, "%sh.%d.mlp.c_proj.weight", pre, l);
        READ(tmp, 2, dm, d);
        if (!rc) conv1d_to_linear(p->w_out + (size_t)l * d * dm, tmp, (int)dm, (int)d, 0, (int)d);
        snprintf(name, sizeof name, "%sh.%d.mlp.c_proj.bias", pre, l);
        READ(p->b_out + ld, 1, d);
    }
    snprintf(name, sizeof name, "%sln_f.weight", pre);
    READ(p->lnf_w, 1, d);
    snprintf(name, sizeof name, "%sln_f.bias", pre);
    READ(p->lnf_b, 1, d);
    if (!c->tied_unembed) {
        snprintf(name, sizeof name, "lm_head.weight");
        READ(p->unembed, 2, c->vocab, d);
    }
#undef READ
    free(tmp);
    return rc;
}

const Architecture arch_gpt2 = {"gpt2", gpt2_parse_config, gpt2_load_weights};
