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

/* Parses "1,2,3" (the value of option) into tokens (caller frees); checks 0 <= id < vocab. */
int parse_token_list(const char *option, const char *text, int vocab, int **tokens, int *n);
/* Prints the recorded error as "patchsweep: <line>" and returns status. */
int report_error(int status);

#endif
