/* patchsweep train RECIPE.json: trains a small model on a task (src/train) and writes it as a
 * Hugging Face folder beside the recipe (or where "output" says). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/train.h"

/* README.md of the model folder: how it was made, how well it does, and what its heads do
 * (from attention patterns alone). */
static int write_model_card(const Model *m, const Recipe *r, double seconds) {
    char path[4200];
    if (path_join(path, sizeof path, r->output, "README.md")) return PS_EUSER;
    FILE *f = fopen(path, "w");
    if (!f) return ps_fail(PS_EUSER, "%s: cannot write", path);
    const ModelConfig *c = &m->cfg;
    int L = c->n_layer, H = c->n_head;
    double *ind = alloc_doubles((size_t)L * H), *prev = alloc_doubles((size_t)L * H);
    head_scores(m, TASK_BOS, 64, 10, 1, ind, prev);
    char heldout_name[64];
    snprintf(heldout_name, sizeof heldout_name, "%s-heldout", r->task->name);
    const Task *heldout = task_find(heldout_name);
    /* Tasks with a held-out variant are read at their last position, where the answer is. */
    double acc = task_accuracy(m, r->task, 200, 1, heldout != NULL);
    const char *slash = strrchr(r->output, '/');
    fprintf(f, "# %s\n\nTrained by patchsweep itself (`patchsweep train recipe.json`, %.0f s on one core of the "
               "development machine): GPT-2 architecture, %d layers, d_model %d, %d heads, d_mlp %d, context %d, "
               "vocabulary %d words (`tokenizer.json`), task `%s`, %d steps of %d sequences, seed %llu. Training is "
               "deterministic: the same recipe gives the same weights.\n\n",
            slash ? slash + 1 : r->output, seconds, L, c->d_model, H, c->d_mlp, c->n_ctx, c->vocab, r->task->name, r->steps, r->batch,
            (unsigned long long)r->seed);
    fprintf(f, "Next-token accuracy on %s, 200 fresh examples: **%.2f%%**.\n\n",
            heldout ? "the answer (the last position)" : "the task's target positions", 100 * acc);
    if (heldout)
        fprintf(f, "On examples never trained on (held-out templates, held-out name pairs), 1000 of them, at the "
                   "answer: **%.2f%%**.\n\n", 100 * task_accuracy(m, heldout, 1000, 2, 1));
    if (strcmp(r->task->name, "ioi") == 0)
        fprintf(f, "The task: indirect object identification, synthetic (\"when Mary and John went to the store , John "
                   "gave a drink to\" -> Mary), 30 names, 10 templates in both name orders; two templates and the name "
                   "pairs with (a + 2b) %% 5 == 0 are never trained on. Training targets every next token (the template, "
                   "the repeated name); the answer is the name said once.\n\n");
    if (strcmp(r->task->name, "induction") == 0)
        fprintf(f, "The task: `<bos>`, a filler whose every word is a fixed permutation of the word two before it, then "
                   "a run A of 6-10 distinct random words, then A again; the loss is on the filler and on the second copy "
                   "of A. The filler is there so that a previous-token head pays for itself, as it does in natural text: "
                   "on random words alone training found circuits without one, which solve the task as well but are not "
                   "the textbook induction circuit this model is meant to show.\n\n");
    if (strcmp(r->task->name, "facts") == 0) {
        fprintf(f, "The task: fact recall, as ROME's causal tracing studies it. 144 people (12 first names x 12 "
                   "surnames), four relations (`lives in`, `plays the`, `speaks`, `works as a`), each (person, relation) "
                   "with a fixed object out of six: 576 facts to memorise. A sequence is `<bos>`, a prefix (none, "
                   "`indeed`, `everyone knows that`, `I heard that`), the person and the relation; the object is the only "
                   "target.\n\n`known_facts.jsonl`: 40 distinct prompts the model answers right (ROME's \"known facts\"), "
                   "each with its subject's positions as `noise_positions`, ready for a causal-tracing job "
                   "(`jobs/causal_trace/`).\n\n");
        char known[4200];
        int rc = path_join(known, sizeof known, r->output, "known_facts.jsonl");
        if (!rc) rc = task_write_known(m, r->task, 40, 3, known);
        if (rc) {
            fclose(f);
            free(ind), free(prev);
            return rc;
        }
    }
    fprintf(f, "## Heads, from attention patterns alone\n\nOn 64 sequences `<bos> A A` (A: 10 distinct random "
               "words), the **induction score** is the mean attention from each position of the second copy to the "
               "word after that word's first occurrence; the **previous-token score** the mean attention from each "
               "position to the one before it (`patchsweep heads --model DIR` recomputes them). What patching finds "
               "in this model is checked against these scores by `tests/cli/test_demo.py`.\n\n| head | induction score | previous-token score |\n|---|---|---|\n");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) fprintf(f, "| L%d.H%d | %.3f | %.3f |\n", l, h, ind[l * H + h], prev[l * H + h]);
    free(ind), free(prev);
    return fclose(f) ? ps_fail(PS_EUSER, "%s: write error", path) : PS_OK;
}

int cmd_train(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') return report_error(ps_fail(PS_EUSER, "train: %s", command_usage("train")));
    Recipe r;
    int rc = recipe_parse(&r, argv[1]);
    if (rc) return report_error(rc);
    fprintf(stderr, "patchsweep: training %s (%d layers, d_model %d, %d heads) on \"%s\", %d steps of %d -> %s\n",
            r.path, r.cfg.n_layer, r.cfg.d_model, r.cfg.n_head, r.task->name, r.steps, r.batch, r.output);
    Model m;
    double t0 = now_seconds();
    train(&r, &m, stderr);
    double seconds = now_seconds() - t0;
    rc = model_save(&m, r.task, r.output);
    if (!rc) rc = write_model_card(&m, &r, seconds);
    model_free(&m);
    return report_error(rc);
}
