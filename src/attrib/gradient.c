/* The gradient of the metric at a base run, with respect to every activation. */
#include <stdlib.h>
#include <string.h>
#include "patchsweep/attrib.h"
#include "patchsweep/core.h"

void metric_backward(const Model *m, const PromptRuns *r, int s, int metric, RunCache *grads, MetricWork *w) {
    int L = m->cfg.n_layer, d = m->cfg.d_model, T = r->T;
    const RunCache *base = r->base[s];
    LayerActs *top = &grads->layer[L - 1];
    /* The metric reads the last position only: every other row of the output gets no gradient. */
    memset(top->resid_post, 0, sizeof(float) * (size_t)T * d);
    metric_grad(m, &r->spec, metric, base->layer[L - 1].resid_post + (size_t)(T - 1) * d, top->resid_post + (size_t)(T - 1) * d, w);
    run_backward(m, r->base_tokens, base, grads, NULL, L - 1, -1);
}
