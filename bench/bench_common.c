#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_common.h"
#include "patchsweep/core.h"

ModelConfig bench_config(void) {
    return (ModelConfig){.model_type = "gpt2", .n_layer = 12, .d_model = 768, .n_head = 12, .n_kv_head = 12, .d_head = 64,
                         .d_mlp = 3072, .vocab = 50257, .n_ctx = 1024, .norm_eps = 1e-5f, .norm = NORM_LAYER,
                         .act = ACT_GELU_TANH, .learned_pos = 1, .tied_unembed = 1, .linear_bias = 1};
}

void bench_model(Model *m) {
    ModelConfig c = bench_config();
    model_init_random(m, &c, 1, 0.02f);
    for (size_t i = 0; i < (size_t)c.vocab * c.d_model; i++) m->w.wte[i] *= 10.0f; /* embeddings of GPT-2's scale */
}

void bench_job(Job *job, const Model *m, int n_prompts, int T, const char *nodes, const char *estimates) {
    char keys[1024];
    snprintf(keys, sizeof keys, "\"nodes\": %s, \"estimates\": %s", nodes, estimates);
    bench_job_keys(job, m, n_prompts, T, keys);
}

char *bench_job_text(int vocab, int n_prompts, int T, const char *keys) {
    size_t cap = (size_t)n_prompts * T * 24 + 1024 + strlen(keys);
    char *text = xmalloc(cap);
    int n = snprintf(text, cap, "{\"model\": \"in memory\", %s, \"prompts\": [", keys);
    Rng rng;
    rng_seed(&rng, 42, 0, 0);
    int V = vocab, *clean = xmalloc(sizeof(int) * (size_t)T), *corrupt = xmalloc(sizeof(int) * (size_t)T);
    for (int p = 0; p < n_prompts; p++) {
        for (int t = 0; t < T; t++) clean[t] = corrupt[t] = (int)(rng_uniform(&rng) * V);
        for (int k = 0; k < 3; k++) corrupt[(int)(rng_uniform(&rng) * T)] = (int)(rng_uniform(&rng) * V);
        n += snprintf(text + n, cap - (size_t)n, "%s{\"clean\": [", p ? "," : "");
        for (int t = 0; t < T; t++) n += snprintf(text + n, cap - (size_t)n, "%s%d", t ? "," : "", clean[t]);
        n += snprintf(text + n, cap - (size_t)n, "], \"corrupt\": [");
        for (int t = 0; t < T; t++) n += snprintf(text + n, cap - (size_t)n, "%s%d", t ? "," : "", corrupt[t]);
        n += snprintf(text + n, cap - (size_t)n, "], \"answer\": %d, \"wrong\": %d}", clean[T - 1], corrupt[T - 1]);
    }
    snprintf(text + n, cap - (size_t)n, "]}");
    free(clean), free(corrupt);
    return text;
}

void bench_job_keys(Job *job, const Model *m, int n_prompts, int T, const char *keys) {
    char *text = bench_job_text(m->cfg.vocab, n_prompts, T, keys);
    if (job_parse_text(job, text, "bench.json") || job_check(job, m)) {
        fprintf(stderr, "bench: %s\n", ps_error());
        exit(1);
    }
    free(text);
}
