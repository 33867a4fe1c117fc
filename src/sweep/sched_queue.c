/* Rank 0's queue of pending units (sweep.h): which units a request gets. Pure bookkeeping, no
 * MPI, so bench/bench_sched.c can drive this very code for a thousand simulated ranks. Pending
 * units are kept per prompt in plan order; a chunk is a run of one prompt's pending units. */
#include <stdlib.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

void sched_queue_init(SchedQueue *q, const Plan *plan, const uint8_t *done, int n_ranks) {
    q->plan = plan;
    q->n_ranks = n_ranks;
    int P = 0;
    for (int u = 0; u < plan->n_units; u++)
        if (plan->units[u].prompt + 1 > P) P = plan->units[u].prompt + 1;
    q->n_prompts = P;
    q->remaining_cost = 0.0;
    q->pending = xmalloc(sizeof(int) * (size_t)(plan->n_units + 1));
    q->prompt_begin = xcalloc((size_t)P + 1, sizeof(int));
    q->prompt_cursor = xcalloc((size_t)P + 1, sizeof(int));
    q->prompt_end = xcalloc((size_t)P + 1, sizeof(int));
    int n = 0;
    for (int p = 0, u = 0; p < P; p++) { /* units are prompt-major in the plan */
        q->prompt_begin[p] = q->prompt_cursor[p] = n;
        for (; u < plan->n_units && plan->units[u].prompt == p; u++)
            if (!done[u]) {
                q->pending[n++] = u;
                q->remaining_cost += plan->units[u].cost;
            }
        q->prompt_end[p] = n;
    }
}

void sched_queue_free(SchedQueue *q) {
    free(q->pending);
    free(q->prompt_begin);
    free(q->prompt_cursor);
    free(q->prompt_end);
}

static int prompt_left(const SchedQueue *q, int p) { return q->prompt_end[p] - q->prompt_cursor[p]; }

/* The prompt to serve: the one the rank already holds, else one nobody has started, else the
 * one with the most units left; -1 when everything is handed out. */
static int choose_prompt(const SchedQueue *q, int current) {
    if (current >= 0 && current < q->n_prompts && prompt_left(q, current) > 0) return current;
    for (int p = 0; p < q->n_prompts; p++)
        if (q->prompt_cursor[p] == q->prompt_begin[p] && prompt_left(q, p) > 0) return p;
    int best = -1, most = 0;
    for (int p = 0; p < q->n_prompts; p++)
        if (prompt_left(q, p) > most) most = prompt_left(q, p), best = p;
    return best;
}

void sched_queue_take(SchedQueue *q, int current_prompt, int *first, int *count) {
    *first = *count = 0;
    int p = choose_prompt(q, current_prompt);
    if (p < 0) return;
    /* Guided: about 1/(2 ranks) of the remaining cost, at least one unit. */
    double target = q->remaining_cost / (2.0 * q->n_ranks), cost = 0.0;
    int c = q->prompt_cursor[p], n = 0;
    while (c + n < q->prompt_end[p] && (n == 0 || cost < target)) cost += q->plan->units[q->pending[c + n++]].cost;
    q->prompt_cursor[p] += n;
    q->remaining_cost -= cost;
    *first = c;
    *count = n;
}
