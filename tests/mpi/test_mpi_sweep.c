/* MPI unit tests (run under mpiexec with 3 ranks): the coordinator hands out every pending
 * unit exactly once and keeps ranks on one prompt per chunk; the store takes independent writes
 * from every rank into one file.
 *
 * cmocka under MPI: an assertion that fails on one rank only would leave the others waiting in
 * a collective until the ctest timeout. So every check is first combined over all ranks
 * (MPI_Allreduce) and asserted on the combined value, which every rank sees alike. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "patchsweep/core.h"
#include "patchsweep/store.h"
#include "patchsweep/sweep.h"
#include "../unit/test_support.h"

static int all_ranks(int ok) {
    int all;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
    return all;
}

/* A plan of P prompts with n units each, costs varying by unit. */
static void fake_plan(Plan *pl, int P, int n) {
    memset(pl, 0, sizeof *pl);
    pl->n_units = P * n;
    pl->units = xcalloc((size_t)pl->n_units, sizeof(Unit));
    for (int u = 0; u < pl->n_units; u++) pl->units[u] = (Unit){UNIT_EXACT, u / n, 0, 1, 1.0 + (u % 7)};
}

static void test_every_unit_once(void **state) {
    (void)state;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    Plan pl;
    fake_plan(&pl, 9, 40);
    uint8_t *done = xcalloc((size_t)pl.n_units, 1);
    for (int u = 0; u < pl.n_units; u += 5) done[u] = 1; /* already done: must not be handed out */
    int *got = xcalloc((size_t)pl.n_units, sizeof(int)), *total = xcalloc((size_t)pl.n_units, sizeof(int));
    Scheduler *s = sched_new(&pl, done, MPI_COMM_WORLD, NULL);
    int current = -1, switches = 0, mine = 0;
    for (int u; (u = sched_next(s, current)) >= 0;) {
        got[u]++;
        mine++;
        if (pl.units[u].prompt != current) switches++;
        current = pl.units[u].prompt;
        usleep(200); /* work, so that every rank gets some */
        sched_done(s, u, 1.0);
    }
    sched_finish(s);
    MPI_Allreduce(got, total, pl.n_units, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    int ok = 1;
    for (int u = 0; u < pl.n_units; u++) ok &= total[u] == (done[u] ? 0 : 1);
    int all_got = all_ranks(ok), took_some = all_ranks(mine > 0);
    /* Prompt affinity: a rank changes prompts far less often than it takes units. */
    int sum_switches, sum_units;
    MPI_Allreduce(&switches, &sum_switches, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(&mine, &sum_units, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (rank == 0) printf("  %d units over %d ranks, %d prompt switches\n", sum_units, size, sum_switches);
    free(got), free(total), free(done), free(pl.units);
    assert_true(all_got);
    assert_true(took_some);
    assert_true(sum_switches <= sum_units / 4);
}

/* Every rank writes its own units of a real results file; the file then holds all of them. */
static void test_store_independent_writes(void **state) {
    (void)state;
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    char dir[256] = "/tmp/ps_mpi_XXXXXX";
    if (rank == 0 && !mkdtemp(dir)) dir[0] = 0;
    MPI_Bcast(dir, sizeof dir, MPI_CHAR, 0, MPI_COMM_WORLD);
    char text[1024];
    snprintf(text, sizeof text,
             "{\"model\": \"%s\", \"output\": \"%s/out.h5\", \"nodes\": [\"z\", \"mlp_out\"], \"prompts\": ["
             "{\"clean\": [1, 2, 3], \"corrupt\": [1, 4, 3], \"answer\": 3, \"wrong\": 4},"
             "{\"clean\": [5, 6], \"corrupt\": [7, 6], \"answer\": 3, \"wrong\": 4}]}",
             fixture("models/gpt2-tiny"), dir);
    Job job;
    Model m;
    int rc = job_parse_text(&job, text, "mpi.json") || model_load(&m, job.model_dir);
    assert_true(all_ranks(rc == 0));
    Plan plan;
    plan_build(&plan, &job, &m.cfg);
    Store st;
    int resumed;
    rc = store_open(&st, &job, &plan, &m, 42, MPI_COMM_WORLD, &resumed);
    assert_true(all_ranks(rc == 0 && !resumed));
    float *values = alloc_floats((size_t)plan.n_nodes * plan.n_positions);
    for (int u = rank; u < plan.n_units; u += size) { /* round-robin: every rank writes */
        for (int i = 0; i < plan.units[u].n_nodes * plan.n_positions; i++) values[i] = (float)(1000 * u + i);
        const float *v[1 + N_ESTIMATES] = {values, NULL, NULL, NULL};
        const double base = 1.0, source = 2.0;
        rc |= store_write_unit(&st, &plan, u, v, &base, &source, 0.5, NULL, rank);
    }
    assert_true(all_ranks(rc == 0));
    rc = store_finish(&st, 1, size, 0.0);
    store_close(&st);
    assert_true(all_ranks(rc == 0));
    /* Reopen (same job: resumed) and check every unit on every rank. */
    rc = store_open(&st, &job, &plan, &m, 42, MPI_COMM_WORLD, &resumed);
    uint8_t *done = xcalloc((size_t)plan.n_units, 1);
    int ok = rc == 0 && resumed && store_read_done(&st, done) == 0;
    float *row = alloc_floats((size_t)plan.n_positions);
    for (int u = 0; ok && u < plan.n_units; u++) {
        const Unit *unit = &plan.units[u];
        ok &= done[u] == 1;
        hsize_t start[4] = {(hsize_t)unit->prompt, (hsize_t)unit->node0, 0, 0}, count[4] = {1, 1, (hsize_t)plan.n_positions, 1};
        hid_t fs = H5Dget_space(st.exact), ms = H5Screate_simple(4, count, NULL);
        H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        ok &= H5Dread(st.exact, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, row) >= 0;
        H5Sclose(ms), H5Sclose(fs);
        for (int j = 0; j < plan.n_positions; j++) ok &= row[j] == (float)(1000 * u + j);
    }
    store_close(&st);
    int all_ok = all_ranks(ok);
    if (rank == 0) {
        char path[512];
        snprintf(path, sizeof path, "%s/out.h5", dir);
        remove(path);
        rmdir(dir);
    }
    free(values), free(done), free(row);
    plan_free(&plan);
    job_free(&job);
    model_free(&m);
    assert_true(all_ok);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) setenv("CMOCKA_MESSAGE_OUTPUT", "TAP", 1); /* one readable report, from rank 0 */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_unit_once),
        cmocka_unit_test(test_store_independent_writes),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    MPI_Finalize();
    return failed;
}
