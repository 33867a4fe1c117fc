/* Training small GPT-2-architecture models on tasks whose mechanism is known, so patchsweep can
 * ship models that were never downloaded: cross-entropy on chosen positions, parameter gradients
 * from the same backward pass the estimators use, AdamW, all deterministic given a seed. */
#ifndef PATCHSWEEP_TRAIN_H
#define PATCHSWEEP_TRAIN_H

#include <stdio.h>
#include "patchsweep/core.h"
#include "patchsweep/model.h"

/* One training sequence: tokens and, per position, the token to predict next (-1: no loss);
 * for fact recall, where its subject sits (subject_len 0: the task has none). */
typedef struct {
    int T;
    int tokens[256];
    int targets[256];
    int subject, subject_len;
} Example;

enum { TASK_BOS = 0 }; /* every task's vocabulary begins with "<bos>", which begins every example */
/* A task: its vocabulary (word-level, token TASK_BOS is "<bos>") and a generator of examples. */
typedef struct {
    const char *name;
    int vocab;
    const char *const *words; /* [vocab] */
    void (*sample)(Rng *rng, Example *ex);
} Task;

const Task *task_find(const char *name);

typedef struct {
    char path[4096], output[4096];
    const Task *task;
    ModelConfig cfg;
    int steps, batch;
    double lr, weight_decay, warmup_frac;
    uint64_t seed;
} Recipe;

int recipe_parse(Recipe *r, const char *path);

/* Mean cross-entropy over the target positions of a batch; with grads (a block laid out like
 * the model's parameters, pointed to by pg), accumulates its gradient. */
double batch_loss(const Model *m, const Example *ex, int n, Params *pg);
/* Trains a freshly initialised model; logs progress to log (may be NULL). */
void train(const Recipe *r, Model *m, FILE *log);
/* Writes config.json, model.safetensors (GPT-2 layout) and tokenizer.json (word level). */
int model_save(const Model *m, const Task *task, const char *dir);

/* Head scores from attention patterns alone, on n_seq sequences [bos, A, A] of repeated
 * random distinct tokens other than bos (A of length run; no BOS first when bos < 0):
 * induction[l*H + h] = mean attention from each position of the second copy to the token after
 * that token's first occurrence; previous[l*H + h] = mean attention from each position to the
 * one before it. */
void head_scores(const Model *m, int bos, int n_seq, int run, uint64_t seed, double *induction, double *previous);
/* Accuracy of the next-token argmax on the task's target positions (or, with last_only, on the
 * last position alone), over n fresh examples. */
double task_accuracy(const Model *m, const Task *task, int n, uint64_t seed, int last_only);
/* Up to n distinct examples of a task with subjects that the model answers right (ROME's "known
 * facts"), as JSONL prompts for a causal-tracing job (clean_text, answer_text, noise_positions). */
int task_write_known(const Model *m, const Task *task, int n, uint64_t seed, const char *path);

#endif
