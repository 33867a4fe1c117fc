/* The MPI work coordinator (the queue itself: sched_queue.c). Messages (all to or from rank 0):
 *   TAG_REQUEST  worker -> 0: int current_prompt
 *   TAG_CHUNK    0 -> worker: int {first unit index into the pending list, count}; count 0 = stop
 *   TAG_DONE     worker -> 0: double {unit, patches} for progress
 *   TAG_FAIL     worker -> 0: int 0; the worker could not write its results and stops asking;
 *                rank 0 then hands out nothing more, so every rank ends its loop after the unit
 *                it is computing (finished units stay in the file) and they agree on the error
 * Which rank computes a unit never changes its values, only when they arrive. Rank 0 counts the
 * messages it handles and the seconds they take (Progress: the coordinator's share of the wall). */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

enum { TAG_REQUEST = 101, TAG_CHUNK = 102, TAG_DONE = 103, TAG_FAIL = 104 };

struct Scheduler {
    const Plan *plan;
    MPI_Comm comm;
    int rank, size;
    SchedQueue queue;       /* rank 0: the pending units (sched_queue.c); every rank: queue.pending
                             * holds its current chunk's unit ids */
    int stopped;            /* workers told to stop (or that stopped on their own) */
    int failed;             /* a rank failed: hand out nothing more */
    long messages;          /* rank 0: messages handled */
    double busy;            /* rank 0: CPU seconds in sched_poll, probes included */
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
    sched_queue_init(&s->queue, plan, done, s->size);
    return s;
}

/* Rank 0: the next chunk (a run of queue.pending indices) for a rank holding current_prompt. */
static void take_chunk(Scheduler *s, int current_prompt, int *first, int *count) {
    *first = *count = 0;
    if (!s->failed) sched_queue_take(&s->queue, current_prompt, first, count);
}

/* Rank 0: every message waiting. */
static void serve(Scheduler *s) {
    for (;;) {
        int flag;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, s->comm, &flag, &st);
        if (!flag) return;
        s->messages++;
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
            if (reply[1]) MPI_Send(s->queue.pending + reply[0], reply[1], MPI_INT, st.MPI_SOURCE, TAG_CHUNK, s->comm);
            else s->stopped++;
        } else if (st.MPI_TAG == TAG_FAIL) {
            int nothing;
            MPI_Recv(&nothing, 1, MPI_INT, st.MPI_SOURCE, TAG_FAIL, s->comm, MPI_STATUS_IGNORE);
            s->failed = 1;
            s->stopped++; /* that worker asks for nothing more */
        } else {
            s->messages--;
            return; /* not ours */
        }
    }
}

void sched_poll(Scheduler *s) {
    if (s->rank != 0) return;
    double t0 = thread_cpu_seconds();
    serve(s);
    s->busy += thread_cpu_seconds() - t0;
}

int sched_next(Scheduler *s, int current_prompt) {
    if (s->chunk_next < s->chunk_end) return s->queue.pending[s->chunk_next++];
    int first, count;
    if (s->rank == 0) {
        sched_poll(s);
        take_chunk(s, current_prompt, &first, &count);
        if (!count) return -1;
        s->chunk_next = first, s->chunk_end = first + count;
        return s->queue.pending[s->chunk_next++];
    }
    int reply[2];
    MPI_Send(&current_prompt, 1, MPI_INT, 0, TAG_REQUEST, s->comm);
    MPI_Recv(reply, 2, MPI_INT, 0, TAG_CHUNK, s->comm, MPI_STATUS_IGNORE);
    if (!reply[1]) return -1;
    MPI_Recv(s->queue.pending, reply[1], MPI_INT, 0, TAG_CHUNK, s->comm, MPI_STATUS_IGNORE);
    s->chunk_next = 0, s->chunk_end = reply[1];
    return s->queue.pending[s->chunk_next++];
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
    if (s->rank == 0 && s->progress && s->size > 1) {
        s->progress->coordinator_seconds = s->busy;
        s->progress->coordinator_messages = s->messages;
    }
    sched_queue_free(&s->queue);
    free(s);
}
