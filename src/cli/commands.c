/* The subcommands: one table for dispatch, help and the usage lines in error messages. */
#include <stdio.h>
#include <string.h>
#include "patchsweep/cli.h"

const Command commands[] = {
    {"run", cmd_run, "patchsweep run JOB.json [--naive] [--quiet]",
     "run or resume a job (under mpirun: on every rank)"},
    {"plan", cmd_plan, "patchsweep plan JOB.json [--cores N] [--ranks-per-node R]",
     "what a job would compute: counts, FLOPs, memory per rank and node, time on N cores (no weight is read)"},
    {"top", cmd_top, "patchsweep top RESULTS.h5 [-k 20] [--site SITE | --edges] [--metric METRIC]",
     "the largest effects in a results file, with each estimator's rank of them"},
    {"bound", cmd_bound,
     "patchsweep bound JOB.json [--site SITE | --edges] [--by atp|atp_qk|atp_star|eap|eap_ig|eap_ig_act] [--verified K] [--subsets N] "
     "[--inclusion P] [--confidence C] [--seed S] [--ties bound|verify] [--metric METRIC] [--quiet]",
     "after a run: bound the effects that verifying only the top of a ranking missed"},
    {"circuit", cmd_circuit, "patchsweep circuit JOB.json [--quiet]",
     "after a run: the faithfulness of the job's \"circuits\" under each ablation choice (docs/circuits.md)"},
    {"heads", cmd_heads, "patchsweep heads --model DIR [--run N]",
     "induction and previous-token scores of each head, from attention patterns"},
    {"forward", cmd_forward, "patchsweep forward --model DIR --tokens ID,ID,... [--top K]",
     "next-token prediction: checks that a model folder loads"},
    {"tokenize", cmd_tokenize, "patchsweep tokenize --model DIR [--no-special] TEXT | --decode ID,ID,...",
     "text to token ids (and back) with the model folder's tokenizer.json"},
    {"train", cmd_train, "patchsweep train RECIPE.json", "train a small model on a task and write a model folder"},
};
const int n_commands = sizeof commands / sizeof commands[0];

const Command *command_find(const char *name) {
    for (int i = 0; i < n_commands; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

const char *command_usage(const char *name) {
    static char line[512];
    const Command *c = command_find(name);
    snprintf(line, sizeof line, "usage: %s", c ? c->usage : name);
    return line;
}

int is_help_flag(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }
