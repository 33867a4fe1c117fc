/* Applying patches inside a block: after each stage, every sequence whose patch targets that
 * stage and layer gets the source rows copied over its own (and, when paths are severed, the base
 * run's rows over the frozen site). */
#include <string.h>
#include "patchsweep/patch.h"

/* Writes patch p into sequence b's buffers, if it targets this stage and layer. */
static void apply_patch(const ModelConfig *c, const Patch *p, Stage stage, int layer, LayerActs *a, const BlockRun *run,
                        int b) {
    if (site_stage(p->site) != stage || layer < p->layer || layer > p->last_layer) return;
    /* q, k and v share a stage; only the patched one is touched */
    int kv_side = site_is_kv_side(p->site);
    int rows = kv_side ? run->R : block_q_rows(run);
    int first = kv_side ? run->r0 : block_q_pos0(run);
    int width = site_width(c, p->site), off, len;
    site_slice(c, p->site, p->index, &off, &len);
    float *buf = site_buffer(a, p->site) + (size_t)b * rows * width;
    const float *src = p->src ? site_buffer(&p->src->layer[layer], p->site) : NULL;
    int lo = p->pos < 0 ? first : p->pos, hi = p->pos < 0 ? first + rows - 1 : p->pos;
    for (int pos = lo; pos <= hi; pos++) {
        if (pos < first || pos >= first + rows) continue; /* that row is not recomputed here */
        float *dst = buf + (size_t)(pos - first) * width + off;
        if (src)
            memcpy(dst, src + (size_t)pos * width + off, (size_t)len * sizeof(float));
        else
            memset(dst, 0, (size_t)len * sizeof(float));
    }
}

void patch_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const PatchHook *h = ctx;
    for (int b = 0; b < run->B; b++) {
        apply_patch(h->cfg, &h->patches[b], stage, layer, a, run, b);
        if (h->frozen) apply_patch(h->cfg, &h->frozen[b], stage, layer, a, run, b);
    }
}

void joint_hook(void *ctx, Stage stage, int layer, LayerActs *a, const BlockRun *run) {
    const JointHook *h = ctx;
    for (int i = 0; i < h->n; i++) {
        PatchHook one = {h->cfg, &h->patches[i], NULL}; /* run->B is 1: patches[0] is the only one read */
        patch_hook(&one, stage, layer, a, run);
    }
}
