/* patchsweep: exact activation patching sweeps with gradient estimates beside them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

static void print_usage(FILE *out) {
    fprintf(out, "usage: patchsweep <command> [options]   (patchsweep help COMMAND, or COMMAND --help)\n\ncommands:\n");
    for (int i = 0; i < n_commands; i++) fprintf(out, "  %s\n      %s\n", commands[i].usage, commands[i].summary);
    fprintf(out, "\nenvironment: PATCHSWEEP_ISA=generic|avx2|avx512|neon (kernel family), PATCHSWEEP_BATCH=N (engine batch),\n             PATCHSWEEP_THREADS=N (threads per rank; or --threads N after any command)\n");
}

static int print_command_help(const char *name) {
    const Command *c = command_find(name);
    if (!c) return report_error(ps_fail(PS_EUSER, "help: unknown command \"%s\" (patchsweep help lists them)", name));
    printf("usage: %s\n  %s\n", c->usage, c->summary);
    return 0;
}

/* `--threads N`, accepted by every command (anywhere after the command's name): taken out of
 * argv and given to the thread pool as PATCHSWEEP_THREADS would be; the option wins over the
 * environment. */
static int take_threads_option(int *argc, char **argv) {
    for (int i = 2; i < *argc; i++) {
        if (strcmp(argv[i], "--threads") != 0) continue;
        if (i + 1 >= *argc) return ps_fail(PS_EUSER, "--threads: expected an integer from 1 to 256 after it");
        char *end;
        errno = 0;
        long v = strtol(argv[i + 1], &end, 10);
        if (end == argv[i + 1] || *end || errno || v < 1 || v > 256)
            return ps_fail(PS_EUSER, "--threads: expected an integer from 1 to 256, not \"%s\"", argv[i + 1]);
        setenv("PATCHSWEEP_THREADS", argv[i + 1], 1);
        for (int j = i; j + 2 <= *argc; j++) argv[j] = argv[j + 2]; /* argv[argc] (NULL) moves too */
        *argc -= 2;
        i--;
    }
    return PS_OK;
}

/* A directory of this process's own for Open MPI's session files (see main), removed at exit. */
static char session_base[4096];

static void remove_session_base(void) { rmdir(session_base); }

static int own_session_directory(void) {
    const char *tmp = getenv("TMPDIR");
    int n = snprintf(session_base, sizeof session_base, "%s/patchsweep-mpi-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof session_base || !mkdtemp(session_base)) return PS_EUSER; /* then the default */
    setenv("OMPI_MCA_orte_tmpdir_base", session_base, 1);
    atexit(remove_session_base);
    return PS_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_usage(stderr);
        return PS_EUSER;
    }
    if (is_help_flag(argv[1]) || strcmp(argv[1], "help") == 0) {
        if (argc > 2) return print_command_help(argv[2]);
        print_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("patchsweep %s\n", PATCHSWEEP_VERSION);
        return 0;
    }
    const Command *c = command_find(argv[1]);
    if (!c) return report_error(ps_fail(PS_EUSER, "unknown command \"%s\" (patchsweep help lists them)", argv[1]));
    if (argc > 2 && is_help_flag(argv[2])) return print_command_help(argv[1]);
    /* patchsweep never uses MPI shared file pointers, yet Open MPI 4.1 sets one up at every
     * MPI_File_open. Two of its components break runs: "lockedfile" formats <file>.lock into a
     * fixed buffer and aborts on paths over ~232 characters; "sm" maps a file in the job's session
     * directory, which isolated singletons (below) all share (/tmp/ompi.HOST.UID/jf.0): one run's exit
     * can remove another's. Leave both out (unless the user chose components); "individual"
     * remains. MCA settings are read from the environment at MPI_Init. */
    setenv("OMPI_MCA_sharedfp", "^lockedfile,sm", 0);
    /* Started without mpirun/srun, Open MPI 4.1's singleton MPI_Init forks a daemon and spends
     * ~2.5 s on it (measured here), which a single-rank run never needs: it spawns no
     * processes. Isolated singletons all take job family 0, so concurrent ones would share one
     * session directory and race on creating and removing it (MPI_Init failed so in CI): each
     * gets its own base directory, which Open MPI empties at MPI_Finalize and we remove at exit.
     * Under a launcher (its rank variables are set) nothing changes. */
    if (!getenv("OMPI_COMM_WORLD_SIZE") && !getenv("PMIX_RANK") && !getenv("PMI_RANK") &&
        !getenv("OMPI_MCA_orte_tmpdir_base") && own_session_directory() == PS_OK)
        setenv("OMPI_MCA_ess_singleton_isolated", "1", 0);
    /* The kernel family (PATCHSWEEP_ISA or the CPU's best) is chosen before anything computes,
     * so a CPU that cannot run it is one line and exit 2, not a crash. */
    long batch_cap, threads = 1;
    if (kernels_select(NULL) != PS_OK) return report_error(PS_EUSER);
    if (env_int("PATCHSWEEP_BATCH", 1, 1 << 20, &batch_cap) != PS_OK) return report_error(PS_EUSER);
    /* Threads per rank: products, attention, norms split over them, the same bits with any. */
    if (take_threads_option(&argc, argv) != PS_OK) return report_error(PS_EUSER);
    if (env_int("PATCHSWEEP_THREADS", 1, 256, &threads) != PS_OK) return report_error(PS_EUSER);
    if (threads > 1 && threads_start((int)threads) != PS_OK) return report_error(PS_EUSER);
    int status = c->run(argc - 1, argv + 1);
    threads_stop();
    return status;
}
