/* The parameter block and its pointer table. */
#include <string.h>
#include "patchsweep/model.h"

void param_sizes(const ModelConfig *c, size_t s[N_PARAM_TENSORS]) {
    size_t L = (size_t)c->n_layer, d = (size_t)c->d_model, V = (size_t)c->vocab;
    size_t qd = (size_t)cfg_q_dim(c), kvd = (size_t)cfg_kv_dim(c), dm = (size_t)c->d_mlp;
    int ln = c->norm == NORM_LAYER; /* RMSNorm has no bias */
    int bias = c->linear_bias;
    size_t sizes[N_PARAM_TENSORS] = {
        V * d,                                   /* wte */
        c->learned_pos ? (size_t)c->n_ctx * d : 0, /* wpe */
        L * d, ln ? L * d : 0,                   /* ln1_w, ln1_b */
        L * qd * d, bias ? L * qd : 0,           /* wq, bq */
        L * kvd * d, bias ? L * kvd : 0,         /* wk, bk */
        L * kvd * d, bias ? L * kvd : 0,         /* wv, bv */
        L * d * qd, bias ? L * d : 0,            /* wo, bo */
        L * d, ln ? L * d : 0,                   /* ln2_w, ln2_b */
        c->gated_mlp ? L * dm * d : 0,           /* w_gate */
        L * dm * d, bias ? L * dm : 0,           /* w_in, b_in */
        L * d * dm, bias ? L * d : 0,            /* w_out, b_out */
        d, ln ? d : 0,                           /* lnf_w, lnf_b */
        c->tied_unembed ? 0 : V * d,             /* unembed */
    };
    memcpy(s, sizes, sizeof sizes);
}

size_t params_point(Params *p, float *block, const ModelConfig *c) {
    size_t sizes[N_PARAM_TENSORS], total = 0;
    param_sizes(c, sizes);
    float **fields[N_PARAM_TENSORS] = {
        &p->wte, &p->wpe, &p->ln1_w, &p->ln1_b, &p->wq, &p->bq, &p->wk, &p->bk, &p->wv, &p->bv, &p->wo,
        &p->bo, &p->ln2_w, &p->ln2_b, &p->w_gate, &p->w_in, &p->b_in, &p->w_out, &p->b_out, &p->lnf_w,
        &p->lnf_b, &p->unembed,
    };
    for (int i = 0; i < N_PARAM_TENSORS; i++) {
        *fields[i] = sizes[i] ? block + total : NULL;
        total += sizes[i];
    }
    if (c->tied_unembed) p->unembed = p->wte;
    return total;
}
