/* The patchsweep subcommands. Each returns the process exit status. */
#ifndef PATCHSWEEP_CLI_H
#define PATCHSWEEP_CLI_H

int cmd_forward(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_heads(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_bound(int argc, char **argv);
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

/* Parses "1,2,3" (the value of option) into tokens (caller frees); checks 0 <= id < vocab. */
int parse_token_list(const char *option, const char *text, int vocab, int **tokens, int *n);

#endif
