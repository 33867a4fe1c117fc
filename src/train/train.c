/* The training loop: GPT-2 initialisation, AdamW with linear warm-up and cosine decay, batches
 * from the task generator. Deterministic kernels and one seeded generator: the same recipe gives
 * the same weights, bit for bit, on any CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "patchsweep/train.h"

/* GPT-2's initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2L), biases 0,
 * norm gains 1. */
static void init_weights(Model *m, uint64_t seed) {
    const ModelConfig *c = &m->cfg;
    Rng rng;
    rng_seed(&rng, seed, 0x696e6974, 0);
    for (size_t i = 0; i < m->n_weights; i++) m->weights[i] = (float)(0.02 * rng_normal(&rng));
    size_t L = (size_t)c->n_layer, d = (size_t)c->d_model, dm = (size_t)c->d_mlp, qd = (size_t)cfg_q_dim(c);
    float shrink = 1.0f / sqrtf(2.0f * c->n_layer);
    for (size_t i = 0; i < L * d * qd; i++) m->w.wo[i] *= shrink;
    for (size_t i = 0; i < L * d * dm; i++) m->w.w_out[i] *= shrink;
    float *zero[] = {m->w.ln1_b, m->w.ln2_b, m->w.bq, m->w.bk, m->w.bv, m->w.bo, m->w.b_in, m->w.b_out, m->w.lnf_b};
    size_t zero_n[] = {L * d, L * d, L * qd, L * qd, L * qd, L * d, L * dm, L * d, d};
    for (size_t k = 0; k < sizeof zero / sizeof zero[0]; k++)
        if (zero[k]) memset(zero[k], 0, zero_n[k] * sizeof(float));
    for (size_t i = 0; i < L * d; i++) m->w.ln1_w[i] = m->w.ln2_w[i] = 1.0f;
    for (size_t i = 0; i < d; i++) m->w.lnf_w[i] = 1.0f;
    model_pack(m);
}

void train(const Recipe *r, Model *m, FILE *log) {
    model_alloc(m, &r->cfg);
    init_weights(m, r->seed);
    size_t n = m->n_weights;
    float *grad = alloc_floats(n), *mom = alloc_floats(n), *vel = alloc_floats(n);
    Params pg;
    params_point(&pg, grad, &m->cfg);
    Example *batch = xcalloc((size_t)r->batch, sizeof(Example));
    Rng data;
    rng_seed(&data, r->seed, 0x64617461, 0);
    const double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
    int warmup = (int)(r->warmup_frac * r->steps);
    double t0 = now_seconds(), smooth = 0.0;
    for (int step = 1; step <= r->steps; step++) {
        for (int b = 0; b < r->batch; b++) r->task->sample(&data, &batch[b]);
        memset(grad, 0, n * sizeof(float));
        double loss = batch_loss(m, batch, r->batch, &pg);
        /* learning rate: linear warm-up, then cosine down to a tenth */
        double progress = (double)(step - warmup) / (r->steps - warmup > 0 ? r->steps - warmup : 1);
        double lr = step <= warmup ? r->lr * step / (warmup ? warmup : 1)
                                   : r->lr * (0.1 + 0.45 * (1.0 + det_cos(M_PI * (progress < 1 ? progress : 1))));
        double c1 = 1.0 - det_pow(beta1, step), c2 = 1.0 - det_pow(beta2, step);
        for (size_t i = 0; i < n; i++) { /* AdamW (decoupled weight decay) */
            mom[i] = (float)(beta1 * mom[i] + (1 - beta1) * grad[i]);
            vel[i] = (float)(beta2 * vel[i] + (1 - beta2) * grad[i] * grad[i]);
            double update = (mom[i] / c1) / (sqrt(vel[i] / c2) + eps);
            m->weights[i] -= (float)(lr * (update + r->weight_decay * m->weights[i]));
        }
        model_pack(m); /* the forward pass reads the packed copies */
        smooth = step == 1 ? loss : 0.95 * smooth + 0.05 * loss;
        if (log && (step % 100 == 0 || step == 1 || step == r->steps))
            fprintf(log, "step %5d/%d  loss %.4f (smoothed %.4f)  lr %.2e  %.0fs\n", step, r->steps, loss, smooth, lr,
                    now_seconds() - t0);
    }
    free(grad), free(mom), free(vel), free(batch);
}
