/* The MPI work coordinator. Messages (all to or from rank 0):
 *   TAG_REQUEST  worker -> 0: int current_prompt
 *   TAG_CHUNK    0 -> worker: int {first unit index into the pending list, count}; count 0 = stop
 *   TAG_DONE     worker -> 0: double {unit, patches} for progress
 *   TAG_FAIL     worker -> 0: int 0; the worker could not write its results and stops asking;
 *                rank 0 then hands out nothing more, so every rank ends its loop after the unit
 *                it is computing (finished units stay in the file) and they agree on the error
 * Pending units are kept per prompt in plan order; a chunk is a run of one prompt's pending
 * units. Which rank computes a unit never changes its values, only when they arrive. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

enum { TAG_REQUEST = 101, TAG_CHUNK = 102, TAG_DONE = 103, TAG_FAIL = 104 };

struct Scheduler {
    const Plan *plan;
    MPI_Comm comm;
    int rank, size;
    /* rank 0: per prompt, the pending unit ids and a cursor */
    int *pending;           /* unit ids, grouped by prompt */
    int *prompt_begin, *prompt_cursor, *prompt_end;
    int n_prompts;
    double remaining_cost;
    int stopped;            /* workers told to stop (or that stopped on their own) */
    int failed;             /* a rank failed: hand out nothing more */
    Progress *progress;
    /* every rank: its current chunk */
    int chunk_next, chunk_end;
};

Scheduler *sched_new(const Plan *plan, const uint8_t *done, MPI_Comm comm, Progress *progress) {
    Scheduler *s = xcalloc(1, sizeof *s);
    s->progress = progress;
    s->plan = plan;
    s->comm = comm;
    MPI_Comm_rank(comm, &s->rank);
    MPI_Comm_size(comm, &s->size);
    int P = 0;
    for (int u = 0; u < plan->n_units; u++)
        if (plan->units[u].prompt + 1 > P) P = plan->units[u].prompt + 1;
    s->n_prompts = P;
    s->pending = xmalloc(sizeof(int) * (size_t)(plan->n_units + 1));
    s->prompt_begin = xcalloc((size_t)P + 1, sizeof(int));
    s->prompt_cursor = xcalloc((size_t)P + 1, sizeof(int));
    s->prompt_end = xcalloc((size_t)P + 1, sizeof(int));
    int n = 0;
    for (int p = 0, u = 0; p < P; p++) { /* units are prompt-major in the plan */
        s->prompt_begin[p] = s->prompt_cursor[p] = n;
        for (; u < plan->n_units && plan->units[u].prompt == p; u++)
            if (!done[u]) {
                s->pending[n++] = u;
                s->remaining_cost += plan->units[u].cost;
            }
        s->prompt_end[p] = n;
    }
    return s;
}

static int prompt_left(const Scheduler *s, int p) { return s->prompt_end[p] - s->prompt_cursor[p]; }

/* The prompt to serve: the one the rank already holds, else one nobody has started, else the
 * one with the most units left; -1 when everything is handed out. */
static int choose_prompt(const Scheduler *s, int current) {
    if (current >= 0 && current < s->n_prompts && prompt_left(s, current) > 0) return current;
    for (int p = 0; p < s->n_prompts; p++)
        if (s->prompt_cursor[p] == s->prompt_begin[p] && prompt_left(s, p) > 0) return p;
    int best = -1, most = 0;
    for (int p = 0; p < s->n_prompts; p++)
        if (prompt_left(s, p) > most) most = prompt_left(s, p), best = p;
    return best;
}

/* Rank 0: the next chunk (a run of pending[] indices) for a rank holding current_prompt. */
static void take_chunk(Scheduler *s, int current_prompt, int *first, int *count) {
    *first = *count = 0;
    int p = s->failed ? -1 : choose_prompt(s, current_prompt);
    if (p < 0) return;
    /* Guided: about 1/(2 ranks) of the remaining cost, at least one unit. */
    double target = s->remaining_cost / (2.0 * s->size), cost = 0.0;
    int c = s->prompt_cursor[p], n = 0;
    while (c + n < s->prompt_end[p] && (n == 0 || cost < target)) cost += s->plan->units[s->pending[c + n++]].cost;
    s->prompt_cursor[p] += n;
    s->remaining_cost -= cost;
    *first = c;
    *count = n;
}

void sched_poll(Scheduler *s) {
    if (s->rank != 0) return;
    for (;;) {
        int flag;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &flag, &st);
        if (!flag) return;
        if (st.MPI_TAG == TAG_DONE) {
            double msg[2];
            MPI_Recv(msg, 2, MPI_DOUBLE, st.MPI_SOURCE, TAG_DONE, s->comm, MPI_STATUS_IGNORE);
            if (s->progress) progress_update(s->progress, s->plan, (int)msg[0], msg[1]);
        } else if (st.MPI_TAG == TAG_REQUEST) {
            int current, reply[2];
            MPI_Recv(&current, 1, MPI_INT, st.MPI_SOURCE, TAG_REQUEST, s->comm, MPI_STATUS_IGNORE);
            take_chunk(s, current, &reply[0], &reply[1]);
            /* the worker needs unit ids: send them after the header */
            MPI_Send(reply, 2, MPI_INT, st.MPI_SOURCE, TAG_CHUNK, s->comm);
            if (reply[1]) MPI_Send(s->pending + reply[0], reply[1], MPI_INT, st.MPI_SOURCE, TAG_CHUNK, s->comm);
            else s->stopped++;
        } else if (st.MPI_TAG == TAG_FAIL) {
            int nothing;
            MPI_Recv(&nothing, 1, MPI_INT, st.MPI_SOURCE, TAG_FAIL, s->comm, MPI_STATUS_IGNORE);
            s->failed = 1;
            s->stopped++; /* that worker asks for nothing more */
        } else {
            return; /* not ours */
        }
    }
}

int sched_next(Scheduler *s, int current_prompt) {
    if (s->chunk_next < s->chunk_end) return s->pending[s->chunk_next++];
    int first, count;
    if (s->rank == 0) {
        sched_poll(s);
        take_chunk(s, current_prompt, &first, &count);
        if (!count) return -1;
        s->chunk_next = first, s->chunk_end = first + count;
        return s->pending[s->chunk_next++];
    }
    int reply[2];
    MPI_Send(&current_prompt, 1, MPI_INT, 0, TAG_REQUEST, s->comm);
    MPI_Recv(reply, 2, MPI_INT, 0, TAG_CHUNK, s->comm, MPI_STATUS_IGNORE);
    if (!reply[1]) return -1;
    MPI_Recv(s->pending, reply[1], MPI_INT, 0, TAG_CHUNK, s->comm, MPI_STATUS_IGNORE);
    s->chunk_next = 0, s->chunk_end = reply[1];
    return s->pending[s->chunk_next++];
}

void sched_done(Scheduler *s, int unit, double patches) {
    if (s->rank == 0) {
        if (s->progress) progress_update(s->progress, s->plan, unit, patches);
        return;
    }
    double msg[2] = {unit, patches};
    MPI_Send(msg, 2, MPI_DOUBLE, 0, TAG_DONE, s->comm);
}

void sched_fail(Scheduler *s) {
    s->chunk_next = s->chunk_end; /* drop the rest of this rank's chunk */
    if (s->rank == 0) {
        s->failed = 1;
        return;
    }
    int nothing = 0;
    MPI_Send(&nothing, 1, MPI_INT, 0, TAG_FAIL, s->comm);
}

void sched_finish(Scheduler *s) {
    if (s->rank == 0)
        while (s->stopped < s->size - 1) {
            MPI_Status st;
            MPI_Probe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &st);
            sched_poll(s);
        }
    free(s->pending);
    free(s->prompt_begin);
    free(s->prompt_cursor);
    free(s->prompt_end);
    free(s);
}
