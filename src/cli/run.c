/* patchsweep run JOB.json [--naive] [--quiet]: runs or resumes a job on every MPI rank.
 * patchsweep plan JOB.json: what a job would compute, without computing it. */
#include <mpi.h>
#include <stdio.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/sweep.h"

int cmd_run(int argc, char **argv) {
    const char *job = NULL;
    RunOptions opt = {0, 0};
    int rc = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (strcmp(argv[i], "--naive") == 0) opt.naive = 1;
        else if (strcmp(argv[i], "--quiet") == 0) opt.quiet = 1;
        else if (argv[i][0] != '-' && !job) job = argv[i];
        else rc = ps_fail(PS_EUSER, "run: unexpected argument \"%s\"; %s", argv[i], command_usage("run"));
    }
    if (!rc && !job) rc = ps_fail(PS_EUSER, "run: %s", command_usage("run"));
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rc) {
        if (rank == 0) report_error(rc);
    } else {
        rc = sweep_run(job, MPI_COMM_WORLD, &opt);
    }
    MPI_Finalize();
    return rc;
}
