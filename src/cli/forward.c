/* patchsweep forward --model DIR --tokens 1,2,3 [--top K]
 * Loads a model, runs the sequence and prints the most likely next tokens: the quickest check
 * that a model folder loads and computes what it should. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/core.h"
#include "patchsweep/transformer.h"

int cmd_forward(int argc, char **argv) {
    const char *dir = NULL, *token_text = NULL;
    int top = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) token_text = argv[++i];
        else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) top = atoi(argv[++i]);
        else return report_error(ps_fail(PS_EUSER, "forward: unexpected argument \"%s\"; %s", argv[i], command_usage("forward")));
    }
    if (!dir || !token_text) return report_error(ps_fail(PS_EUSER, "forward: %s", command_usage("forward")));
    if (top < 1) return report_error(ps_fail(PS_EUSER, "--top must be a positive integer"));
    Model m;
    int rc = model_load(&m, dir);
    if (rc) return report_error(rc);
    int *tokens = NULL, T = 0;
    rc = parse_token_list("--tokens", token_text, m.cfg.vocab, &tokens, &T);
    if (!rc && T > m.cfg.n_ctx)
        rc = ps_fail(PS_EUSER, "--tokens: %d token%s exceed the model's context of %d", T, plural_s(T), m.cfg.n_ctx);
    if (rc) {
        free(tokens);
        model_free(&m);
        return report_error(rc);
    }
    RunCache cache;
    run_cache_init(&cache, &m.cfg, T, 1);
    run_forward(&m, tokens, T, NULL, &cache, NULL, NULL);

    /* Softmax of the last row in double, then a partial selection sort of the top k. */
    int V = m.cfg.vocab;
    const float *logits = cache.logits + (size_t)(T - 1) * V;
    double maxv = -INFINITY, sum = 0.0;
    for (int i = 0; i < V; i++) maxv = fmax(maxv, logits[i]);
    for (int i = 0; i < V; i++) sum += det_exp(logits[i] - maxv);
    if (top > V) top = V;
    int *order = xmalloc(sizeof(int) * (size_t)V);
    for (int i = 0; i < V; i++) order[i] = i;
    for (int k = 0; k < top; k++)
        for (int i = k + 1; i < V; i++)
            if (logits[order[i]] > logits[order[k]]) {
                int tmp = order[k];
                order[k] = order[i];
                order[i] = tmp;
            }
    printf("model %s (%s, %d layers, d_model %d), %d token%s; next token:\n", dir, m.cfg.model_type, m.cfg.n_layer,
           m.cfg.d_model, T, plural_s(T));
    printf("%4s %7s %9s %10s  %s\n", "rank", "id", "prob", "logit", "token");
    for (int k = 0; k < top; k++) {
        int id = order[k];
        const char *s = tokenizer_token(m.tokenizer, id);
        printf("%4d %7d %9.5f %10.4f  %s%s%s\n", k + 1, id, det_exp(logits[id] - maxv) / sum, logits[id], s ? "\"" : "",
               s ? s : "", s ? "\"" : "");
    }
    free(order);
    free(tokens);
    run_cache_free(&cache);
    model_free(&m);
    return 0;
}
