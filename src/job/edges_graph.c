/* The edge graph of docs/edges.md: upstream nodes (embed, heads, MLPs) into downstream inputs
 * (queries, key/value heads' keys and values, MLP inputs, logits), in the contract's order. */
#include <stdio.h>
#include "patchsweep/plan.h"

void edge_up_name(const EdgeEnd *e, char *out, size_t cap) {
    if (e->kind == UP_EMBED) snprintf(out, cap, "embed");
    else if (e->kind == UP_HEAD) snprintf(out, cap, "L%d.H%d", e->layer, e->index);
    else snprintf(out, cap, "L%d.mlp", e->layer);
}

void edge_down_name(const EdgeEnd *e, char *out, size_t cap) {
    switch (e->kind) {
    case DOWN_Q: snprintf(out, cap, "L%d.H%d.q", e->layer, e->index); break;
    case DOWN_K: snprintf(out, cap, "L%d.KV%d.k", e->layer, e->index); break;
    case DOWN_V: snprintf(out, cap, "L%d.KV%d.v", e->layer, e->index); break;
    case DOWN_MLP_IN: snprintf(out, cap, "L%d.mlp_in", e->layer); break;
    default: snprintf(out, cap, "logits"); break;
    }
}

void edge_name(const Edge *e, char *out, size_t cap) {
    char up[32], down[32];
    edge_up_name(&e->up, up, sizeof up);
    edge_down_name(&e->down, down, sizeof down);
    snprintf(out, cap, "%s->%s", up, down);
}

static int keeps_up(const EdgeFilter *f, const EdgeEnd *u) {
    if (!f->on) return 1;
    if (!(f->from_kinds & (1u << u->kind))) return 0;
    return u->kind == UP_EMBED || (u->layer >= f->from_first && u->layer <= f->from_last);
}

static int keeps_down(const EdgeFilter *f, const EdgeEnd *v) {
    if (!f->on) return 1;
    if (!(f->to_kinds & (1u << v->kind))) return 0;
    return v->kind == DOWN_LOGITS || (v->layer >= f->to_first && v->layer <= f->to_last);
}

/* Every upstream node written before v reads (embed, the nodes of earlier layers, and in
 * sequential blocks the heads of v's own layer into its MLP), in order, kept by the filter. */
static long edges_into(const ModelConfig *c, const EdgeFilter *f, const EdgeEnd *v, Edge *out, long n) {
    int below = v->kind == DOWN_LOGITS ? c->n_layer : v->layer;
    EdgeEnd u = {UP_EMBED, -1, -1};
    if (keeps_up(f, &u)) {
        if (out) out[n] = (Edge){u, *v};
        n++;
    }
    for (int l = 0; l <= below && l < c->n_layer; l++) {
        int same = l == below; /* v's own layer: only its heads into a sequential block's MLP */
        if (same && (v->kind != DOWN_MLP_IN || c->parallel_residual)) break;
        for (int h = 0; h < c->n_head; h++) {
            u = (EdgeEnd){UP_HEAD, l, h};
            if (keeps_up(f, &u)) {
                if (out) out[n] = (Edge){u, *v};
                n++;
            }
        }
        u = (EdgeEnd){UP_MLP, l, -1};
        if (!same && keeps_up(f, &u)) {
            if (out) out[n] = (Edge){u, *v};
            n++;
        }
    }
    return n;
}

long edge_graph(const ModelConfig *c, const EdgeFilter *f, Edge *out) {
    long n = 0;
    for (int l = 0; l < c->n_layer; l++) {
        static const DownKind order[] = {DOWN_Q, DOWN_K, DOWN_V, DOWN_MLP_IN};
        for (int k = 0; k < 4; k++) {
            int count = order[k] == DOWN_Q ? c->n_head : order[k] == DOWN_MLP_IN ? 1 : c->n_kv_head;
            for (int i = 0; i < count; i++) {
                EdgeEnd v = {order[k], l, order[k] == DOWN_MLP_IN ? -1 : i};
                if (keeps_down(f, &v)) n = edges_into(c, f, &v, out, n);
            }
        }
    }
    EdgeEnd logits = {DOWN_LOGITS, -1, -1};
    if (keeps_down(f, &logits)) n = edges_into(c, f, &logits, out, n);
    return n;
}
