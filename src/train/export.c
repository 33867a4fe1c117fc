/* Writing a trained model as a Hugging Face GPT-2 folder that patchsweep (and transformers)
 * load: config.json, model.safetensors (Conv1D weights [in, out], c_attn fused q|k|v) and a
 * word-level tokenizer.json. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/train.h"

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[2];
    float *data; /* owned */
} OutTensor;

/* [out, in] (ours) -> [in, out] (Conv1D), for rows out0..out0+n_out-1 of w, into dst columns. */
static void linear_to_conv1d(float *dst, int dst_cols, int col0, const float *w, int n_out, int n_in) {
    for (int o = 0; o < n_out; o++)
        for (int i = 0; i < n_in; i++) dst[(size_t)i * dst_cols + col0 + o] = w[(size_t)o * n_in + i];
}

static OutTensor *add(OutTensor *t, int *n, const char *name, int ndim, int64_t a, int64_t b) {
    OutTensor *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim, x->shape[0] = a, x->shape[1] = b;
    x->data = alloc_floats((size_t)(ndim == 1 ? a : a * b));
    return x;
}

static int write_safetensors(const char *path, OutTensor *t, int n) {
    cJSON *header = cJSON_CreateObject();
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        size_t bytes = sizeof(float) * (size_t)(t[i].ndim == 1 ? t[i].shape[0] : t[i].shape[0] * t[i].shape[1]);
        cJSON *e = cJSON_AddObjectToObject(header, t[i].name);
        cJSON_AddStringToObject(e, "dtype", "F32");
        cJSON *shape = cJSON_AddArrayToObject(e, "shape");
        for (int k = 0; k < t[i].ndim; k++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[k]));
        cJSON *offs = cJSON_AddArrayToObject(e, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + bytes)));
        offset += bytes;
    }
    char *text = cJSON_PrintUnformatted(header);
    cJSON_Delete(header);
    size_t len = strlen(text), padded = (len + 7) / 8 * 8; /* 8-aligned data, as the reference writer does */
    FILE *f = fopen(path, "wb");
    if (!f) {
        cJSON_free(text);
        return ps_fail(PS_EUSER, "%s: cannot write", path);
    }
    uint8_t size_le[8];
    for (int k = 0; k < 8; k++) size_le[k] = (uint8_t)((uint64_t)padded >> (8 * k));
    fwrite(size_le, 1, 8, f);
    fwrite(text, 1, len, f);
    for (size_t k = len; k < padded; k++) fputc(' ', f);
    for (int i = 0; i < n; i++)
        fwrite(t[i].data, sizeof(float), (size_t)(t[i].ndim == 1 ? t[i].shape[0] : t[i].shape[0] * t[i].shape[1]), f);
    int bad = ferror(f);
    fclose(f);
    cJSON_free(text);
    return bad ? ps_fail(PS_EUSER, "%s: write error", path) : PS_OK;
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return ps_fail(PS_EUSER, "%s: cannot write", path);
    fputs(text, f);
    fputc('\n', f);
    return fclose(f) ? ps_fail(PS_EUSER, "%s: write error", path) : PS_OK;
}

int model_save(const Model *m, const Task *task, const char *dir) {
    const ModelConfig *c = &m->cfg;
    const Params *w = &m->w;
    int d = c->d_model, dm = c->d_mlp, L = c->n_layer, n = 0;
    if (make_dirs(dir) != 0) return ps_fail(PS_EUSER, "%s: cannot create the folder", dir);
    OutTensor *t = xcalloc((size_t)(4 + 12 * L), sizeof(OutTensor));
    memcpy(add(t, &n, "wte.weight", 2, c->vocab, d)->data, w->wte, sizeof(float) * (size_t)c->vocab * d);
    memcpy(add(t, &n, "wpe.weight", 2, c->n_ctx, d)->data, w->wpe, sizeof(float) * (size_t)c->n_ctx * d);
    for (int l = 0; l < L; l++) {
        char name[96];
        size_t ld = (size_t)l * d;
#define NAME(suffix) (snprintf(name, sizeof name, "h.%d.%s", l, suffix), name)
        memcpy(add(t, &n, NAME("ln_1.weight"), 1, d, 0)->data, w->ln1_w + ld, sizeof(float) * d);
        memcpy(add(t, &n, NAME("ln_1.bias"), 1, d, 0)->data, w->ln1_b + ld, sizeof(float) * d);
        OutTensor *qkv = add(t, &n, NAME("attn.c_attn.weight"), 2, d, 3 * d);
        linear_to_conv1d(qkv->data, 3 * d, 0, w->wq + ld * d, d, d);
        linear_to_conv1d(qkv->data, 3 * d, d, w->wk + ld * d, d, d);
        linear_to_conv1d(qkv->data, 3 * d, 2 * d, w->wv + ld * d, d, d);
        float *bias = add(t, &n, NAME("attn.c_attn.bias"), 1, 3 * d, 0)->data;
        memcpy(bias, w->bq + ld, sizeof(float) * d);
        memcpy(bias + d, w->bk + ld, sizeof(float) * d);
        memcpy(bias + 2 * d, w->bv + ld, sizeof(float) * d);
        linear_to_conv1d(add(t, &n, NAME("attn.c_proj.weight"), 2, d, d)->data, d, 0, w->wo + ld * d, d, d);
        memcpy(add(t, &n, NAME("attn.c_proj.bias"), 1, d, 0)->data, w->bo + ld, sizeof(float) * d);
        memcpy(add(t, &n, NAME("ln_2.weight"), 1, d, 0)->data, w->ln2_w + ld, sizeof(float) * d);
        memcpy(add(t, &n, NAME("ln_2.bias"), 1, d, 0)->data, w->ln2_b + ld, sizeof(float) * d);
        linear_to_conv1d(add(t, &n, NAME("mlp.c_fc.weight"), 2, d, dm)->data, dm, 0, w->w_in + (size_t)l * dm * d, dm, d);
        memcpy(add(t, &n, NAME("mlp.c_fc.bias"), 1, dm, 0)->data, w->b_in + (size_t)l * dm, sizeof(float) * dm);
        linear_to_conv1d(add(t, &n, NAME("mlp.c_proj.weight"), 2, dm, d)->data, d, 0, w->w_out + (size_t)l * d * dm, d, dm);
        memcpy(add(t, &n, NAME("mlp.c_proj.bias"), 1, d, 0)->data, w->b_out + ld, sizeof(float) * d);
#undef NAME
    }
    memcpy(add(t, &n, "ln_f.weight", 1, d, 0)->data, w->lnf_w, sizeof(float) * d);
    memcpy(add(t, &n, "ln_f.bias", 1, d, 0)->data, w->lnf_b, sizeof(float) * d);
    char path[4200];
    int rc = path_join(path, sizeof path, dir, "model.safetensors");
    if (!rc) rc = write_safetensors(path, t, n);
    for (int i = 0; i < n; i++) free(t[i].data);
    free(t);

    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddStringToObject(cfg, "model_type", "gpt2");
    cJSON *arch = cJSON_AddArrayToObject(cfg, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    cJSON_AddNumberToObject(cfg, "n_embd", d);
    cJSON_AddNumberToObject(cfg, "n_layer", L);
    cJSON_AddNumberToObject(cfg, "n_head", c->n_head);
    cJSON_AddNumberToObject(cfg, "n_inner", dm);
    cJSON_AddNumberToObject(cfg, "n_positions", c->n_ctx);
    cJSON_AddNumberToObject(cfg, "vocab_size", c->vocab);
    cJSON_AddNumberToObject(cfg, "layer_norm_epsilon", c->norm_eps);
    cJSON_AddStringToObject(cfg, "activation_function", "gelu_new");
    cJSON_AddBoolToObject(cfg, "tie_word_embeddings", 1);
    cJSON_AddStringToObject(cfg, "torch_dtype", "float32");
    char *text = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    if (!rc) rc = path_join(path, sizeof path, dir, "config.json");
    if (!rc) rc = write_text(path, text);
    cJSON_free(text);

    cJSON *tok = cJSON_CreateObject();
    cJSON_AddStringToObject(tok, "version", "1.0");
    cJSON *model = cJSON_AddObjectToObject(tok, "model");
    cJSON_AddStringToObject(model, "type", "WordLevel");
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int i = 0; i < task->vocab; i++) cJSON_AddNumberToObject(vocab, task->words[i], i);
    /* No unk_token: a word outside the vocabulary is an error, not silently some token. */
    cJSON *pre = cJSON_AddObjectToObject(tok, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "WhitespaceSplit");
    /* The models are trained on sequences that begin with <bos>: the template says so, so text
     * prompts get it (docs/job.md, "add_bos") and prompts of ids without it are warned about. */
    cJSON *post = cJSON_AddObjectToObject(tok, "post_processor");
    cJSON_AddStringToObject(post, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(post, "single");
    cJSON *first = cJSON_CreateObject(), *sequence = cJSON_CreateObject();
    cJSON *special = cJSON_AddObjectToObject(first, "SpecialToken"), *text_part = cJSON_AddObjectToObject(sequence, "Sequence");
    cJSON_AddStringToObject(special, "id", task->words[0]);
    cJSON_AddNumberToObject(special, "type_id", 0);
    cJSON_AddStringToObject(text_part, "id", "A");
    cJSON_AddNumberToObject(text_part, "type_id", 0);
    cJSON_AddItemToArray(single, first);
    cJSON_AddItemToArray(single, sequence);
    /* pair: Hugging Face's loader requires one; <bos> A B */
    cJSON *pair = cJSON_Duplicate(single, 1), *second = cJSON_CreateObject();
    cJSON *second_part = cJSON_AddObjectToObject(second, "Sequence");
    cJSON_AddStringToObject(second_part, "id", "B");
    cJSON_AddNumberToObject(second_part, "type_id", 1);
    cJSON_AddItemToArray(pair, second);
    cJSON_AddItemToObject(post, "pair", pair);
    cJSON *specials = cJSON_AddObjectToObject(post, "special_tokens");
    cJSON *bos_entry = cJSON_AddObjectToObject(specials, task->words[0]);
    cJSON_AddStringToObject(bos_entry, "id", task->words[0]);
    int bos_id = 0;
    cJSON_AddItemToObject(bos_entry, "ids", cJSON_CreateIntArray(&bos_id, 1));
    cJSON *bos_tokens = cJSON_AddArrayToObject(bos_entry, "tokens");
    cJSON_AddItemToArray(bos_tokens, cJSON_CreateString(task->words[0]));
    cJSON *added = cJSON_AddArrayToObject(tok, "added_tokens");
    cJSON *bos = cJSON_CreateObject();
    cJSON_AddNumberToObject(bos, "id", 0);
    cJSON_AddStringToObject(bos, "content", task->words[0]);
    cJSON_AddBoolToObject(bos, "special", 1);
    cJSON_AddItemToArray(added, bos);
    text = cJSON_Print(tok);
    cJSON_Delete(tok);
    if (!rc) rc = path_join(path, sizeof path, dir, "tokenizer.json");
    if (!rc) rc = write_text(path, text);
    cJSON_free(text);
    return rc;
}
