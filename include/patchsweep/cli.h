/* The patchsweep subcommands. Each returns the process exit status. */
#ifndef PATCHSWEEP_CLI_H
#define PATCHSWEEP_CLI_H

#include "patchsweep/plan.h"
#include "patchsweep/results.h"

int cmd_forward(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_bound(int argc, char **argv);
int cmd_circuit(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

/* The subcommands (src/cli/commands.c): name, entry point, usage line, one-line summary. */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage, *summary;
} Command;
extern const Command commands[];
extern const int n_commands;
const Command *command_find(const char *name); /* NULL when unknown */
/* "usage: patchsweep NAME ..." for error messages. */
const char *command_usage(const char *name);
int is_help_flag(const char *arg); /* -h or --help */

/* ---- patchsweep bound: which estimator ranks (src/cli/bound_ranker.c) ------------------------ */
/* Recall of each prompt's true top V (V = --verified, by |exact effect| of the site's cells)
 * within each estimator's first V, summed over the prompts that have every value (docs/methods.md,
 * "Which estimator ranks"). by: `given` (>= 0, from --by), or else the estimator of the best
 * recall, a tie going to the first of atp, atp_qk, atp_star; without exact effects (or with
 * V = 0, or no complete prompt), the first of those the job computed. recall[e] is NaN where
 * not measured; reason says which rule chose, with the numbers. Reads the file prompt by
 * prompt; PS_EUSER with one line when a dataset is damaged. */
/* Edges (edges = 1): the same among eap, eap_ig, eap_ig_act, EAP first. by and the arrays are
 * indexed by Estimate, or by EdgeEstimate for edges. */
#define BOUND_RANKERS 3
typedef struct {
    int by;
    long long found[BOUND_RANKERS], wanted;
    double recall[BOUND_RANKERS];
    int prompts;
    char reason[512];
} BoundRanker;
int bound_choose_ranker(const Results *r, const Job *job, const Plan *plan, int edges, Site site, int budget, int given,
                        BoundRanker *out);
/* Ranker e's name ("atp", ..., or "eap", ...) and whether the job computes it. */
const char *bound_ranker_name(int edges, int e);
int bound_ranker_computed(const Job *job, int edges, int e);

/* Parses "1,2,3" (the value of option) into tokens (caller frees); checks 0 <= id < vocab. */
int parse_token_list(const char *option, const char *text, int vocab, int **tokens, int *n);

#endif
