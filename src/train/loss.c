/* Cross-entropy on target positions, forward and backward through the whole model, including
 * the parameter gradients of the final norm, the unembedding (tied: the embedding) and every
 * block (block_backward), and the embeddings (run_backward). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/ops.h"
#include "patchsweep/train.h"
#include "patchsweep/transformer.h"

double batch_loss(const Model *m, const Example *ex, int n, Params *pg) {
    const ModelConfig *c = &m->cfg;
    int d = c->d_model, V = c->vocab, L = c->n_layer;
    int targets = 0;
    for (int i = 0; i < n; i++)
        for (int t = 0; t < ex[i].T; t++) targets += ex[i].targets[t] >= 0;
    double loss = 0.0;
    for (int i = 0; i < n; i++) {
        const Example *e = &ex[i];
        RunCache acts, grads;
        run_cache_init(&acts, c, e->T, 1);
        run_forward(m, e->tokens, e->T, NULL, &acts, NULL, NULL);
        float *dlogits = pg ? alloc_floats((size_t)e->T * V) : NULL;
        for (int t = 0; t < e->T; t++) {
            if (e->targets[t] < 0) continue;
            const float *row = acts.logits + (size_t)t * V;
            double maxv = -INFINITY, z = 0.0;
            for (int v = 0; v < V; v++) maxv = fmax(maxv, row[v]);
            for (int v = 0; v < V; v++) z += det_exp(row[v] - maxv);
            loss += (det_log(z) + maxv - row[e->targets[t]]) / targets;
            if (!dlogits) continue;
            for (int v = 0; v < V; v++) /* d CE / d logits = softmax - onehot, averaged */
                dlogits[(size_t)t * V + v] = (float)((det_exp(row[v] - maxv) / z - (v == e->targets[t])) / targets);
        }
        if (pg) {
            run_cache_init(&grads, c, e->T, 0);
            float *dlnf = alloc_floats((size_t)e->T * d);
            /* logits = lnf U^T: into dlnf and dU (dU is dwte when the embeddings are tied) */
            matmul_backward(dlnf, pg->unembed, NULL, dlogits, acts.lnf, m->w.unembed, e->T, d, V);
            norm_backward(c->norm, grads.layer[L - 1].resid_post, pg->lnf_w, pg->lnf_b, dlnf,
                          acts.layer[L - 1].resid_post, m->w.lnf_w, acts.lnf_mean, acts.lnf_rstd, e->T, d);
            run_backward(m, e->tokens, &acts, &grads, pg, L - 1, -1);
            free(dlnf);
            run_cache_free(&grads);
        }
        free(dlogits);
        run_cache_free(&acts);
    }
    return loss;
}
