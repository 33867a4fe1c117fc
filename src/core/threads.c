/* Threads per rank (PATCHSWEEP_THREADS): a fixed pool that runs the tasks of one call side by
 * side. Callers split work so that each output element is computed by exactly one task, in the
 * same arithmetic as without threads (never a reduction across tasks): the thread count changes
 * the speed and nothing else.
 *
 * The calling thread runs task 0 itself; the workers wait on a condition variable between
 * calls, so a rank with one thread (the default) has no pool at all. */
#include <pthread.h>
#include <stdlib.h>
#include "patchsweep/core.h"

enum { MAX_THREADS = 256 };

static struct {
    int n;                     /* threads, the caller included */
    pthread_t workers[MAX_THREADS];
    pthread_mutex_t lock;
    pthread_cond_t start, finished;
    unsigned long generation;  /* bumped per call: a worker runs each generation once */
    unsigned long created_at;  /* the generation when the workers were started: none runs it */
    int pending;               /* workers still running the current call */
    void (*task)(void *ctx, int index, int count);
    void *ctx;
} pool = {.n = 1, .lock = PTHREAD_MUTEX_INITIALIZER, .start = PTHREAD_COND_INITIALIZER,
          .finished = PTHREAD_COND_INITIALIZER};

/* Set while a thread runs a task: a product or attention called from inside a task (attention
 * heads split over threads run their own small products) runs on that thread alone. */
static _Thread_local int in_task;

static void *worker(void *arg) {
    in_task = 1;
    int index = (int)(size_t)arg;
    pthread_mutex_lock(&pool.lock);
    /* not 0: after a restart the counter has moved on, and a worker that took the old value for
     * a new call would run a stopped pool's task (or none) and the caller would wait forever */
    unsigned long seen = pool.created_at;
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.start, &pool.lock);
        seen = pool.generation;
        if (!pool.task) break; /* threads_stop */
        void (*task)(void *, int, int) = pool.task;
        void *ctx = pool.ctx;
        pthread_mutex_unlock(&pool.lock);
        task(ctx, index, pool.n);
        pthread_mutex_lock(&pool.lock);
        if (--pool.pending == 0) pthread_cond_signal(&pool.finished);
    }
    pthread_mutex_unlock(&pool.lock);
    return NULL;
}

int threads_start(int n) {
    threads_stop();
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pool.created_at = pool.generation; /* no call runs until every worker is started */
    for (int i = 1; i < n; i++)
        if (pthread_create(&pool.workers[i], NULL, worker, (void *)(size_t)i) != 0) {
            pool.n = i; /* the ones started are stopped; the rank goes on with fewer */
            threads_stop();
            return ps_fail(PS_EUSER, "cannot start %d threads (only %d): lower PATCHSWEEP_THREADS", n, i);
        }
    pool.n = n;
    return PS_OK;
}

void threads_stop(void) {
    if (pool.n <= 1) return;
    pthread_mutex_lock(&pool.lock);
    pool.task = NULL;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 1; i < pool.n; i++) pthread_join(pool.workers[i], NULL);
    pool.n = 1;
}

int threads_count(void) { return in_task ? 1 : pool.n; }

void threads_run(void (*task)(void *ctx, int index, int count), void *ctx) {
    if (threads_count() <= 1) {
        task(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    pool.task = task, pool.ctx = ctx, pool.pending = pool.n - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.start);
    pthread_mutex_unlock(&pool.lock);
    in_task = 1;
    task(ctx, 0, pool.n);
    in_task = 0;
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) pthread_cond_wait(&pool.finished, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
}

typedef struct {
    void (*range)(void *ctx, long lo, long hi);
    void *ctx;
    long n, grain;
} RangeJob;

static void range_task(void *ctx, int index, int count) {
    const RangeJob *j = ctx;
    long blocks = (j->n + j->grain - 1) / j->grain;
    long lo = blocks * index / count * j->grain, hi = blocks * (index + 1) / count * j->grain;
    if (hi > j->n) hi = j->n;
    if (lo < hi) j->range(j->ctx, lo, hi);
}

void threads_for(long n, long grain, long min_n, void (*range)(void *ctx, long lo, long hi), void *ctx) {
    RangeJob job = {range, ctx, n, grain < 1 ? 1 : grain};
    if (n >= min_n && threads_count() > 1) threads_run(range_task, &job);
    else if (n > 0) range(ctx, 0, n);
}
