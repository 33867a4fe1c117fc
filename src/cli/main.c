/* patchsweep: exact activation patching sweeps with gradient estimates beside them. */
#include <stdio.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/kernels.h"

static const char usage[] =
    "usage: patchsweep <command> [options]\n"
    "\n"
    "commands:\n"
    "  run JOB.json [--naive] [--quiet]   run or resume a job (under mpirun: on every rank)\n"
    "  plan JOB.json                      what a job would compute, and its estimated cost\n"
    "  top RESULTS.h5 [-k 20] [--site z]  the largest effects in a results file, and estimator ranks\n"
    "  bound JOB.json [--site z] [--verified 10] [--subsets 200]\n"
    "                                     after a run: bound the effects the estimate ranking missed\n"
    "  heads --model DIR [--run N]        induction and previous-token scores of each head\n"
    "  forward --model DIR --tokens 1,2,3 [--top K]   next-token prediction (checks a model loads)\n"
    "  tokenize --model DIR [--no-special] TEXT         text -> token ids, with the folder's tokenizer.json\n"
    "  tokenize --model DIR [--no-special] --decode 1,2,3   token ids -> text\n"
    "  train RECIPE.json                  train a small model on a task, write a model folder\n";

int main(int argc, char **argv) {
    /* The kernel family (PATCHSWEEP_ISA or the CPU's best) is chosen before anything computes,
     * so a CPU that cannot run it is one line and exit 2, not a crash. */
    long batch_cap;
    if (kernels_select(NULL) != PS_OK) return report_error(PS_EUSER);
    if (env_int("PATCHSWEEP_BATCH", 1, 1 << 20, &batch_cap) != PS_OK) return report_error(PS_EUSER);
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "forward") == 0) return cmd_forward(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "plan") == 0) return cmd_plan(argc - 1, argv + 1);
    if (strcmp(argv[1], "train") == 0) return cmd_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "top") == 0) return cmd_top(argc - 1, argv + 1);
    if (strcmp(argv[1], "bound") == 0) return cmd_bound(argc - 1, argv + 1);
    if (strcmp(argv[1], "heads") == 0) return cmd_heads(argc - 1, argv + 1);
    if (strcmp(argv[1], "tokenize") == 0) return cmd_tokenize(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0) {
        printf("patchsweep %s\n", PATCHSWEEP_VERSION);
        return 0;
    }
    fprintf(stderr, "patchsweep: unknown command \"%s\" (patchsweep --help lists them)\n", argv[1]);
    return 2;
}
