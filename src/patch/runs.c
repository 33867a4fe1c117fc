/* The runs a prompt needs: its base and source runs as job_roles() assigns them (one pair per
 * noise sample for gaussian corruption), the clean run (kl reads its distribution), and the
 * job-wide mean runs of mean corruption. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"

/* The standard deviation of token-embedding entries (population, over every entry of the rows
 * of the given tokens; all vocabulary rows when tokens is NULL), summed in double in a fixed
 * order. */
static double embedding_std(const Model *m, const int *tokens, size_t n_tokens) {
    size_t d = (size_t)m->cfg.d_model, rows = tokens ? n_tokens : (size_t)m->cfg.vocab;
    WeightRef wte = model_param(m, PARAM_WTE);
    double sum = 0.0, sq = 0.0;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < d; i++) sum += weight_value(wte, (tokens ? (size_t)tokens[r] : r) * d + i);
    double mean = sum / (double)(rows * d);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < d; i++) {
            double x = weight_value(wte, (tokens ? (size_t)tokens[r] : r) * d + i) - mean;
            sq += x * x;
        }
    return sqrt(sq / (double)(rows * d));
}

/* The noise's standard deviation, on what the job says (docs/job.md, gaussian.std): every
 * vocabulary entry, the job's own noised tokens over its prompts, or a corpus of subjects. */
static double noise_std(const Model *m, const Job *job) {
    if (job->noise_std == NOISE_STD_CORPUS) return embedding_std(m, job->corpus_ids, (size_t)job->n_corpus_ids);
    if (job->noise_std == NOISE_STD_VOCABULARY) return embedding_std(m, NULL, 0);
    size_t n = 0, cap = 64;
    int *subjects = xmalloc(sizeof(int) * cap);
    for (int p = 0; p < job->n_prompts; p++) {
        int n_noised;
        const int *noised = job_noise_positions(job, p, &n_noised);
        for (int k = 0; k < n_noised; k++) {
            if (n == cap) subjects = xrealloc(subjects, sizeof(int) * (cap *= 2));
            subjects[n++] = job->prompts[p].clean[noised[k]];
        }
    }
    double std = embedding_std(m, subjects, n);
    free(subjects);
    return std;
}

void gaussian_noise(const Job *job, int p, int s, int T, int d, double std, float *out) {
    memset(out, 0, sizeof(float) * (size_t)T * d);
    Rng rng;
    rng_seed(&rng, job->seed, (uint64_t)p, (uint64_t)s);
    int n_noised;
    const int *noised = job_noise_positions(job, p, &n_noised);
    for (int k = 0; k < n_noised; k++) {
        int t = noised[k];
        for (int i = 0; i < d; i++) out[(size_t)t * d + i] = (float)(job->noise_scale * std * rng_normal(&rng));
    }
}

void job_runs_init(JobRuns *jr, const Model *m, const Job *job) {
    memset(jr, 0, sizeof *jr);
    if (job->corruption == CORR_GAUSSIAN) jr->embed_std = noise_std(m, job);
    if (job->corruption != CORR_MEAN) return;
    /* Mean of every clean-run activation over the prompts (all of one length), summed in
     * double in prompt order so every rank gets the same bits. */
    int T = job->prompts[0].T;
    RunCache run;
    run_cache_init(&run, &m->cfg, T, 0);
    run_cache_init(&jr->mean, &m->cfg, T, 0);
    size_t n = (size_t)(jr->mean.lnf - jr->mean.block); /* the per-layer activations */
    double *sum = alloc_doubles(n);
    for (int p = 0; p < job->n_prompts; p++) {
        run_forward(m, job->prompts[p].clean, T, NULL, &run, NULL, NULL);
        for (size_t i = 0; i < n; i++) sum[i] += run.block[i];
    }
    for (size_t i = 0; i < n; i++) jr->mean.block[i] = (float)(sum[i] / job->n_prompts);
    free(sum);
    run_cache_free(&run);
}

void job_runs_free(JobRuns *jr) {
    if (jr->mean.block) run_cache_free(&jr->mean);
    memset(jr, 0, sizeof *jr);
}

/* A prompt's runs are lean: what restarts a suffix, the rest recomputed per unit (views.c). */
static RunCache *new_run(PromptRuns *r, const Model *m, const int *tokens, const float *noise) {
    RunCache *c = &r->owned[r->n_owned++];
    run_cache_init_lean(c, &m->cfg, r->T);
    run_forward(m, tokens, r->T, noise, c, NULL, NULL);
    return c;
}

void prompt_runs_build(PromptRuns *r, const Model *m, const Job *job, const JobRuns *jr, int p) {
    const Prompt *pr = &job->prompts[p];
    int S = job_samples(job), T = pr->T, d = m->cfg.d_model;
    memset(r, 0, sizeof *r);
    r->prompt = p;
    r->T = T;
    r->n_samples = S;
    r->owned = xcalloc((size_t)S + 2, sizeof(RunCache));
    r->base = xcalloc((size_t)S, sizeof(RunCache *));
    r->source = xcalloc((size_t)S, sizeof(RunCache *));
    r->base_noise = xcalloc((size_t)S, sizeof(float *));
    int M = r->n_metrics = job->n_metrics;
    r->base_metric = xcalloc((size_t)S * M, sizeof(double));
    r->source_metric = xcalloc((size_t)S * M, sizeof(double));
    r->base_tokens = pr->clean;

    /* The clean run is always computed (kl reads its distribution); a run of other tokens, or a
     * noised one, is computed when the roles ask for it. */
    PromptRoles roles = job_roles(job, p);
    const RunCache *clean = new_run(r, m, pr->clean, NULL);
    r->base_tokens = roles.base_tokens;
    const RunCache *base = roles.base_tokens == pr->clean ? clean : new_run(r, m, roles.base_tokens, NULL);
    const RunCache *source = roles.source == SOURCE_MEAN ? &jr->mean
                             : roles.source == SOURCE_ZERO ? NULL
                             : roles.source_tokens == pr->clean ? clean
                             : new_run(r, m, roles.source_tokens, NULL);
    for (int s = 0; s < S; s++) r->base[s] = base, r->source[s] = source;
    if (roles.noised) { /* gaussian: one noised run per sample, in the role the direction gives it */
        r->noise = xcalloc((size_t)S, sizeof(float *));
        for (int s = 0; s < S; s++) {
            r->noise[s] = alloc_floats((size_t)T * d);
            gaussian_noise(job, p, s, T, d, jr->embed_std, r->noise[s]);
            const RunCache *noisy = new_run(r, m, pr->clean, r->noise[s]);
            if (roles.noised == 1) r->base[s] = noisy, r->base_noise[s] = r->noise[s];
            else r->source[s] = noisy;
        }
    }

    MetricWork w = {0};
    r->clean_logprobs = alloc_doubles((size_t)m->cfg.vocab);
    final_logprobs(m, r->owned[0].layer[m->cfg.n_layer - 1].resid_post + (size_t)(T - 1) * d, r->clean_logprobs, &w);
    r->spec = (MetricSpec){job->metrics, M, pr->answer, pr->wrong, r->clean_logprobs};
    for (int s = 0; s < S; s++) {
        const float *last = r->base[s]->layer[m->cfg.n_layer - 1].resid_post + (size_t)(T - 1) * d;
        metric_rows(m, &r->spec, last, 1, &r->base_metric[(size_t)s * M], &w);
        /* mean and zero have no source run whose metric could be read */
        int real_source = r->source[s] && r->source[s] != &jr->mean;
        if (real_source) {
            last = r->source[s]->layer[m->cfg.n_layer - 1].resid_post + (size_t)(T - 1) * d;
            metric_rows(m, &r->spec, last, 1, &r->source_metric[(size_t)s * M], &w);
        } else {
            for (int k = 0; k < M; k++) r->source_metric[(size_t)s * M + k] = NAN;
        }
    }
    metric_work_free(&w);
}

void prompt_runs_free(PromptRuns *r) {
    for (int i = 0; i < r->n_owned; i++) run_cache_free(&r->owned[i]);
    for (int s = 0; r->noise && s < r->n_samples; s++) free(r->noise[s]);
    free(r->noise);
    free(r->owned);
    free(r->base);
    free(r->source);
    free(r->base_noise);
    free(r->base_metric);
    free(r->source_metric);
    free(r->clean_logprobs);
    memset(r, 0, sizeof *r);
}

void prompt_runs_expand(const PromptRuns *r, const Model *m, PromptRuns *full) {
    int S = r->n_samples;
    *full = *r;
    full->owned = xcalloc(2 * (size_t)S, sizeof(RunCache));
    full->n_owned = 0;
    full->noise = NULL;
    const RunCache **base = xcalloc((size_t)S, sizeof(RunCache *)), **source = xcalloc((size_t)S, sizeof(RunCache *));
    for (int s = 0; s < S; s++)
        for (int role = 0; role < 2; role++) {
            const RunCache *c = role ? r->source[s] : r->base[s], *use = c;
            if (c && c->lean) { /* a run met before (the clean run in every sample) is expanded once */
                use = NULL;
                for (int t = 0; t < s * 2 + role && !use; t++) {
                    const RunCache *before = t % 2 ? r->source[t / 2] : r->base[t / 2];
                    if (before == c) use = t % 2 ? source[t / 2] : base[t / 2];
                }
                if (!use) {
                    run_expand(m, c, &full->owned[full->n_owned]);
                    use = &full->owned[full->n_owned++];
                }
            }
            if (role) source[s] = use;
            else base[s] = use;
        }
    full->base = base;
    full->source = source;
}

void prompt_runs_expanded_free(PromptRuns *full) {
    for (int i = 0; i < full->n_owned; i++) run_cache_free(&full->owned[i]);
    free(full->owned);
    free(full->base);
    free(full->source);
    memset(full, 0, sizeof *full);
}
