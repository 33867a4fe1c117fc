/* What a trained model does, read off its attention patterns and its predictions (no patching):
 * induction and previous-token scores per head, task accuracy, and the facts it knows. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/train.h"
#include "patchsweep/transformer.h"

void head_scores(const Model *m, int bos, int n_seq, int run, uint64_t seed, double *induction, double *previous) {
    const ModelConfig *c = &m->cfg;
    int L = c->n_layer, H = c->n_head, o = bos >= 0, T = o + 2 * run; /* o: where the first copy of A starts */
    Rng rng;
    rng_seed(&rng, seed, 0x73636f72, 0);
    for (int i = 0; i < L * H; i++) induction[i] = previous[i] = 0.0;
    RunCache acts;
    run_cache_init(&acts, c, T, 0);
    int *tokens = xmalloc(sizeof(int) * (size_t)T), *pool = xmalloc(sizeof(int) * (size_t)c->vocab), n_pool = 0;
    for (int n = 0; n < n_seq; n++) {
        n_pool = 0;
        for (int i = 0; i < c->vocab; i++)
            if (i != bos) pool[n_pool++] = i; /* distinct tokens, never the BOS */
        if (o) tokens[0] = bos;
        for (int i = 0; i < run; i++) {
            int j = i + (int)(rng_uniform(&rng) * (n_pool - i)), tmp = pool[i];
            pool[i] = pool[j], pool[j] = tmp;
            tokens[o + i] = tokens[o + run + i] = pool[i];
        }
        run_forward(m, tokens, T, NULL, &acts, NULL, NULL);
        for (int l = 0; l < L; l++)
            for (int h = 0; h < H; h++) {
                const float *A = acts.layer[l].pattern + (size_t)h * T * T;
                double ind = 0.0, prev = 0.0;
                /* position o + run + i holds A[i]; its first occurrence is o + i, the token after it o + 1 + i */
                for (int i = 0; i < run - 1; i++) ind += A[(size_t)(o + run + i) * T + o + 1 + i];
                for (int t = 1; t < T; t++) prev += A[(size_t)t * T + t - 1];
                induction[l * H + h] += ind / (run - 1) / n_seq;
                previous[l * H + h] += prev / (T - 1) / n_seq;
            }
    }
    free(tokens), free(pool);
    run_cache_free(&acts);
}

double task_accuracy(const Model *m, const Task *task, int n, uint64_t seed, int last_only) {
    Rng rng;
    rng_seed(&rng, seed, 0x61636375, 0);
    int V = m->cfg.vocab, right = 0, total = 0;
    Example ex;
    for (int i = 0; i < n; i++) {
        task->sample(&rng, &ex);
        RunCache acts;
        run_cache_init(&acts, &m->cfg, ex.T, 1);
        run_forward(m, ex.tokens, ex.T, NULL, &acts, NULL, NULL);
        for (int t = 0; t < ex.T; t++) {
            if (ex.targets[t] < 0 || (last_only && t != ex.T - 1)) continue;
            const float *row = acts.logits + (size_t)t * V;
            int best = 0;
            for (int v = 1; v < V; v++)
                if (row[v] > row[best]) best = v;
            right += best == ex.targets[t];
            total++;
        }
        run_cache_free(&acts);
    }
    return total ? (double)right / total : 0.0;
}

/* ROME's "known facts": up to n distinct examples of a task with subjects whose answer the model
 * gets right (argmax at the last position), as JSONL prompts for a causal-tracing job: the text,
 * the answer, and the subject's positions as noise_positions. */
int task_write_known(const Model *m, const Task *task, int n, uint64_t seed, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return ps_fail(PS_EUSER, "%s: cannot write", path);
    Rng rng;
    rng_seed(&rng, seed, 0x6b6e6f77, 0);
    int V = m->cfg.vocab, written = 0;
    Example *kept = xcalloc((size_t)n, sizeof(Example));
    for (int tries = 0; written < n && tries < 100 * n; tries++) {
        Example *ex = &kept[written];
        task->sample(&rng, ex);
        int seen = 0;
        for (int k = 0; k < written && !seen; k++)
            seen = kept[k].T == ex->T && memcmp(kept[k].tokens, ex->tokens, sizeof(int) * (size_t)ex->T) == 0;
        if (seen || ex->subject_len == 0) continue;
        RunCache acts;
        run_cache_init(&acts, &m->cfg, ex->T, 1);
        run_forward(m, ex->tokens, ex->T, NULL, &acts, NULL, NULL);
        const float *row = acts.logits + (size_t)(ex->T - 1) * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        run_cache_free(&acts);
        if (best != ex->targets[ex->T - 1]) continue;
        fprintf(f, "{\"clean_text\": \"");
        for (int t = 0; t < ex->T; t++) fprintf(f, "%s%s", t ? " " : "", task->words[ex->tokens[t]]);
        fprintf(f, "\", \"answer_text\": \"%s\", \"noise_positions\": [", task->words[best]);
        for (int i = 0; i < ex->subject_len; i++) fprintf(f, "%s%d", i ? ", " : "", ex->subject + i);
        fprintf(f, "]}\n");
        written++;
    }
    free(kept);
    if (fclose(f)) return ps_fail(PS_EUSER, "%s: write error", path);
    return written == n ? PS_OK : ps_fail(PS_EUSER, "%s: the model knows only %d of the %d facts asked for", path, written, n);
}
