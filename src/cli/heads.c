/* patchsweep heads --model DIR [--run N]: what each attention head does, from its attention
 * patterns alone (no patching): induction and previous-token scores on repeated random tokens. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/cli.h"
#include "patchsweep/train.h"

int cmd_heads(int argc, char **argv) {
    const char *dir = NULL;
    int run = 10;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) run = atoi(argv[++i]);
        else return report_error(ps_fail(PS_EUSER, "heads: unexpected argument \"%s\"; %s", argv[i], command_usage("heads")));
    }
    if (!dir) return report_error(ps_fail(PS_EUSER, "heads: %s", command_usage("heads")));
    Model m;
    int rc = model_load(&m, dir);
    if (rc) return report_error(rc);
    if (run < 2 || 1 + 2 * run > m.cfg.n_ctx || run > m.cfg.vocab - 1) {
        model_free(&m);
        return report_error(ps_fail(PS_EUSER, "--run %d: needs 2 <= run, 1 + 2 run <= context %d, run < vocabulary", run, m.cfg.n_ctx));
    }
    int L = m.cfg.n_layer, H = m.cfg.n_head;
    double *ind = alloc_doubles((size_t)L * H), *prev = alloc_doubles((size_t)L * H);
    int bos = model_bos(&m);
    head_scores(&m, bos, 64, run, 1, ind, prev);
    const char *bos_text = bos >= 0 && m.tokenizer ? tokenizer_token(m.tokenizer, bos) : NULL;
    if (bos >= 0)
        printf("# %s: 64 sequences BOS A A, A = %d distinct random tokens; BOS is token %d%s%s%s (%s)\n", dir, run, bos,
               bos_text ? " \"" : "", bos_text ? bos_text : "", bos_text ? "\"" : "",
               m.tokenizer && tokenizer_bos(m.tokenizer) >= 0 ? "the tokenizer's" : "config.json's bos_token_id");
    else
        printf("# %s: 64 sequences A A, A = %d distinct random tokens (the model names no BOS token)\n", dir, run);
    printf("%-8s %16s %21s\n", "head", "induction_score", "previous_token_score");
    for (int l = 0; l < L; l++)
        for (int h = 0; h < H; h++) printf("L%d.H%-4d %16.3f %21.3f\n", l, h, ind[l * H + h], prev[l * H + h]);
    free(ind), free(prev);
    model_free(&m);
    return 0;
}
