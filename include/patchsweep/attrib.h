/* Gradient estimates of the exact effects (docs/methods.md, "Estimates"): AtP, AtP with the QK
 * fix, and AtP* (QK fix + GradDrop), for the same nodes, positions and sign convention as
 * /effects/exact. */
#ifndef PATCHSWEEP_ATTRIB_H
#define PATCHSWEEP_ATTRIB_H

#include "patchsweep/patch.h"
#include "patchsweep/plan.h"

/* Room the QK fix works in, sized once for the longest prompt (nothing is allocated per node). */
typedef struct {
    double *scores;                   /* [T, T] */
    double *row, *row_max, *rest_w, *rest_wg; /* [T] */
    double *second_max, *rest2_w, *rest2_wg;  /* [T] */
    int *argmax;                      /* [T] */
} QkScratch;
void qk_scratch_init(QkScratch *s, int max_T);
void qk_scratch_free(QkScratch *s);

/* One layer as an estimator sees it: base and source activations (src NULL: zeros) and the
 * gradient of the metric with respect to each of the base's activations. */
typedef struct {
    const ModelConfig *c;
    int T;
    const LayerActs *base, *src, *grad;
    QkScratch *scratch;
} LayerView;

/* (a_src - a_base) . g over the node's own dimensions, at one position (or every, pos -1). */
double atp_term(const LayerView *v, Site site, int index, int pos);
/* QK fix, query node (head, pos): sum_s (A'_ts - A_ts) G_ts, row t = pos recomputed exactly with
 * the source query (every row for pos -1). */
double qk_fix_query(const LayerView *v, int head, int pos);
/* QK fix, key node (key/value head, at each position column): out[j] += sum over the query heads
 * sharing the key and rows t >= pos of sum_s (A'_ts - A_ts) G_ts, where A' has the source key at
 * pos; O(T^2) per head through the closed form for one changed logit per row. */
void qk_fix_key(const LayerView *v, int kv_head, const int *positions, int n_positions, double *out);

/* The gradient of the job's metric number `metric` at the base run of noise sample s, every layer. */
void metric_backward(const Model *m, const PromptRuns *r, int s, int metric, RunCache *grads, MetricWork *w);

typedef struct Attributor Attributor;
Attributor *attrib_new(const Model *m, int max_T);
void attrib_free(Attributor *a);
/* Estimates of prompt r for every node of the plan at every position column and metric:
 * out[e][(n*S + j)*M + k] for each estimator e the job asks for (out[e] NULL for the others; NaN
 * past the prompt's end); each metric has its own backward passes.
 * seconds[e] is each estimator's compute time, cumulative: atp_qk includes atp's backward and
 * dot products, atp_star includes atp_qk's. */
void attrib_estimates(Attributor *a, const Job *job, const Plan *plan, const PromptRuns *r, float *out[N_ESTIMATES],
                      double seconds[N_ESTIMATES]);

/* Edge estimates of prompt r for every edge of the plan at every position column and metric
 * (docs/edges.md, "Estimates"): out[e][(k*S + j)*M + i] for each edge estimator e the job asks
 * for (out[e] NULL for the others; NaN past the prompt's end), the mean over noise samples of
 * sum over the column's rows of (u^S - u^B) . g_v, g_v = d metric / d x_v at the base run through
 * v's own norm and projection; eap_ig and eap_ig_act average g_v over job->ig_steps runs. */
void edge_estimates(const Model *m, const Job *job, const Plan *plan, const PromptRuns *r, float *out[N_EDGE_ESTIMATES]);

/* ---- bounding the false negatives left after verifying the top of a ranking ---------------------
 * (docs/methods.md, "Bounding what the ranking missed"). The unverified cells U are patched
 * jointly in K random subsets; I_k is the effect of subset k. For a cell n,
 *   estimate(n) = mean of I_k over subsets holding n - mean over subsets without it,
 *   se(n)       = sqrt(var_in / K_in + var_out / K_out)   (sample variances, n - 1),
 *   ucb(n)      = |estimate(n)| + z * se(n),  z = normal_upper_quantile(delta / (2 |U|)),
 * so that, if patch effects add up, every |c(n)| <= ucb(n) at once with probability about
 * 1 - delta (Bonferroni over U). If not, estimate(n) estimates n's marginal effect among a random
 * p-fraction of the others, which a sub-additive partner shrinks toward 0 (docs/methods.md). ucb
 * is +inf when a cell is in fewer than two subsets, or out of fewer than two. */
typedef struct {
    double estimate, se, ucb;
    int n_in; /* subsets holding the cell */
} CellBound;

/* x with P(Z > x) = tail for a standard normal Z, 0 < tail < 1 (to about 1e-12 relative). */
double normal_upper_quantile(double tail);

/* Subset k of prompt p (docs/methods.md): one uniform per unverified cell, in rank order, from
 * the stream (seed, p, k); in[u] = 1 when it is below inclusion. Any rank, or a Python reader,
 * draws the same subsets again from these numbers, so they are never stored or sent. */
void bound_draw_subset(uint64_t seed, int p, int k, double inclusion, int U, uint8_t *in);

/* Fills in[0..U) with subset k's membership (1 = the subset holds unverified cell u). */
typedef void (*SubsetDraw)(void *ctx, int k, int U, uint8_t *in);
/* subset_effect[k] = I_k. Each subset is drawn twice (for the means, then for the squared
 * deviations), one at a time: memory O(U), never a [K, U] mask. */
void bound_cells(const double *subset_effect, int K, int U, double z, SubsetDraw draw, void *ctx, CellBound *out);

/* How many of n ranked cells (order: key largest first) are verified for a budget of k, when the
 * k-th and (k+1)-th cells tie: never a choice among tied cells by the order a sort left them in
 * (docs/methods.md). verify_ties 0: only the cells ranked above the tie block (fewer than k, the
 * block left to the bound); 1: through the end of the block (more than k). *block = the size of
 * the block straddling the boundary, 0 when none does (then the answer is min(k, n)). */
int bound_verified_count(const double *key, const int *order, int n, int k, int verify_ties, int *block);

/* How many of the true top k of n cells (truth[i] = |exact effect|) a ranking by score (|estimate|)
 * finds within its first k (docs/methods.md, "Which estimator ranks"): the cells scoring above the
 * (k+1)-th, so that a score tie block straddling the k-th place counts none of its cells (the
 * ranking cannot say which to take, and the bound's default, --ties bound, takes none); where the
 * truth ties at its k-th value, any of the tied cells completes the top k. 0 < k <= n, no NaN;
 * order is scratch [n]. recall = found / k. */
int bound_top_k_found(const double *truth, const double *score, int n, int k, int *order);

#endif
