/* Progress on stderr (rank 0): units done / total, patches per second, ETA. A redrawn bar on
 * a terminal; on anything else (a Slurm log) a plain line every 10 seconds. The ETA is
 * weighted by the units' estimated costs, which track their real times closely. */
#include <stdio.h>
#include <unistd.h>
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

void progress_init(Progress *p, const Plan *plan, const uint8_t *done, int quiet) {
    p->start = p->last_print = now_seconds();
    p->total_units = plan->n_units;
    p->done_units = 0;
    p->total_cost = p->done_cost = p->patches = 0.0;
    for (int u = 0; u < plan->n_units; u++) {
        p->total_cost += plan->units[u].cost;
        if (done[u]) p->done_units++, p->done_cost += plan->units[u].cost;
    }
    p->coordinator_messages = 0;
    p->coordinator_seconds = 0.0;
    p->writes = 0;
    p->write_seconds = p->write_max = p->rank_seconds = 0.0;
    p->tty = isatty(2);
    p->quiet = quiet;
    p->total_cost -= p->done_cost; /* from here on, count only this run's work */
    p->done_cost = 0.0;
}

static void print_line(Progress *p, int final) {
    double elapsed = now_seconds() - p->start;
    double rate = elapsed > 0 ? p->patches / elapsed : 0.0;
    double frac = p->total_cost > 0 ? p->done_cost / p->total_cost : 1.0;
    double eta = frac > 0 ? elapsed * (1.0 - frac) / frac : 0.0;
    if (p->tty) {
        char bar[31];
        int filled = (int)(frac * 30 + 0.5);
        for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r[%s] %d/%d units  %.0f patches/s  ETA %.0fs   %s", bar, p->done_units, p->total_units,
                rate, eta, final ? "\n" : "");
    } else {
        fprintf(stderr, "progress: %d/%d units, %.0f patches/s, elapsed %.0fs, ETA %.0fs\n", p->done_units,
                p->total_units, rate, elapsed, eta);
    }
    fflush(stderr);
}

void progress_update(Progress *p, const Plan *plan, int unit, double patches) {
    p->done_units++;
    p->done_cost += plan->units[unit].cost;
    p->patches += patches;
    double now = now_seconds();
    if (p->quiet || now - p->last_print < (p->tty ? 0.2 : 10.0)) return;
    p->last_print = now;
    print_line(p, 0);
}

void progress_end(Progress *p) {
    if (p->quiet) return;
    print_line(p, 1);
    double wall = now_seconds() - p->start;
    if (p->coordinator_messages > 0)
        fprintf(stderr, "coordinator (rank 0): %ld messages, %.3f CPU s (%.1f us each), %.2f%% of the run's %.1f s\n",
                p->coordinator_messages, p->coordinator_seconds, 1e6 * p->coordinator_seconds / p->coordinator_messages,
                100.0 * p->coordinator_seconds / wall, wall);
    if (p->writes > 0)
        fprintf(stderr, "writes: %ld units, %.1f ms each on average, the slowest %.1f ms; %.2f%% of the ranks' time\n",
                p->writes, 1e3 * p->write_seconds / p->writes, 1e3 * p->write_max, 100.0 * p->write_seconds / p->rank_seconds);
}
