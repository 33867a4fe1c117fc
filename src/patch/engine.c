/* The exact patching engine.
 *
 * Fast path (docs/methods.md, "How it is computed"). A patch at layer l, position t changes nothing before layer
 * l and nothing at positions < t. So a batch of patches that share (site, layer, position)
 * starts from the cached base run at layer l, recomputes rows t..T-1 only (keys and values of
 * rows < t come from the cache), carries all B patched sequences through one GEMM per weight
 * matrix, and computes the last layer for the last row alone. In the patched layer itself a
 * patch of one row of a q-side site (q, z, attn_out, resid_mid, mlp_post, mlp_out, resid_post)
 * recomputes that row only, starting at the site's stage.
 *
 * Naive path: a full forward pass of the base prompt per patch, with the same hook. Tests check
 * the fast path against it for every site, corruption, direction and metric. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/patch.h"

struct Engine {
    const Model *m;
    int max_T, max_batch;
    LayerActs acts;            /* one layer, max_batch sequences of max_T rows, with gathers */
    float *acts_block;
    const float **k_prefix, **v_prefix;
    const RunCache **base_of;  /* [max_batch] base run of each sequence */
    const double **base_metric_of; /* [max_batch] its metrics */
    Patch *patches;            /* [max_batch] */
    Patch *frozen;             /* [max_batch]: the severed site, held at the base run (NULL: none) */
    double *metric;            /* [max_batch, n_metrics] (room for N_METRICS) */
    float *last_rows;          /* [max_batch, d] */
    RunCache full;             /* naive path: one run (lean) */
    /* The runs of the current call as it reads them: views of the prompt's lean runs with the
     * sites the call's patches read recomputed (docs/design.md, "Memory-lean runs"). */
    ViewSet views;
    int cap_samples;
    const RunCache **runs, **views_of; /* [2 * cap_samples]: base runs then source runs, and their views */
    const unsigned **wants;            /* [2 * cap_samples] */
    const RunCache **view_base, **view_source; /* into views_of */
    unsigned *want_base, *want_source; /* [n_layer] */
    void (*poll)(void *);      /* called after every batch */
    void *poll_ctx;
    MetricWork work;
};

Engine *engine_new(const Model *m, int max_T, int max_batch) {
    Engine *e = xcalloc(1, sizeof *e);
    e->m = m;
    e->max_T = max_T;
    e->max_batch = max_batch;
    size_t sizes[N_LAYER_ACTS];
    layer_acts_sizes(&m->cfg, max_batch, max_T, max_T, 0, 1, sizes); /* no pattern: nothing reads it */
    /* also room for one layer of max_T rows, where the views are built (set_views) */
    size_t room = layer_acts_floats(sizes), one_layer = layer_floats(&m->cfg, max_T, 0);
    e->acts_block = alloc_floats(room > one_layer ? room : one_layer);
    layer_acts_point(&e->acts, e->acts_block, sizes);
    e->k_prefix = xcalloc((size_t)max_batch, sizeof(float *));
    e->v_prefix = xcalloc((size_t)max_batch, sizeof(float *));
    e->base_of = xcalloc((size_t)max_batch, sizeof(RunCache *));
    e->base_metric_of = xcalloc((size_t)max_batch, sizeof(double *));
    e->patches = xcalloc((size_t)max_batch, sizeof(Patch));
    e->frozen = xcalloc((size_t)max_batch, sizeof(Patch));
    e->metric = xcalloc((size_t)max_batch * N_METRICS, sizeof(double));
    e->last_rows = alloc_floats((size_t)max_batch * m->cfg.d_model);
    e->want_base = xcalloc((size_t)m->cfg.n_layer, sizeof(unsigned));
    e->want_source = xcalloc((size_t)m->cfg.n_layer, sizeof(unsigned));
    return e;
}

void engine_set_poll(Engine *e, void (*poll)(void *ctx), void *ctx) {
    e->poll = poll;
    e->poll_ctx = ctx;
}

void engine_free(Engine *e) {
    if (!e) return;
    free(e->acts_block);
    free(e->k_prefix);
    free(e->v_prefix);
    free(e->base_of);
    free(e->base_metric_of);
    free(e->patches);
    free(e->frozen);
    free(e->metric);
    free(e->last_rows);
    if (e->full.block) run_cache_free(&e->full);
    view_set_free(&e->views);
    free(e->runs), free(e->wants), free(e->views_of);
    free(e->want_base);
    free(e->want_source);
    metric_work_free(&e->work);
    free(e);
}

/* view_base[s] and view_source[s] for every noise sample of r, with e->want_base and
 * e->want_source. */
static void set_views(Engine *e, const PromptRuns *r) {
    int S = r->n_samples;
    if (S > e->cap_samples) {
        e->runs = xrealloc(e->runs, sizeof(RunCache *) * 2 * (size_t)S);
        e->wants = xrealloc(e->wants, sizeof(unsigned *) * 2 * (size_t)S);
        e->views_of = xrealloc(e->views_of, sizeof(RunCache *) * 2 * (size_t)S);
        e->cap_samples = S;
    }
    for (int s = 0; s < S; s++) {
        e->runs[s] = r->base[s], e->wants[s] = e->want_base;
        e->runs[S + s] = r->source[s], e->wants[S + s] = e->want_source;
    }
    /* the batch's room is free between calls and holds one layer of a prompt (engine_new) */
    view_set_update(&e->views, e->m, e->runs, e->wants, 2 * S, e->views_of, e->acts_block);
    e->view_base = e->views_of;
    e->view_source = e->views_of + S;
}

/* Copies rows [first, first+rows) of one site of the base run into sequence b's buffer. */
static void copy_rows(const ModelConfig *c, Site s, LayerActs *dst, const LayerActs *base, int b, int first, int rows) {
    int w = site_width(c, s);
    memcpy(site_buffer(dst, s) + (size_t)b * rows * w, site_buffer(base, s) + (size_t)first * w,
           sizeof(float) * (size_t)rows * w);
}

/* Fills the buffers of every stage up to `from` with the base run's values, so the block can
 * start at the patched stage. */
static void prefill_start_layer(Engine *e, int layer, const BlockRun *run) {
    const ModelConfig *c = &e->m->cfg;
    static const Site q_side[] = {SITE_Q, SITE_Z, SITE_ATTN_OUT, SITE_RESID_MID, SITE_MLP_POST, SITE_MLP_OUT,
                                  SITE_RESID_POST};
    int Rq = block_q_rows(run), q0 = block_q_pos0(run);
    for (int b = 0; b < run->B; b++) {
        const LayerActs *base = &e->base_of[b]->layer[layer];
        copy_rows(c, SITE_RESID_PRE, &e->acts, base, b, run->r0, run->R);
        if (run->from_stage >= ST_QKV) {
            copy_rows(c, SITE_K, &e->acts, base, b, run->r0, run->R);
            copy_rows(c, SITE_V, &e->acts, base, b, run->r0, run->R);
        }
        for (size_t i = 0; i < sizeof q_side / sizeof q_side[0]; i++)
            if (site_stage(q_side[i]) <= run->from_stage) copy_rows(c, q_side[i], &e->acts, base, b, q0, Rq);
    }
}

static void set_prefixes(Engine *e, int layer, int B) {
    for (int b = 0; b < B; b++) {
        e->k_prefix[b] = e->base_of[b]->layer[layer].k_rot;
        e->v_prefix[b] = e->base_of[b]->layer[layer].v;
    }
}

/* metric[b * M + k] for the B patches in e->patches (same site, layer and position), bases in
 * e->base_of. */
static void fast_metrics(Engine *e, const PromptRuns *r, int B, int sever) {
    const Model *m = e->m;
    const ModelConfig *c = &m->cfg;
    int L = c->n_layer, T = r->T, d = c->d_model;
    const Patch *p = &e->patches[0];
    int kv_side = site_is_kv_side(p->site), pos = p->pos, l0 = p->layer;
    int r0 = pos < 0 ? 0 : pos;
    PatchHook hook = {c, e->patches, sever ? e->frozen : NULL};

    /* One row of a q-side site, before the last position, in the last layer: nothing the metric
     * reads depends on it, and the full forward would give the base metric bit for bit. */
    if (!kv_side && pos >= 0 && pos < T - 1 && l0 == L - 1) {
        int M = r->n_metrics;
        for (int b = 0; b < B; b++) memcpy(&e->metric[(size_t)b * M], e->base_metric_of[b], sizeof(double) * M);
        return;
    }
    BlockRun run = {.B = B, .R = (kv_side || pos < 0) ? T - r0 : 1, .r0 = r0, .last_only = l0 == L - 1,
                    .from_stage = site_stage(p->site), .k_prefix = e->k_prefix, .v_prefix = e->v_prefix};
    prefill_start_layer(e, l0, &run);
    set_prefixes(e, l0, B);
    block_forward(m, l0, &e->acts, &run, patch_hook, &hook);

    for (int l = l0 + 1; l < L; l++) {
        int R = T - r0;
        if (run.R == R) { /* every row was recomputed: the block output is the next input */
            memcpy(e->acts.resid_pre, e->acts.resid_post, sizeof(float) * (size_t)B * R * d);
        } else { /* one row was: the rows after it are still the base run's */
            for (int b = 0; b < B; b++) {
                float *dst = e->acts.resid_pre + (size_t)b * R * d;
                memcpy(dst, e->acts.resid_post + (size_t)b * d, sizeof(float) * d);
                memcpy(dst + d, e->base_of[b]->layer[l - 1].resid_post + (size_t)(r0 + 1) * d,
                       sizeof(float) * (size_t)(R - 1) * d);
            }
        }
        run.R = R;
        run.last_only = l == L - 1;
        run.from_stage = ST_RESID_PRE;
        set_prefixes(e, l, B);
        block_forward(m, l, &e->acts, &run, patch_hook, &hook);
    }
    /* The last layer ran on the last row alone: resid_post is [B, 1, d]. */
    metric_rows(m, &r->spec, e->acts.resid_post, B, e->metric, &e->work);
}

/* The metrics of one full forward pass of a noise sample's base run, with a hook, into out[M]. */
static void full_metrics(Engine *e, const PromptRuns *r, int sample, BlockHook hook, void *ctx, double *out) {
    const Model *m = e->m;
    if (!e->full.block || e->full.T != r->T) {
        if (e->full.block) run_cache_free(&e->full);
        run_cache_init_lean(&e->full, &m->cfg, r->T);
    }
    run_forward(m, r->base_tokens, r->T, r->base_noise[sample], &e->full, hook, ctx);
    const float *last = e->full.layer[m->cfg.n_layer - 1].resid_post + (size_t)(r->T - 1) * m->cfg.d_model;
    metric_rows(m, &r->spec, last, 1, out, &e->work);
}

static void naive_metrics(Engine *e, const PromptRuns *r, int b, int sample, int sever) {
    PatchHook hook = {&e->m->cfg, &e->patches[b], sever ? &e->frozen[b] : NULL};
    full_metrics(e, r, sample, patch_hook, &hook, &e->metric[(size_t)b * r->n_metrics]);
}

double engine_joint_effect(Engine *e, const PromptRuns *r, Patch *patches, int n, int metric) {
    double sum = 0.0, values[N_METRICS];
    int M = r->n_metrics, L = e->m->cfg.n_layer;
    memset(e->want_base, 0, sizeof(unsigned) * (size_t)L);
    memset(e->want_source, 0, sizeof(unsigned) * (size_t)L);
    for (int i = 0; i < n; i++)
        for (int l = patches[i].layer; l <= patches[i].last_layer; l++) e->want_source[l] |= SITE_BIT(patches[i].site);
    set_views(e, r);
    for (int s = 0; s < r->n_samples; s++) {
        for (int i = 0; i < n; i++) patches[i].src = e->view_source[s];
        JointHook hook = {&e->m->cfg, patches, n};
        full_metrics(e, r, s, joint_hook, &hook, values);
        sum += values[metric] - r->base_metric[(size_t)s * M + metric];
    }
    return sum / r->n_samples;
}

/* Whether a patch writes exactly the values the base run already holds, bit for bit, in every
 * layer and row it touches (e.g. at a position before the first token where the base and
 * source prompts differ). The patched run is then the base run itself: the kernels give a row
 * the same bits whatever else is computed beside it. */
static int patch_is_identity(const ModelConfig *c, const Patch *p, const RunCache *base) {
    int width = site_width(c, p->site), off, len;
    site_slice(c, p->site, p->index, &off, &len);
    int lo = p->pos < 0 ? 0 : p->pos, hi = p->pos < 0 ? base->T - 1 : p->pos;
    for (int l = p->layer; l <= p->last_layer; l++) {
        const float *have = site_buffer(&base->layer[l], p->site);
        const float *put = p->src ? site_buffer(&p->src->layer[l], p->site) : NULL;
        for (int t = lo; t <= hi; t++)
            for (int i = 0; i < len; i++) {
                float v = put ? put[(size_t)t * width + off + i] : 0.0f, h = have[(size_t)t * width + off + i];
                if (memcmp(&v, &h, sizeof v) != 0) return 0;
            }
    }
    return 1;
}

static void effects(Engine *e, const Job *job, const PromptRuns *r, Site site, int layer, int index0, int n,
                    const int *positions, int n_positions, float *out, int naive) {
    const ModelConfig *c = &e->m->cfg;
    int S = r->n_samples, total = n * S, M = r->n_metrics;
    int first_layer, last_layer;
    job_window(job, layer, c->n_layer, &first_layer, &last_layer);
    /* What the unit reads of its runs: the patched site in the window's layers (both runs: a
     * patch that writes the base run's own values is skipped), what the fast path's first layer
     * starts from (the base run's sites up to the patched stage), and a severed site in every
     * layer. */
    for (int l = 0; l < c->n_layer; l++) {
        unsigned in_window = l >= first_layer && l <= last_layer ? SITE_BIT(site) : 0;
        e->want_source[l] = in_window;
        e->want_base[l] = in_window | (l == first_layer ? sites_up_to(site_stage(site)) : 0) |
                          (job->sever != N_SITES ? SITE_BIT(job->sever) : 0);
    }
    set_views(e, r);
    double *sum = xcalloc((size_t)n * M, sizeof(double)); /* [node, metric] */
    int *item = xcalloc((size_t)e->max_batch, sizeof(int)); /* batch element -> node * S + sample */
    for (int j = 0; j < n_positions; j++) {
        int pos = positions[j];
        if (pos >= r->T) {
            column_not_computed(out, n, n_positions, j, M);
            continue;
        }
        memset(sum, 0, sizeof(double) * (size_t)n * M);
        /* Item i is node i / S with noise sample i % S. The fast path leaves out patches that
         * change nothing (their effect is exactly 0) and batches the rest, max_batch at a time;
         * the naive path computes every one, as the reference. */
        for (int i = 0; i < total;) {
            int B = 0;
            for (; i < total && B < e->max_batch; i++) {
                int k = i / S, s = i % S;
                Patch patch = {site, first_layer, last_layer, site_has_index(site) ? index0 + k : -1, pos, e->view_source[s]};
                if (!naive && patch_is_identity(c, &patch, e->view_base[s])) {
                    for (int mi = 0; mi < M; mi++) sum[(size_t)k * M + mi] += 0.0; /* as metric - base gives, sign of zero too */
                    continue;
                }
                e->patches[B] = patch;
                /* severed paths: the site held at the base run at the patched positions, every layer */
                e->frozen[B] = (Patch){job->sever, 0, c->n_layer - 1, -1, pos, e->view_base[s]};
                e->base_of[B] = e->view_base[s];
                e->base_metric_of[B] = &r->base_metric[(size_t)s * M];
                item[B++] = i;
            }
            if (B == 0) break;
            int sever = job->sever != N_SITES;
            if (naive)
                for (int b = 0; b < B; b++) naive_metrics(e, r, b, item[b] % S, sever);
            else
                fast_metrics(e, r, B, sever);
            for (int b = 0; b < B; b++)
                for (int mi = 0; mi < M; mi++)
                    sum[(size_t)(item[b] / S) * M + mi] += e->metric[(size_t)b * M + mi] - r->base_metric[(size_t)(item[b] % S) * M + mi];
            if (e->poll) e->poll(e->poll_ctx);
        }
        for (int k = 0; k < n; k++)
            for (int mi = 0; mi < M; mi++) out[((size_t)k * n_positions + j) * M + mi] = (float)(sum[(size_t)k * M + mi] / S);
    }
    free(item);
    free(sum);
}

void engine_effects(Engine *e, const Job *job, const PromptRuns *r, Site site, int layer, int index0, int n,
                    const int *positions, int n_positions, float *out) {
    effects(e, job, r, site, layer, index0, n, positions, n_positions, out, 0);
}

void engine_effects_naive(Engine *e, const Job *job, const PromptRuns *r, Site site, int layer, int index0, int n,
                          const int *positions, int n_positions, float *out) {
    effects(e, job, r, site, layer, index0, n, positions, n_positions, out, 1);
}
