/* Exact activation patching: metrics, the runs a prompt needs (one base and one source run per
 * noise sample), and the engine that computes patched metrics, fast (suffix-only recompute,
 * batched) or naively (a full forward per patch, the reference). */
#ifndef PATCHSWEEP_PATCH_H
#define PATCHSWEEP_PATCH_H

#include <math.h>

#include "patchsweep/job.h"
#include "patchsweep/plan.h"
#include "patchsweep/transformer.h"

/* ---- metrics: read at the last position ------------------------------------------------ */
typedef struct {
    const MetricKind *kinds;      /* the job's metrics, in order */
    int n_kinds;
    int answer, wrong;
    const double *clean_logprobs; /* [V], the clean run's log-probabilities (kl only) */
} MetricSpec;

typedef struct {
    float *lnf, *logits, *stats;
    int cap;
} MetricWork;

/* out[i * n_kinds + k] = metric k of the model whose final residual (before the final norm) at
 * the last position is resid[i] ([n, d]). Each metric's value is the same, bit for bit, whatever
 * the other metrics read alongside it. */
void metric_rows(const Model *m, const MetricSpec *spec, const float *resid, int n, double *out, MetricWork *w);
/* dL/d(final residual row) for L = the metric spec->kinds[which] read off resid_row ([d]); out is overwritten. */
void metric_grad(const Model *m, const MetricSpec *spec, int which, const float *resid_row, float *out, MetricWork *w);
/* log-softmax of the logits of one final residual row, in double ([V]). */
void final_logprobs(const Model *m, const float *resid_row, double *out, MetricWork *w);
void metric_work_free(MetricWork *w);

/* ---- one patch ---------------------------------------------------------------------------------- */
typedef struct {
    Site site;
    int layer, last_layer; /* layers patched together (window) */
    int index;             /* head, key/value head or neuron; -1 for whole-vector sites */
    int pos;               /* position, or -1 for every position */
    const RunCache *src;   /* source activations; NULL patches in zeros */
} Patch;

/* A block hook that applies patches[b] to sequence b, and frozen[b] too when frozen is not NULL
 * (a severed path: a site held at the base run's values while patches[b] restores another). */
typedef struct {
    const ModelConfig *cfg;
    const Patch *patches;
    const Patch *frozen;
} PatchHook;
void patch_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run);

/* A block hook that applies every one of n patches to a single sequence (a joint patch). */
typedef struct {
    const ModelConfig *cfg;
    const Patch *patches;
    int n;
} JointHook;
void joint_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run);

/* ---- the runs of one prompt --------------------------------------------------------------------- */
typedef struct {
    int prompt, T, n_samples;
    const int *base_tokens;
    const float **base_noise;       /* [n_samples]: embedding noise of each base run (or NULL) */
    const RunCache **base;          /* [n_samples] */
    const RunCache **source;        /* [n_samples]; NULL entries patch zeros */
    int n_metrics;
    double *base_metric, *source_metric; /* [n_samples, n_metrics]; source is NaN where there is no source run */
    double *clean_logprobs;         /* [V] */
    MetricSpec spec;
    /* owned storage */
    RunCache *owned;
    int n_owned;
    float **noise;
} PromptRuns;

/* Job-wide data every prompt's runs may need: the mean activations (mean corruption) and the
 * embedding standard deviation (gaussian). */
typedef struct {
    RunCache mean;       /* T = 0 unless corruption is mean */
    double embed_std;
} JobRuns;

void job_runs_init(JobRuns *jr, const Model *m, const Job *job);
void job_runs_free(JobRuns *jr);
void prompt_runs_build(PromptRuns *r, const Model *m, const Job *job, const JobRuns *jr, int p);
void prompt_runs_free(PromptRuns *r);
/* full: r with every lean base and source run expanded into a full cache (run_expand), for the
 * edge estimators and node estimates over several layers, which read every activation of every
 * layer; free with prompt_runs_expanded_free. */
void prompt_runs_expand(const PromptRuns *r, const Model *m, PromptRuns *full);
void prompt_runs_expanded_free(PromptRuns *full);
/* The noise added to the embeddings of noise sample s of prompt p ([T, d], zero off the listed
 * positions). Documented in docs/methods.md so it can be reproduced outside patchsweep. */
void gaussian_noise(const Job *job, int p, int s, int T, int d, double std, float *out);

/* ---- the engine ------------------------------------------------------------------------------------- */
typedef struct Engine Engine;

/* Scratch for batches of up to max_batch sequences of up to max_T tokens. */
Engine *engine_new(const Model *m, int max_T, int max_batch);
void engine_free(Engine *e);

/* Called after every batch (the MPI coordinator answers requests there). */
void engine_set_poll(Engine *e, void (*poll)(void *ctx), void *ctx);

/* Effects of patching nodes (site, layer, index = index0..index0+n-1) of one prompt at the
 * given positions: out[(k * n_positions + j) * n_metrics + i] = mean over noise samples of
 * metric i (patched) - metric i (base), NaN where the position is past the prompt. */
void engine_effects(Engine *e, const Job *job, const PromptRuns *r, Site site, int layer, int index0, int n,
                    const int *positions, int n_positions, float *out);
/* Same values, one full forward pass per patch. */
void engine_effects_naive(Engine *e, const Job *job, const PromptRuns *r, Site site, int layer, int index0, int n,
                          const int *positions, int n_positions, float *out);

/* Effect of patching every node of a set at once (nodes at one site, so none contains another):
 * the mean over noise samples of metric(patched) - metric(base), one full forward pass per
 * sample, for the job's metric number `metric`. patches[i].src is ignored: each sample patches
 * in its own source run. */
double engine_joint_effect(Engine *e, const PromptRuns *r, Patch *patches, int n, int metric);

/* ---- edges (docs/edges.md) ----------------------------------------------------------------------- */
/* Upstream node u's output in a run, row t, into out[d] (double): embed = the block-0 input, head
 * h of layer l = z_h W_O[h] without the output bias, an MLP = mlp_out. run NULL: zeros. */
void edge_upstream_row(const Model *m, const EdgeEnd *u, const RunCache *run, int t, double *out);
/* delta[t * d + i] = u^S[t] - u^B[t] for rows lo..hi (other rows untouched); returns 1 when any
 * entry is not exactly 0 (else patching the edge there is the base run itself). */
int edge_upstream_delta(const Model *m, const EdgeEnd *u, const RunCache *base, const RunCache *source, int lo, int hi,
                        double *delta);

/* A downstream input's own computation of one row x ([d]) of its stream: its norm, then its
 * projection only. q/k/v: head (key/value head) v->index's slice of the projection, written at
 * out + index * d_head of a q (k, v) row; mlp_in: the MLP's output row out [d]. */
typedef struct {
    float *normed, *mean, *rstd, *proj, *pre, *up, *hidden;
} InputScratch;
void input_scratch_init(InputScratch *s, const ModelConfig *c);
void input_scratch_free(InputScratch *s);
void input_row_forward(const Model *m, const EdgeEnd *v, const float *x, float *out, InputScratch *s);

typedef struct EdgeScratch EdgeScratch;
/* Room for prompts of up to max_T tokens and fast-path batches of up to max_batch patches. */
EdgeScratch *edge_scratch_new(const Model *m, int max_T, int max_batch);
void edge_scratch_free(EdgeScratch *w);
/* Exact effects of patching edges[0..n) of one prompt (edges into one downstream input), one at
 * a time, at each position column: out[(k * n_positions + j) * n_metrics + i] = mean over noise
 * samples of metric i (patched) - metric i (base), NaN where the column is past the prompt
 * (docs/edges.md, "Exact edge patching"). Fast (batched suffix) or naive (one full-length pass per
 * patch); the same bits either way. */
void edge_effects(EdgeScratch *w, const PromptRuns *r, const Edge *edges, int n, const int *positions, int n_positions,
                  float *out, int naive);

/* A set of edge cells patched at once (docs/edges.md, "Joint patches"): cell = edge number (into
 * the edges array) and a position (-1: every row). */
typedef struct {
    int edge, pos;
} EdgeCell;
typedef struct EdgeJoint EdgeJoint;
EdgeJoint *edge_joint_new(const Model *m, int max_T);
void edge_joint_free(EdgeJoint *w);
/* Mean over noise samples of metric number `metric` (patched) - metric (base) with every cell of
 * cells[0..n) patched at once: each edge u -> v carries u^S instead of u's output in the patched
 * run on its cells' rows (positions inside the prompt). Sorts cells. One of them alone gives
 * edge_effects' value bit for bit. */
double edge_joint_effect(EdgeJoint *w, const PromptRuns *r, const Edge *edges, EdgeCell *cells, int n, int metric);

/* ---- circuits (docs/circuits.md) ------------------------------------------------------------------ */
/* Upstream nodes in contract order: embed, then per layer its heads and its MLP (U of them). */
int circuit_n_upstream(const ModelConfig *c);
int circuit_upstream_index(const ModelConfig *c, const EdgeEnd *u);
/* Every upstream node's output in a run of T rows (edge_upstream_row), out [U, T, d]. */
void node_outputs(const Model *m, const RunCache *run, int T, double *out);

typedef struct CircuitScratch CircuitScratch;
/* edges: the model's whole graph (filter off), in contract order. */
CircuitScratch *circuit_scratch_new(const Model *m, const Edge *edges, long n_edges, int max_T);
void circuit_scratch_free(CircuitScratch *w);
/* The metrics (out [spec->n_kinds]) of a forward pass of `tokens` in which every downstream input v
 * reads, at row t, its stream minus, for each edge u -> v not kept at t, u's current output plus
 * u's ablated one: x_v = x_v(this run) + sum over those edges of (abl_u - u). kept [E, T]: 1 where
 * edge e carries u's current output at row t; abl [U, T, d]. With every edge kept it is the plain
 * forward pass, bit for bit. */
void circuit_metrics(CircuitScratch *w, const int *tokens, int T, const double *abl, const uint8_t *kept,
                     const MetricSpec *spec, double *out);

/* Column j of out ([n, n_positions, n_metrics]) as not computed: the prompt has no such position. */
static inline void column_not_computed(float *out, int n, int n_positions, int j, int n_metrics) {
    for (int k = 0; k < n; k++)
        for (int i = 0; i < n_metrics; i++) out[((size_t)k * n_positions + j) * n_metrics + i] = NAN;
}

#endif
