/* What the benchmarks share: the GPT-2-small-shaped model with random weights (generated in
 * memory) and a job of random prompts with a pair corruption. */
#ifndef PATCHSWEEP_BENCH_COMMON_H
#define PATCHSWEEP_BENCH_COMMON_H

#include "patchsweep/job.h"
#include "patchsweep/model.h"

/* 12 layers, 12 heads, d_model 768, d_mlp 3072, vocabulary 50257, GELU, tied embeddings. */
ModelConfig bench_config(void);
void bench_model(Model *m);
/* n_prompts prompts of T random tokens, the corrupt copy differing in 3 places; the given
 * nodes (a JSON list) and estimates (a JSON list, may be "[]"). */
void bench_job(Job *job, const Model *m, int n_prompts, int T, const char *nodes, const char *estimates);
/* The same prompts with the job's other keys given as JSON text ("\"edges\": \"all\""). */
void bench_job_keys(Job *job, const Model *m, int n_prompts, int T, const char *keys);
/* Those prompts in a job's JSON text with the given keys (malloc'd), for a job of a model that
 * is only a configuration (bench_sched: the plan alone). */
char *bench_job_text(int vocab, int n_prompts, int T, const char *keys);

#endif
