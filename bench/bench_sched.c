/* bench_sched: rank 0's share of a sweep on many ranks, simulated with the real queue. The
 * scheduler's hand-out (src/sweep/sched_queue.c: which units, how many) and the progress
 * bookkeeping (src/sweep/progress.c) run as they do in `patchsweep run`, timed on this machine;
 * the ranks, the units' durations and the messages are simulated:
 *   - a GPT-2-small sweep (bench_config) of 100 prompts of 64 tokens, as docs/sizing.md's table:
 *     every head's z at every position, or every MLP neuron at the last 5 positions;
 *   - a unit takes its planned FLOPs (plan.c's cost model) at RATE GFLOP/s, a rank that changes
 *     prompt first builds its runs (three forward passes);
 *   - rank 0 computes too, and serves messages only where `run` polls: between the engine batches
 *     of its own units (plan.batch_limit sequences each) and when it asks for its next chunk;
 *     once its share is done, as they arrive (sched_finish);
 *   - each message costs rank 0 MSG seconds (MPI's receive and reply; measure it on a real run
 *     with bench/bench_sched_mpi.py, which prints the coordinator line of `run`) plus the measured
 *     time of the real queue or progress call.
 * Reported per number of ranks: the coordinator's busy fraction (its message handling over the
 * makespan: the scale issue's target is < 1% at 1,000 ranks), how long a request waits for rank 0
 * (mean, max), the workers' time lost waiting for it (their waits over their time), and the
 * makespan against perfect balance (the work over the ranks; a sweep of few large units cannot
 * reach it: a unit goes whole to one rank).
 *
 * usage: bench_sched [msg_seconds=2e-5] [rate_gflops=50] [ranks ...]   (default ranks 64 256 1000 4000) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/plan.h"
#include "patchsweep/sweep.h"
#include "bench_common.h"

typedef struct {
    double at;      /* when it reaches rank 0 */
    int rank, unit; /* unit -1: a request */
} Message;

/* A worker's state: its chunk of pending[] indices and the prompt it holds. */
typedef struct {
    int next, end, prompt;
    double free_at;  /* when it finishes its current unit (or asked: when it asked) */
    int waiting, stopped;
} Worker;

typedef struct {
    const Plan *plan;
    double rate, msg, forward;  /* FLOP/s; seconds per message; seconds of one prompt's runs */
    SchedQueue queue;
    Progress progress;
    Worker *w;
    int n;
    Message *inbox;    /* a min-heap on at */
    int n_inbox, cap_inbox;
    double busy, waited, longest_wait;
    long requests;
} Sim;

static void push(Sim *s, Message m) {
    if (s->n_inbox == s->cap_inbox) s->inbox = xrealloc(s->inbox, sizeof(Message) * (size_t)(s->cap_inbox *= 2));
    int i = s->n_inbox++;
    for (; i > 0 && s->inbox[(i - 1) / 2].at > m.at; i = (i - 1) / 2) s->inbox[i] = s->inbox[(i - 1) / 2];
    s->inbox[i] = m;
}

static Message pop(Sim *s) {
    Message top = s->inbox[0], last = s->inbox[--s->n_inbox];
    int i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= s->n_inbox) break;
        if (c + 1 < s->n_inbox && s->inbox[c + 1].at < s->inbox[c].at) c++;
        if (s->inbox[c].at >= last.at) break;
        s->inbox[i] = s->inbox[c], i = c;
    }
    s->inbox[i] = last;
    return top;
}

static double unit_seconds(const Sim *s, int u, int *prompt) {
    const Unit *unit = &s->plan->units[u];
    double t = unit->cost / s->rate;
    if (unit->prompt != *prompt) t += s->forward, *prompt = unit->prompt;
    return t;
}

/* Worker r computes its chunk from time t, one unit after another: a DONE message as each ends,
 * and its request for more after the last. */
static void start_chunk(Sim *s, int r, double t) {
    Worker *w = &s->w[r];
    for (; w->next < w->end; w->next++) {
        int u = s->queue.pending[w->next];
        t += unit_seconds(s, u, &w->prompt);
        push(s, (Message){t, r, u});
    }
    push(s, (Message){t, r, -1});
    w->free_at = t;
}

/* Rank 0 handles one message at time t; returns the time it is done. */
static double serve(Sim *s, Message m, double t) {
    double t0 = now_seconds();
    if (m.unit >= 0) {
        progress_update(&s->progress, s->plan, m.unit, 0.0);
    } else {
        Worker *w = &s->w[m.rank];
        int first, count;
        sched_queue_take(&s->queue, w->prompt, &first, &count);
        s->requests++;
        double wait = t - m.at;
        s->waited += wait, s->longest_wait = fmax(s->longest_wait, wait);
        if (count) {
            w->next = first, w->end = first + count;
        } else {
            w->stopped = 1;
        }
    }
    double cost = s->msg + (now_seconds() - t0);
    s->busy += cost;
    if (m.unit < 0 && !s->w[m.rank].stopped) start_chunk(s, m.rank, t + cost);
    return t + cost;
}

/* Everything that reached rank 0 by time t, in arrival order (and what arrives meanwhile). */
static double serve_until(Sim *s, double t) {
    while (s->n_inbox && s->inbox[0].at <= t) t = serve(s, pop(s), t);
    return t;
}

/* The whole run on n ranks; returns the makespan. */
static double simulate(Sim *s, int n) {
    s->n = n;
    s->w = xcalloc((size_t)n, sizeof(Worker));
    s->n_inbox = 0, s->cap_inbox = 1024, s->inbox = xmalloc(sizeof(Message) * 1024);
    s->busy = s->waited = s->longest_wait = 0.0, s->requests = 0;
    uint8_t *done = xcalloc((size_t)s->plan->n_units + 1, 1);
    sched_queue_init(&s->queue, s->plan, done, n);
    progress_init(&s->progress, s->plan, done, 1);
    for (int r = 1; r < n; r++) s->w[r].prompt = -1, push(s, (Message){0.0, r, -1}); /* every worker asks at once */
    double t = 0.0, end = 0.0;
    int prompt = -1;
    for (;;) { /* rank 0: ask itself for a chunk, compute it batch by batch, serving between batches */
        t = serve_until(s, t);
        int first, count;
        sched_queue_take(&s->queue, prompt, &first, &count);
        if (!count) break;
        for (int i = first; i < first + count; i++) {
            int u = s->queue.pending[i];
            const Unit *unit = &s->plan->units[u];
            int had = prompt;
            double seconds = unit_seconds(s, u, &prompt), runs = had == prompt ? 0.0 : s->forward;
            t += runs; /* building a prompt's runs: no poll */
            long patches = (long)unit->n_nodes * s->plan->n_positions;
            int batches = unit->kind == UNIT_EXACT ? (int)((patches + s->plan->batch_limit - 1) / s->plan->batch_limit) : 1;
            for (int b = 0; b < batches; b++) t = serve_until(s, t + (seconds - runs) / batches);
            progress_update(&s->progress, s->plan, u, 0.0);
        }
    }
    /* sched_finish: serve as messages arrive until every worker has been told to stop */
    while (s->n_inbox) {
        Message m = pop(s);
        t = serve(s, m, fmax(t, m.at));
    }
    for (int r = 1; r < n; r++) end = fmax(end, s->w[r].free_at);
    end = fmax(end, t);
    sched_queue_free(&s->queue);
    free(s->w), free(s->inbox), free(done);
    return end;
}

static void run_job(const char *label, const char *keys, double msg, double rate, const int *ranks, int n_ranks) {
    ModelConfig c = bench_config();
    char *text = bench_job_text(c.vocab, 100, 64, keys);
    Job job;
    if (job_parse_text(&job, text, "bench_sched.json")) {
        fprintf(stderr, "bench_sched: %s\n", ps_error());
        exit(1);
    }
    Plan plan;
    plan_build(&plan, &job, &c);
    double work = 0.0;
    for (int u = 0; u < plan.n_units; u++) work += plan.units[u].cost;
    Sim s = {.plan = &plan, .rate = rate, .msg = msg, .forward = 3.0 * forward_flops(&c, 64) / rate};
    printf("%s: %d units, %.3g FLOPs, %.0f core-seconds at %.0f GFLOP/s\n", label, plan.n_units, work, work / rate,
           rate / 1e9);
    printf("  %6s %11s %11s %13s %9s %11s %11s %13s\n", "ranks", "makespan", "ideal", "rank 0 busy", "requests",
           "wait mean", "wait max", "lost waiting");
    for (int i = 0; i < n_ranks; i++) {
        double makespan = simulate(&s, ranks[i]), ideal = work / rate / ranks[i];
        printf("  %6d %10.1fs %10.1fs %12.3f%% %9ld %9.2fms %9.1fms %12.3f%%\n", ranks[i], makespan, ideal,
               100.0 * s.busy / makespan, s.requests, 1e3 * s.waited / (s.requests ? s.requests : 1), 1e3 * s.longest_wait,
               100.0 * s.waited / ((ranks[i] - 1) * makespan));
        printf("coordinator_busy ranks %d fraction %.6f\n", ranks[i], s.busy / makespan);
    }
    plan_free(&plan);
    job_free(&job);
    free(text);
}

int main(int argc, char **argv) {
    double msg = argc > 1 ? atof(argv[1]) : 2e-5, rate = (argc > 2 ? atof(argv[2]) : 50.0) * 1e9;
    int ranks[16] = {64, 256, 1000, 4000}, n_ranks = 4;
    if (argc > 3) {
        n_ranks = 0;
        for (int i = 3; i < argc && n_ranks < 16; i++) ranks[n_ranks++] = atoi(argv[i]);
    }
    printf("bench_sched: GPT-2-small shape, 100 prompts x 64 tokens, %.0f us per message, %.0f GFLOP/s per rank\n",
           msg * 1e6, rate / 1e9);
    run_job("z, every head x every position", "\"nodes\": [\"z\"]", msg, rate, ranks, n_ranks);
    run_job("mlp_post, every neuron x the last 5 positions", "\"nodes\": [\"mlp_post\"], \"positions\": [-5, -4, -3, -2, -1]",
            msg, rate, ranks, n_ranks);
    return 0;
}
