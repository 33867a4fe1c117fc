/* Running a job: the coordinator that hands work units to MPI ranks, and the driver each rank
 * runs (build a prompt's runs, compute its units, write them). */
#ifndef PATCHSWEEP_SWEEP_H
#define PATCHSWEEP_SWEEP_H

#include <mpi.h>
#include <stdint.h>
#include "patchsweep/plan.h"

/* ---- progress -------------------------------------------------------------------------------- */
typedef struct {
    double start, last_print;
    int total_units, done_units;
    double total_cost, done_cost, patches;
    int tty;
    int quiet;
    /* rank 0 of several: the coordinator's messages and CPU seconds; over every rank: the units
     * written, the seconds their writes took (summed, the slowest) and the ranks' seconds in all
     * (docs/sizing.md, "Many ranks") */
    long coordinator_messages, writes;
    double coordinator_seconds, write_seconds, write_max, rank_seconds;
} Progress;

void progress_init(Progress *p, const Plan *plan, const uint8_t *done, int quiet);
void progress_update(Progress *p, const Plan *plan, int unit, double patches);
void progress_end(Progress *p);

/* ---- scheduler -----------------------------------------------------------------------------
 * Rank 0 owns the queue and computes too: it answers requests whenever it calls sched_poll
 * (between engine batches) or sched_next. Units go out in chunks of one prompt, sized so the
 * remaining work shrinks evenly (guided scheduling), and a rank keeps getting units of the
 * prompt it is on while there are any, so its cached runs stay useful. */
typedef struct Scheduler Scheduler;

/* Rank 0's queue (src/sweep/sched_queue.c), without MPI: bench/bench_sched.c drives it for
 * simulated ranks. pending: the unit ids not done, grouped by prompt in plan order. */
typedef struct {
    const Plan *plan;
    int n_ranks, n_prompts;
    int *pending, *prompt_begin, *prompt_cursor, *prompt_end;
    double remaining_cost;
} SchedQueue;
void sched_queue_init(SchedQueue *q, const Plan *plan, const uint8_t *done, int n_ranks);
void sched_queue_free(SchedQueue *q);
/* The chunk for a rank holding current_prompt (-1: none): pending[*first .. *first + *count),
 * units of one prompt worth about 1/(2 n_ranks) of the remaining cost (at least one unit): the
 * rank's own prompt while it has units left, else a prompt nobody started, else the one with the
 * most left. *count = 0: everything is handed out. */
void sched_queue_take(SchedQueue *q, int current_prompt, int *first, int *count);

/* progress (rank 0, may be NULL) is updated as units finish anywhere. */
Scheduler *sched_new(const Plan *plan, const uint8_t *done, MPI_Comm comm, Progress *progress);
/* The next unit for this rank (-1: no work left). current_prompt is the prompt whose runs the
 * rank holds (-1: none). */
int sched_next(Scheduler *s, int current_prompt);
/* Reports a finished unit (counts toward progress). */
void sched_done(Scheduler *s, int unit, double patches);
/* Rank 0: answers pending requests; other ranks: does nothing. */
void sched_poll(Scheduler *s);
/* This rank cannot go on (it could not write a result): it takes no more units, and rank 0 hands
 * out no more to anyone, so every rank leaves its loop after the unit it is on. */
void sched_fail(Scheduler *s);
/* Rank 0: serves until every other rank has been told to stop. Then frees. */
void sched_finish(Scheduler *s);

/* ---- what every MPI command shares --------------------------------------------------------- */
/* Every rank returns the same status (the worst); the error line is printed once, by rank 0 if
 * it failed, else by a failing rank. Collective. */
int mpi_agree(int rc, MPI_Comm comm);

/* Point-to-point messages of any length. MPI counts are int, so a message of n elements (which
 * can pass 2^31 for a large model's cells) goes as consecutive pieces of at most `piece`
 * elements (PS_MPI_PIECE; the tests pass small ones), all with one tag; MPI keeps their order. */
#define PS_MPI_PIECE ((size_t)1 << 30)
void mpi_send_long(const void *buf, size_t n, MPI_Datatype type, int dest, int tag, MPI_Comm comm, size_t piece);
void mpi_recv_long(void *buf, size_t n, MPI_Datatype type, int source, int tag, MPI_Comm comm, size_t piece);

/* The model with its weights held once per node, in an MPI shared-memory window the node's
 * first rank fills. Collective. */
typedef struct {
    MPI_Comm node;
    MPI_Win window;
} SharedWeights;
int model_load_shared(Model *m, const Job *job, MPI_Comm comm, SharedWeights *sw);
void model_free_shared(Model *m, SharedWeights *sw);

/* ---- the driver ---------------------------------------------------------------------------- */
typedef struct {
    int naive;  /* full forward per patch (reference and benchmark baseline) */
    int quiet;  /* no progress output */
} RunOptions;

/* Runs (or resumes) a job on every rank of comm. Returns the exit status, the same on every rank. */
int sweep_run(const char *job_path, MPI_Comm comm, const RunOptions *opt);

#endif
